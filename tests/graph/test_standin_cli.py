"""`whatsapp-graph-standin`: the console script serves on loopback only, seeds numbers from a
file, and sends a signed inbound text to a number's registered callback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest
from channel_api.receiver.webhook_rules import signature_valid
from channel_operator.graph import GraphClient, GraphError, GraphErrorKind
from graph_standin import Fault, FaultKind, GraphStandin, NumberSeed
from graph_standin.main import main
from graph_standin.state import PhoneNumber

from tests.graph.conftest import (
    APP_SECRET,
    CREDENTIALS,
    FAST,
    PHONE,
    TOKEN,
    VERIFY_TOKEN,
    WABA,
    Callback,
    admin,
)


def _seed_file(tmp_path: Path, **extra: str) -> Path:
    path = tmp_path / "numbers.json"
    seed = {
        "phone_number_id": PHONE,
        "waba_id": WABA,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        **extra,
    }
    path.write_text(json.dumps({"numbers": [seed]}))
    return path


def test_it_listens_on_loopback_only() -> None:
    for host in ("0.0.0.0", "192.0.2.1", "example.com"):  # noqa: S104
        with pytest.raises(ValueError, match="loopback"):
            GraphStandin(host)
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2  # noqa: S104
    assert (
        main(["send-text", "--url", "http://192.0.2.1:8089", "--phone-number-id", PHONE, "hi"]) == 2
    )


def test_it_listens_off_loopback_only_on_a_named_test_address() -> None:
    named = GraphStandin("10.213.0.1", local_hosts=("10.213.0.1", "10.213.0.2"))
    assert named.url == "http://10.213.0.1:0"
    with pytest.raises(ValueError, match="loopback"):
        GraphStandin("10.213.0.5", local_hosts=("10.213.0.1",))


async def test_send_text_reaches_the_registered_callback(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    async with GraphClient(standin.url, retry=FAST) as graph:
        # Nothing is delivered before the app is subscribed (Meta would deliver nothing).
        argv = ["send-text", "--url", standin.url, "--phone-number-id", PHONE, "hello"]
        assert await asyncio.to_thread(main, argv) == 1
        await graph.subscribe_app(WABA, CREDENTIALS)
        await graph.set_webhook_override(PHONE, CREDENTIALS, callback.url, VERIFY_TOKEN)
    assert await asyncio.to_thread(main, argv) == 0
    (event,) = await callback.wait_for(1)
    assert signature_valid(
        APP_SECRET.encode(), event.body, event.headers["X-Hub-Signature-256"].encode()
    )
    value = json.loads(event.body)["entry"][0]["changes"][0]["value"]
    assert value["messages"][0]["text"]["body"] == "hello"
    assert value["metadata"]["phone_number_id"] == PHONE

    unknown = ["send-text", "--url", standin.url, "--phone-number-id", "42", "hello"]
    assert await asyncio.to_thread(main, unknown) == 1


async def test_without_an_override_the_apps_callback_gets_it(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    async with GraphClient(standin.url, retry=FAST) as graph:
        await graph.subscribe_app(WABA, CREDENTIALS)
    status, result = await admin(standin, "POST", f"/numbers/{PHONE}/messages", {"text": "hi"})
    assert (status, result["callback_url"]) == (200, standin.app_callback_url)
    assert standin.app_callback_events[0]["entry"][0]["id"] == WABA


async def test_seed_file_into_a_running_standin(standin: GraphStandin, tmp_path: Path) -> None:
    path = _seed_file(tmp_path)
    assert await asyncio.to_thread(main, ["seed", str(path), "--url", standin.url]) == 0
    async with GraphClient(standin.url, retry=FAST) as graph:
        assert (await graph.check_phone_number(PHONE, CREDENTIALS)).id == PHONE


async def test_the_admin_api_refuses_bad_input(standin: GraphStandin, number: PhoneNumber) -> None:
    status, _ = await admin(standin, "POST", "/numbers", {"phone_number_id": "abc"})
    assert status == 422
    assert (await admin(standin, "GET", "/numbers/42"))[0] == 404
    status, _ = await admin(standin, "POST", f"/numbers/{PHONE}/faults", {"kind": "nonsense"})
    assert status == 422
    status, state = await admin(standin, "GET", f"/numbers/{PHONE}")
    assert status == 200
    assert state["waba_id"] == WABA
    assert TOKEN not in json.dumps(state)
    assert APP_SECRET not in json.dumps(state)


async def test_callbacks_off_loopback_fail_verification(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    async with GraphClient(standin.url, retry=FAST) as graph:
        await graph.subscribe_app(WABA, CREDENTIALS)
        with pytest.raises(GraphError) as caught:
            await graph.set_webhook_override(
                PHONE, CREDENTIALS, "https://hooks.example.com/hooks/whatsapp/x", VERIFY_TOKEN
            )
    assert caught.value.kind is GraphErrorKind.CALLBACK_VERIFICATION_FAILED


async def test_the_console_script_serves_a_seeded_number(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("whatsapp-graph-standin")
    process = await asyncio.create_subprocess_exec(
        str(script),
        "serve",
        "--port",
        "0",
        "--seed",
        str(_seed_file(tmp_path)),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        url = line.split()[3]
        assert url.startswith("http://127.0.0.1:")
        async with GraphClient(url, retry=FAST) as graph:
            assert (await graph.check_phone_number(PHONE, CREDENTIALS)).id == PHONE
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_standin/stats") as r:
            assert (await r.json())["calls"] == {"check": 1}
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 60) == 0


async def test_a_deleted_or_moved_number_is_gone_from_its_account(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    async with GraphClient(standin.url, retry=FAST) as graph:
        # A fault on the number applies to its account's calls.
        number.faults.append(Fault(kind=FaultKind.PERMISSION_DENIED, call="subscribe"))
        with pytest.raises(GraphError, match="permission_denied"):
            await graph.subscribe_app(WABA, CREDENTIALS)
        # Moved to another account: the old account's calls no longer see its faults.
        moved = NumberSeed(
            phone_number_id=PHONE,
            waba_id="102290129341111",
            access_token=TOKEN,
            app_secret=APP_SECRET,
        )
        assert (await admin(standin, "POST", "/numbers", moved.model_dump()))[0] == 201
        await graph.subscribe_app(WABA, CREDENTIALS)
        assert (await admin(standin, "DELETE", f"/numbers/{PHONE}"))[0] == 204
        with pytest.raises(GraphError, match="phone_number_not_found"):
            await graph.check_phone_number(PHONE, CREDENTIALS)
