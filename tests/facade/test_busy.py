"""A channel whose delete a finalizer still holds: GET says `deleting`, POST answers 409 with
Retry-After once the wait for the operator runs out (issue 14). Over the in-memory
apiserver; the same on the real control plane is in tests/operator/test_kube_behaviour.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from whatsapp_channel.kube import channels_path

from tests.facade.conftest import NAMESPACE, OWN_INSTANCE, ApiKeys, AppFactory, serving
from tests.support.fake_kube import OperatedKube

URL = f"/v1/instances/{OWN_INSTANCE}/channels/whatsapp"
SETUP = {
    "access_token": "EAAG-access-token-0123456789abcdef",
    "app_secret": "0123456789abcdef0123456789abcdef",
    "phone_number_id": "106540352242922",
    "display_phone": "+61400111222",
}


@pytest.fixture
def held(fake_kube: OperatedKube) -> Iterator[OperatedKube]:
    """The fake operator's finalizer lets go only when the test ends."""
    fake_kube.finalize_delay = 3600
    yield fake_kube
    for task in list(fake_kube._tasks):
        task.cancel()


async def test_post_while_the_finalizer_holds_the_delete_is_409(
    make_app: AppFactory, api_keys: ApiKeys, held: OperatedKube
) -> None:
    async with serving(make_app(ready_wait_seconds=0.2), api_keys.admin) as client:
        assert (await client.post(URL, json=SETUP)).status_code == 200
        uid = held.channel(NAMESPACE, OWN_INSTANCE)["metadata"]["uid"]  # type: ignore[index]
        await held.delete(channels_path(NAMESPACE, OWN_INSTANCE))

        view = await client.get(URL)
        assert view.status_code == 200
        assert view.json()["status"] == "deleting"

        busy = await client.post(URL, json=SETUP)
        assert busy.status_code == 409
        assert busy.json() == {
            "detail": "the channel is still being torn down; retry in a few seconds"
        }
        assert busy.headers["Retry-After"] == "5"
        # Nothing was written over the channel being deleted.
        channel = held.channel(NAMESPACE, OWN_INSTANCE)
        assert channel is not None
        assert channel["metadata"]["uid"] == uid
        assert channel["metadata"]["deletionTimestamp"]
