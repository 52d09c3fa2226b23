"""The Graph API stand-in for suites that run the operator (issue 11): one per test session,
on a free loopback port, in a thread of its own so sync and async tests can seed it.

    standin = shared_standin()
    standin.seed("106540352242922", values)          # the channel's token and app secret
    run_operator(..., **standin.operator_env(receiver.url))

The operator's managed webhook makes the stand-in call the receiver's challenge during the
override, so a test that expects `active` runs a receiver too (`tests.support.processes`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection, Coroutine, Mapping
from typing import Any, TypeVar

from graph_standin import Fault, GraphStandin, NumberSeed
from graph_standin.state import NumberPatch

T = TypeVar("T")
WABA_ID = "102290129340398"


class StandinThread:
    def __init__(self, host: str = "127.0.0.1", local_hosts: Collection[str] = ()) -> None:
        """On loopback; or on `host` of a test network (`local_hosts`: the addresses there
        it may listen on and call back, e.g. a local node's veth ends)."""
        self.loop = asyncio.new_event_loop()
        self.standin = GraphStandin(host, challenge_timeout=5.0, local_hosts=local_hosts)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="standin")
        self._thread.start()
        self.call(self.standin.start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def _sync(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)

        return self.call(run())

    @property
    def url(self) -> str:
        return self.standin.url

    def operator_env(self, webhook_base_url: str) -> dict[str, Any]:
        """The operator's settings that point it at the stand-in and a receiver."""
        return {"webhook_base_url": webhook_base_url, "graph_base_url": self.url}

    def seed(
        self, phone_number_id: str, values: Mapping[str, str], *, waba_id: str = WABA_ID
    ) -> None:
        """The number as Meta knows it, with the channel's token and app secret (kept as it
        is, override and all, when it is known so already)."""
        if self._sync(self._known, phone_number_id, values, waba_id):
            return
        seed = NumberSeed(
            phone_number_id=phone_number_id,
            waba_id=waba_id,
            access_token=values["access_token"],
            app_secret=values["app_secret"],
        )
        self._sync(self.standin.seed, seed)

    def _known(self, phone_number_id: str, values: Mapping[str, str], waba_id: str) -> bool:
        world = self.standin.world
        number = world.numbers.get(phone_number_id)
        token = world.tokens.get(values["access_token"])
        return bool(
            number is not None
            and token is not None
            and number.waba_id == waba_id
            and number.access_token == values["access_token"]
            and world.apps[number.app_id].secret == values["app_secret"]
            and token.app_id == number.app_id
        )

    def enter_app_webhook(self, phone_number_id: str, callback_url: str) -> None:
        """A person enters `callback_url` as the number's app's webhook in the App Dashboard
        (a manual webhook; Meta then calls its challenge, which the test makes itself)."""

        def enter() -> None:
            world = self.standin.world
            world.apps[world.numbers[phone_number_id].app_id].callback_url = callback_url

        self._sync(enter)

    def fault(self, phone_number_id: str, fault: Fault) -> None:
        def add() -> None:
            self.standin.world.numbers[phone_number_id].faults.append(fault)

        self._sync(add)

    def patch(self, phone_number_id: str, patch: NumberPatch) -> list[int]:
        """Meta changes the number: its health, its token (expired, a new one), ... (a new
        status or rating also sends account webhooks to the app's callback: their HTTP
        statuses)."""
        number = self._sync(lambda: self.standin.world.numbers[phone_number_id])
        return self.call(self.standin.patch_number(number, patch))

    def set_override(self, phone_number_id: str, uri: str | None) -> None:
        """Someone else points the number's webhook elsewhere (drift)."""

        def put() -> None:
            self.standin.world.numbers[phone_number_id].override_callback_uri = uri

        self._sync(put)

    def registration(self, phone_number_id: str) -> tuple[str, str | None]:
        """The number's status at Meta and its two-step verification PIN."""

        def read() -> tuple[str, str | None]:
            number = self.standin.world.numbers[phone_number_id]
            return number.status, number.pin

        found: tuple[str, str | None] = self._sync(read)
        return found

    def set_pin(self, phone_number_id: str, pin: str) -> None:
        """Someone set the number's two-step verification PIN (in WhatsApp Manager)."""

        def put() -> None:
            self.standin.world.numbers[phone_number_id].pin = pin

        self._sync(put)

    def clear_faults(self, phone_number_id: str) -> None:
        self._sync(lambda: self.standin.world.numbers[phone_number_id].faults.clear())

    def override(self, phone_number_id: str) -> str | None:
        uri = self._sync(lambda: self.standin.world.numbers[phone_number_id].override_callback_uri)
        return str(uri) if uri else None

    def subscribed(self, phone_number_id: str) -> bool:
        def read() -> bool:
            number = self.standin.world.numbers[phone_number_id]
            return number.app_id in self.standin.world.wabas[number.waba_id].subscribed_apps

        return bool(self._sync(read))

    def calls(self, object_id: str | None = None, call: str | None = None) -> int:
        return int(self._sync(self.standin.calls, object_id, call))

    def calls_by_name(self, object_id: str) -> dict[str, int]:
        """{call name: how many} answered so far for one object (a phone number id)."""

        def read() -> dict[str, int]:
            return {n: c for (o, n), c in self.standin.world.calls.items() if o == object_id}

        return dict(self._sync(read))

    def stop(self) -> None:
        self.call(self.standin.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


_shared: StandinThread | None = None
_lock = threading.Lock()


def shared_standin() -> StandinThread:
    """The session's stand-in, started on first use (stopped with the process)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = StandinThread()
        return _shared
