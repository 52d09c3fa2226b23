"""Meta as a caller, as the stand-in plays it (issue 23: the mutation gate over
`graph_standin/caller.py`): the text message it delivers has the shape of Meta's own example,
its signature is the one Meta documents, and it calls only this machine."""

from __future__ import annotations

import copy
import re
import time

from graph_standin import GraphStandin, NumberSeed
from graph_standin.caller import is_loopback_host, meta_signature, text_notification

from tests.graph import meta_documented as doc

# X-Hub-Signature-256 of this body under this secret, computed outside the project:
#   printf '{"object":"whatsapp_business_account"}' \
#     | openssl dgst -sha256 -hmac 'app-secret-for-the-vector'
SIGNED_BODY = b'{"object":"whatsapp_business_account"}'
SIGNING_SECRET = "app-secret-for-the-vector"
OPENSSL_SIGNATURE = "sha256=28089840eee5fef9e9c959cfa4a3ecce81b97940c2b051d242f61196ff7a597a"


def test_the_signature_is_metas_sha256_hmac_of_the_body() -> None:
    assert meta_signature(SIGNING_SECRET, SIGNED_BODY) == OPENSSL_SIGNATURE


def test_a_text_message_has_the_shape_and_values_of_metas_example() -> None:
    envelope = copy.deepcopy(doc.MESSAGES_WEBHOOK_ENVELOPE)
    value = envelope["entry"][0]["changes"][0]["value"]
    del value["errors"]
    value["contacts"] = [doc.TEXT_CONTACT]
    value["messages"] = [dict(doc.TEXT_MESSAGE)]
    number = GraphStandin().seed(
        NumberSeed(
            phone_number_id=value["metadata"]["phone_number_id"],
            waba_id=envelope["entry"][0]["id"],
            access_token="EAAGcallerTestToken",
            app_secret="caller-test-secret",
            display_phone_number="+1 555-078-3881",  # the example's 15550783881
        )
    )
    before = int(time.time())
    sent = text_notification(
        number,
        doc.TEXT_MESSAGE["text"]["body"],
        sender=doc.TEXT_CONTACT["wa_id"],
        name=doc.TEXT_CONTACT["profile"]["name"],
    )
    doc.assert_same_shape(sent, envelope)
    message = sent["entry"][0]["changes"][0]["value"]["messages"][0]
    assert re.fullmatch(r"wamid\.[A-Za-z0-9_-]{20,}", message["id"])
    assert before <= int(message["timestamp"]) <= int(time.time())
    value["messages"][0].update(id=message["id"], timestamp=message["timestamp"])
    assert sent == envelope


def test_only_this_machines_hosts_are_called() -> None:
    for host in ("localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"):
        assert is_loopback_host(host), host
    assert not is_loopback_host(None)
    for host in ("", "10.0.0.1", "example.com", "192.168.1.1", "[2001:db8::1]"):
        assert not is_loopback_host(host), host
