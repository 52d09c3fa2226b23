"""`appsecret_proof` pinned by a vector computed outside the project (issue 23): swapping the
formula in the client and the stand-in together must fail here, not pass every Meta test.

Meta, "Securing Requests" (developers.facebook.com/docs/graph-api/securing-requests): "The
app secret proof is a sha256 hash of your access token, using your app secret as the key."
"""

from channel_operator.graph import GraphCredentials
from graph_standin.routes import appsecret_proof

TOKEN = "EAAGm0PX4ZCpsBAKZCZCxHiAXampleToken"
APP_SECRET = "an-app-secret-of-the-platform"
# Computed in a shell with openssl, not with this project's code:
#   printf '%s' 'EAAGm0PX4ZCpsBAKZCZCxHiAXampleToken' \
#     | openssl dgst -sha256 -hmac 'an-app-secret-of-the-platform'
VECTOR = "3435232f6846a8fd698b36f44f97a1923822c15ec47ecd111a55976c8742abe4"


def test_the_client_sends_the_documented_proof() -> None:
    assert GraphCredentials(TOKEN, APP_SECRET).appsecret_proof == VECTOR


def test_the_standin_expects_the_documented_proof() -> None:
    assert appsecret_proof(APP_SECRET, TOKEN) == VECTOR
