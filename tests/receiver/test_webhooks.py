"""Meta's rules at the receiver's URLs: the challenge, signatures over the raw bytes, every
refusal, and delivery to the instance before Meta gets its 200."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from channel_api.receiver.app import Receiver
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Forwarder
from channel_api.receiver.status import StatusWriter
from whatsapp_channel.forward_proof import (
    INSTANCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    forward_proof_valid,
)

from tests.receiver.conftest import FORWARD_SECRET, Harness
from tests.support.payloads import (
    account_change,
    channel_secret,
    meta_bytes,
    meta_signature,
    new_instance_id,
    notification,
    signed,
    status_change,
    text_change,
)
from tests.support.sink import Sink

APP_SECRET = "0123456789abcdef0123456789abcdef"
VERIFY_TOKEN = "verify-me-please"
PHONE = "114896151713920"


def hook(instance_id: str) -> str:
    return f"/hooks/whatsapp/{instance_id}"


@pytest.fixture
def instance_id(harness: Harness) -> str:
    iid = new_instance_id()
    harness.load(channel_secret(iid, PHONE, app_secret=APP_SECRET, verify_token=VERIFY_TOKEN))
    return iid


def challenge(token: str, mode: str = "subscribe", value: str = "1158201444") -> dict[str, str]:
    return {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": value}


# --- GET: the verification challenge ---------------------------------------------------


async def test_challenge_answers_the_raw_challenge_as_text(harness: Harness, instance_id: str):
    answer = await harness.client.get(hook(instance_id), params=challenge(VERIFY_TOKEN))
    assert answer.status_code == 200
    assert answer.text == "1158201444"
    assert answer.headers["content-type"].startswith("text/plain")
    await harness.status.flush()
    assert harness.patches == [
        (
            f"/apis/whatsapp.hydracore.io/v1alpha1/namespaces/tests/whatsappchannels/{instance_id}/status",
            {"status": {"lastChallengeAt": harness.patches[0][1]["status"]["lastChallengeAt"]}},
        )
    ]


@pytest.mark.parametrize(
    "params",
    [
        challenge("wrong-token-1234"),
        challenge(VERIFY_TOKEN[:-1]),
        challenge(VERIFY_TOKEN, mode="unsubscribe"),
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
        {},
    ],
)
async def test_challenge_refused_without_the_right_token_and_mode(
    harness: Harness, instance_id: str, params: dict[str, str]
):
    answer = await harness.client.get(hook(instance_id), params=params)
    assert answer.status_code == 403
    assert "1158201444" not in answer.text
    await harness.status.flush()
    assert harness.patches == []


async def test_challenge_refused_for_unknown_and_disabled_channels(harness: Harness):
    disabled = new_instance_id()
    harness.load(
        channel_secret(
            disabled, PHONE, app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, enabled=False
        )
    )
    for iid in (disabled, new_instance_id(), "not-a-uuid"):
        answer = await harness.client.get(hook(iid), params=challenge(VERIFY_TOKEN))
        assert answer.status_code == 403


async def test_shared_challenge_finds_the_channel_by_verify_token(harness: Harness):
    first, second = new_instance_id(), new_instance_id()
    harness.load(
        channel_secret(first, "1111111111", app_secret=APP_SECRET, verify_token="token-of-first"),
        channel_secret(second, "2222222222", app_secret=APP_SECRET, verify_token="token-of-second"),
    )
    answer = await harness.client.get(
        "/hooks/whatsapp", params=challenge("token-of-second", value="42")
    )
    assert (answer.status_code, answer.text) == (200, "42")
    await harness.status.flush()
    assert [path.split("/")[-2] for path, _ in harness.patches] == [second]

    for params in (challenge("token-of-nobody"), challenge("token-of-first", mode="x")):
        assert (await harness.client.get("/hooks/whatsapp", params=params)).status_code == 403


async def test_challenge_with_non_ascii_challenge_and_token(harness: Harness):
    iid = new_instance_id()
    harness.load(channel_secret(iid, PHONE, app_secret=APP_SECRET, verify_token="tökén-ünïcode"))
    answer = await harness.client.get(hook(iid), params=challenge("tökén-ünïcode", value="ça va"))
    assert (answer.status_code, answer.text) == (200, "ça va")


# --- POST: events delivered --------------------------------------------------------------


async def test_text_message_is_forwarded_byte_for_byte_with_proof(
    harness: Harness, sink: Sink, instance_id: str
):
    body = meta_bytes(notification([text_change(PHONE, "Hello there")]))
    answer = await harness.client.post(
        hook(instance_id), content=body, headers=signed(APP_SECRET, body)
    )
    assert (answer.status_code, answer.text) == (200, "OK")
    [forwarded] = sink.received
    assert forwarded.instance_id == instance_id
    assert forwarded.body == body
    assert forwarded.headers[INSTANCE_HEADER] == instance_id
    assert forward_proof_valid(
        FORWARD_SECRET,
        instance_id=instance_id,
        body=forwarded.body,
        timestamp=forwarded.headers[TIMESTAMP_HEADER],
        signature=forwarded.headers[SIGNATURE_HEADER],
    )
    # The proof binds the instance and the body.
    assert not forward_proof_valid(
        FORWARD_SECRET,
        instance_id=new_instance_id(),
        body=forwarded.body,
        timestamp=forwarded.headers[TIMESTAMP_HEADER],
        signature=forwarded.headers[SIGNATURE_HEADER],
    )
    await harness.status.flush()
    [(path, patch)] = harness.patches
    assert path.endswith(f"/whatsappchannels/{instance_id}/status")
    assert set(patch["status"]) == {"lastEventAt"}


async def test_status_update_is_forwarded(harness: Harness, sink: Sink, instance_id: str):
    body = meta_bytes(notification([status_change(PHONE, "read")]))
    answer = await harness.client.post(
        hook(instance_id), content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 200
    assert (
        json.loads(sink.received[0].body)["entry"][0]["changes"][0]["value"]["statuses"][0][
            "status"
        ]
        == "read"
    )


async def test_non_ascii_text_signed_over_metas_escaped_bytes(
    harness: Harness, sink: Sink, instance_id: str
):
    text = "Grüße, äöå! Привет 你好 🎉"
    body = meta_bytes(notification([text_change(PHONE, text)]))
    assert b"\\u00e4\\u00f6\\u00e5" in body
    assert b"\\ud83c\\udf89" in body
    answer = await harness.client.post(
        hook(instance_id), content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 200
    assert sink.received[0].body == body
    assert (
        json.loads(sink.received[0].body)["entry"][0]["changes"][0]["value"]["messages"][0]["text"][
            "body"
        ]
        == text
    )

    # A signature over the decoded UTF-8 bytes is not Meta's: refused.
    utf8 = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    wrong = await harness.client.post(
        hook(instance_id),
        content=body,
        headers={"X-Hub-Signature-256": meta_signature(APP_SECRET, utf8)},
    )
    assert wrong.status_code == 403


async def test_raw_utf8_body_is_checked_over_its_own_bytes(
    harness: Harness, sink: Sink, instance_id: str
):
    body = json.dumps(
        notification([text_change(PHONE, "naïve café ☕")]), ensure_ascii=False
    ).encode()
    answer = await harness.client.post(
        hook(instance_id), content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 200
    assert sink.received[0].body == body


async def test_several_entries_for_one_channel_are_forwarded_whole(
    harness: Harness, sink: Sink, instance_id: str
):
    event = notification(
        [text_change(PHONE, "first", wamid="wamid.1"), status_change(PHONE, "sent")],
        [text_change(PHONE, "second", wamid="wamid.2")],
        [account_change()],
    )
    body = meta_bytes(event)
    answer = await harness.client.post(
        hook(instance_id), content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 200
    assert [f.body for f in sink.received] == [body]


async def test_signature_header_is_matched_case_insensitively(
    harness: Harness, sink: Sink, instance_id: str
):
    body = meta_bytes(notification([text_change(PHONE, "hi")]))
    upper = meta_signature(APP_SECRET, body).upper()
    answer = await harness.client.post(
        hook(instance_id), content=body, headers={"X-Hub-Signature-256": upper}
    )
    assert answer.status_code == 200


async def test_changes_for_another_phone_are_refused_at_a_channel_url(
    harness: Harness, sink: Sink, instance_id: str
):
    """Another number's changes at this channel's URL are never handed to this instance."""
    for event in (
        notification([text_change(PHONE, "mine"), text_change("999999999999", "not mine")]),
        notification([text_change("999999999999", "not mine")]),
    ):
        body = meta_bytes(event)
        answer = await harness.client.post(
            hook(instance_id), content=body, headers=signed(APP_SECRET, body)
        )
        assert (answer.status_code, answer.text) == (403, "Forbidden")
    assert sink.received == []


# --- POST /hooks/whatsapp: routed by phone number id -----------------------------------


async def test_shared_post_routes_each_change_to_its_channel(harness: Harness, sink: Sink):
    first, second, other = new_instance_id(), new_instance_id(), new_instance_id()
    harness.load(
        channel_secret(first, "1111111111", app_secret=APP_SECRET, verify_token="t-first-1"),
        channel_secret(second, "2222222222", app_secret=APP_SECRET, verify_token="t-second-2"),
        channel_secret(other, "3333333333", app_secret="another-app-secret", verify_token="t-3333"),
    )
    # One channel: the body goes as it came.
    single = meta_bytes(notification([text_change("1111111111", "solo")]))
    answer = await harness.client.post(
        "/hooks/whatsapp", content=single, headers=signed(APP_SECRET, single)
    )
    assert answer.status_code == 200
    assert [(f.instance_id, f.body) for f in sink.received] == [(first, single)]

    # Several channels of one Meta app in one POST: each gets only its own changes.
    event = notification(
        [
            text_change("1111111111", "to first", wamid="wamid.a"),
            text_change("2222222222", "to second"),
        ],
        [status_change("1111111111"), account_change()],
        [text_change("5555555555", "nobody's")],
    )
    body = meta_bytes(event)
    answer = await harness.client.post(
        "/hooks/whatsapp", content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 200
    parts = {f.instance_id: json.loads(f.body) for f in sink.received[1:]}
    assert set(parts) == {first, second}
    assert parts[first]["object"] == "whatsapp_business_account"
    assert [[c["field"] for c in e["changes"]] for e in parts[first]["entry"]] == [
        ["messages"],
        ["messages"],
    ]
    assert (
        parts[first]["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == "to first"
    )
    assert "statuses" in parts[first]["entry"][1]["changes"][0]["value"]
    assert [len(e["changes"]) for e in parts[second]["entry"]] == [1]
    for forwarded in sink.received[1:]:
        assert forward_proof_valid(
            FORWARD_SECRET,
            instance_id=forwarded.instance_id,
            body=forwarded.body,
            timestamp=forwarded.headers[TIMESTAMP_HEADER],
            signature=forwarded.headers[SIGNATURE_HEADER],
        )
    await harness.status.flush()
    assert sorted(path.split("/")[-2] for path, _ in harness.patches) == sorted([first, second])


async def test_shared_post_needs_every_destinations_app_secret(harness: Harness, sink: Sink):
    """A tenant who knows its own app secret cannot slip changes into another channel."""
    mine, victim = new_instance_id(), new_instance_id()
    harness.load(
        channel_secret(
            mine, "1111111111", app_secret="attacker-app-secret", verify_token="t-mine-1"
        ),
        channel_secret(victim, "2222222222", app_secret=APP_SECRET, verify_token="t-victim-2"),
    )
    body = meta_bytes(
        notification([text_change("1111111111", "own"), text_change("2222222222", "forged")])
    )
    answer = await harness.client.post(
        "/hooks/whatsapp", content=body, headers=signed("attacker-app-secret", body)
    )
    assert answer.status_code == 403
    assert sink.received == []


async def test_shared_post_for_no_known_channel_is_refused_like_a_bad_signature(
    harness: Harness, sink: Sink, instance_id: str
):
    unknown = meta_bytes(notification([text_change("5555555555", "who?")]))
    account_only = meta_bytes(notification([account_change()]))
    bad_signature = meta_bytes(notification([text_change(PHONE, "hi")]))
    answers = [
        await harness.client.post(
            "/hooks/whatsapp", content=unknown, headers=signed(APP_SECRET, unknown)
        ),
        await harness.client.post(
            "/hooks/whatsapp", content=account_only, headers=signed(APP_SECRET, account_only)
        ),
        await harness.client.post(
            "/hooks/whatsapp",
            content=bad_signature,
            headers=signed("not-the-secret", bad_signature),
        ),
    ]
    assert {(a.status_code, a.text) for a in answers} == {(403, "Forbidden")}
    assert sink.received == []


# --- refusals -----------------------------------------------------------------------------


async def test_missing_signature_is_401(harness: Harness, sink: Sink, instance_id: str):
    body = meta_bytes(notification([text_change(PHONE, "hi")]))
    for path in (hook(instance_id), "/hooks/whatsapp", hook(new_instance_id())):
        answer = await harness.client.post(
            path, content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 401
        empty = await harness.client.post(path, content=body, headers={"X-Hub-Signature-256": ""})
        assert empty.status_code == 401
    # Meta's old SHA-1 header alone is not enough.
    sha1 = await harness.client.post(
        hook(instance_id), content=body, headers={"X-Hub-Signature": "sha1=0123"}
    )
    assert sha1.status_code == 401
    assert sink.received == []


@pytest.mark.parametrize(
    "header",
    [
        "sha256=" + "0" * 64,
        "sha256=nothex",
        "sha256=",
        "sha1=" + "0" * 40,
        "garbage",
        "sha256=ünïcode",
    ],
)
async def test_wrong_signature_is_403(harness: Harness, sink: Sink, instance_id: str, header: str):
    body = meta_bytes(notification([text_change(PHONE, "hi")]))
    answer = await harness.client.post(
        hook(instance_id), content=body, headers={b"X-Hub-Signature-256": header.encode()}
    )
    assert answer.status_code == 403
    assert sink.received == []


async def test_signature_of_another_body_or_secret_is_403(
    harness: Harness, sink: Sink, instance_id: str
):
    body = meta_bytes(notification([text_change(PHONE, "hi")]))
    tampered = body.replace(b"hi", b"ho")
    for content, headers in (
        (tampered, signed(APP_SECRET, body)),
        (body, signed(APP_SECRET + "x", body)),
        (body + b" ", signed(APP_SECRET, body)),
    ):
        answer = await harness.client.post(hook(instance_id), content=content, headers=headers)
        assert answer.status_code == 403
    assert sink.received == []


async def test_unknown_disabled_and_secretless_channels_answer_like_a_bad_signature(
    harness: Harness, sink: Sink
):
    disabled, secretless, live = new_instance_id(), new_instance_id(), new_instance_id()
    harness.load(
        channel_secret(
            disabled, "1111111111", app_secret=APP_SECRET, verify_token="t-1111", enabled=False
        ),
        channel_secret(secretless, "2222222222", app_secret=None, verify_token="t-2222"),
        channel_secret(live, "3333333333", app_secret=APP_SECRET, verify_token="t-3333"),
    )
    answers = []
    for iid, phone in (
        (disabled, "1111111111"),
        (secretless, "2222222222"),
        (new_instance_id(), "4444444444"),
        ("not-a-uuid", "4444444444"),
    ):
        body = meta_bytes(notification([text_change(phone, "hi")]))
        answers.append(
            await harness.client.post(hook(iid), content=body, headers=signed(APP_SECRET, body))
        )
        answers.append(
            await harness.client.post(
                "/hooks/whatsapp", content=body, headers=signed(APP_SECRET, body)
            )
        )
    body = meta_bytes(notification([text_change("3333333333", "hi")]))
    answers.append(
        await harness.client.post(hook(live), content=body, headers=signed("wrong", body))
    )
    assert {(a.status_code, a.text, a.headers["content-type"]) for a in answers} == {
        (403, "Forbidden", "text/plain; charset=utf-8")
    }
    assert sink.received == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"\xff\xfe\xfd",
        b"[]",
        b'"a string"',
        b'{"object":"whatsapp_business_account"}',
        b'{"entry":{}}',
        b'{"entry":["x"]}',
        b'{"entry":[{"changes":{}}]}',
        b'{"entry":[{"changes":[1]}]}',
    ],
)
async def test_malformed_event_with_a_valid_signature_is_400(
    harness: Harness, sink: Sink, instance_id: str, body: bytes
):
    for path in (hook(instance_id), "/hooks/whatsapp"):
        answer = await harness.client.post(path, content=body, headers=signed(APP_SECRET, body))
        assert answer.status_code == 400
    assert sink.received == []


async def test_malformed_event_with_a_bad_signature_is_403_on_a_channel_url(
    harness: Harness, instance_id: str
):
    answer = await harness.client.post(
        hook(instance_id), content=b"{not json", headers=signed("wrong", b"{not json")
    )
    assert answer.status_code == 403


async def test_oversized_body_is_413(harness: Harness, sink: Sink, instance_id: str):
    event = notification([text_change(PHONE, "x" * (70 * 1024))])
    body = meta_bytes(event)
    for path in (hook(instance_id), "/hooks/whatsapp"):
        answer = await harness.client.post(path, content=body, headers=signed(APP_SECRET, body))
        assert answer.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    answer = await harness.client.post(
        hook(instance_id), content=chunks(), headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 413
    assert sink.received == []

    just_fits = meta_bytes(notification([text_change(PHONE, "x" * (60 * 1024))]))
    answer = await harness.client.post(
        hook(instance_id), content=just_fits, headers=signed(APP_SECRET, just_fits)
    )
    assert answer.status_code == 200


async def test_invalid_content_length_is_400(harness: Harness, instance_id: str):
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": hook(instance_id),
        "query_string": b"",
        "headers": [(b"content-length", b"-5"), (b"x-hub-signature-256", b"sha256=00")],
    }
    await harness.receiver(scope, receive, send)
    assert messages[0]["status"] == 400


# --- delivery: 200 only once the instance accepted --------------------------------------


@pytest.mark.parametrize(
    ("instance_answer", "meta_gets"), [(500, 502), (404, 502), (302, 502), (202, 200)]
)
async def test_meta_gets_200_only_when_the_instance_accepted(
    harness: Harness, sink: Sink, instance_id: str, instance_answer: int, meta_gets: int
):
    sink.status = instance_answer
    body = meta_bytes(notification([text_change(PHONE, "hi")]))
    answer = await harness.client.post(
        hook(instance_id), content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == meta_gets
    assert len(sink.received) == 1


async def test_instance_down_means_502(harness: Harness, sink: Sink, instance_id: str):
    await sink.stop()
    body = meta_bytes(notification([text_change(PHONE, "hi")]))
    answer = await harness.client.post(
        hook(instance_id), content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 502


async def test_instance_too_slow_means_504(harness: Harness, sink: Sink, instance_id: str):
    sink.delay = 3.0  # the harness's forward timeout is 2s
    body = meta_bytes(notification([text_change(PHONE, "hi")]))
    answer = await harness.client.post(
        hook(instance_id), content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 504


async def test_shared_post_is_5xx_when_one_of_its_instances_refuses(harness: Harness, sink: Sink):
    first, second = new_instance_id(), new_instance_id()
    harness.load(
        channel_secret(first, "1111111111", app_secret=APP_SECRET, verify_token="t-first-1"),
        channel_secret(second, "2222222222", app_secret=APP_SECRET, verify_token="t-second-2"),
    )
    sink.status = 503
    body = meta_bytes(
        notification([text_change("1111111111", "a"), text_change("2222222222", "b")])
    )
    answer = await harness.client.post(
        "/hooks/whatsapp", content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 502
    assert len(sink.received) == 2


# --- the cache behind the URLs ------------------------------------------------------------


async def test_a_changed_app_secret_takes_effect_at_once(
    harness: Harness, sink: Sink, instance_id: str
):
    body = meta_bytes(notification([text_change(PHONE, "hi")]))
    assert (
        await harness.client.post(hook(instance_id), content=body, headers=signed(APP_SECRET, body))
    ).status_code == 200
    harness.cache.apply(
        "MODIFIED",
        channel_secret(instance_id, PHONE, app_secret="rotated-secret", verify_token=VERIFY_TOKEN),
    )
    old = await harness.client.post(
        hook(instance_id), content=body, headers=signed(APP_SECRET, body)
    )
    new = await harness.client.post(
        hook(instance_id), content=body, headers=signed("rotated-secret", body)
    )
    assert (old.status_code, new.status_code) == (403, 200)
    harness.cache.apply(
        "DELETED", channel_secret(instance_id, PHONE, app_secret=None, verify_token=None)
    )
    gone = await harness.client.post(
        hook(instance_id), content=body, headers=signed("rotated-secret", body)
    )
    assert gone.status_code == 403


async def test_not_ready_until_the_cache_synced(sink: Sink):
    async def record(path, body):
        return None

    cache = ChannelCache()
    forwarder = Forwarder(sink.url_template, FORWARD_SECRET, timeout=2, max_connections=2)
    receiver = Receiver(
        cache, forwarder, StatusWriter(record, "t", interval=1), max_body_bytes=4096
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=receiver), base_url="http://r"
    ) as client:
        iid = new_instance_id()
        body = meta_bytes(notification([text_change(PHONE, "hi")]))
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
        # Before the first list, Meta is asked to come back rather than told "forbidden".
        assert (
            await client.post(hook(iid), content=body, headers=signed(APP_SECRET, body))
        ).status_code == 503
        assert (await client.get(hook(iid), params=challenge(VERIFY_TOKEN))).status_code == 503
        secret = channel_secret(iid, PHONE, app_secret=APP_SECRET, verify_token=VERIFY_TOKEN)
        cache.apply("SYNC", {"items": [secret]})
        cache.mark_synced()
        assert (await client.get("/readyz")).status_code == 200
        assert (
            await client.post(hook(iid), content=body, headers=signed(APP_SECRET, body))
        ).status_code == 200
    await forwarder.close()


async def test_other_paths_and_methods(harness: Harness, instance_id: str):
    assert (await harness.client.get("/")).status_code == 404
    assert (await harness.client.get(f"/hooks/whatsapp/{instance_id}/x")).status_code == 404
    assert (await harness.client.get("/hooks/whatsappx")).status_code == 404
    answer = await harness.client.put(hook(instance_id), content=b"{}")
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET, POST")
    assert (await harness.client.delete("/hooks/whatsapp")).status_code == 405
