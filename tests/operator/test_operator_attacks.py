"""Issue 13, the operator against hostile resources, on the in-memory apiserver: each test
performs an attack (a claimed phone number, a secretRef to another channel's Secret,
malformed seals, 8 KiB key ids, a drift repair racing a reconcile) and shows it fails.
The same attacks against the real control plane: test_tenancy_cluster.py."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import uuid
from collections.abc import Callable
from typing import Any, Literal

from channel_operator import graph, reconcile
from channel_operator.channel_at_meta import Meta
from channel_operator.desired import ChannelFailure
from channel_operator.graph import GraphClient
from channel_operator.graph import client as graph_client
from channel_operator.tenancy import PhoneClaimIndex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PublicKey, SealedBox
from pydantic import ValidationError
from whatsapp_channel import crd
from whatsapp_channel.channel_secret import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from whatsapp_channel.kube import JSON, channels_path, core_path
from whatsapp_channel.model import (
    API_VERSION,
    CREDENTIALS_VALID,
    KIND,
    SEALED_MAX_LENGTH,
    SEALING_KEYS_SECRET,
    SECRET_REF_CHANNELS_ANNOTATION,
    ChannelSetup,
    ChannelSpec,
)
from whatsapp_channel.phone_claims import Claim, claim_fields, claim_of
from whatsapp_channel.reasons import (
    INVALID_SPEC,
    MALFORMED_SEAL,
    PHONE_NUMBER_TAKEN,
    SEAL_DOES_NOT_OPEN,
    SEAL_SCOPE_MISMATCH,
    SECRET_REF_NOT_ALLOWED,
    SECRET_REF_NOT_OPTED_IN,
    UNKNOWN_SEALING_KEY,
)
from whatsapp_channel.sealing import PublicSealingKey, new_private_key, public_key_of, seal
from whatsapp_channel.untrusted import MESSAGE_LIMIT

from tests.operator.test_reconcile import (
    NS,
    VALUES,
    channel_body,
    make_runtime,
    public_key,
    ready_of,
    sealed_spec,
    secret_values,
)
from tests.support.fake_kube import MemoryKube

PHONE = "106540352242922"
SEAL_REASONS = {MALFORMED_SEAL, UNKNOWN_SEALING_KEY, SEAL_DOES_NOT_OPEN, SEAL_SCOPE_MISMATCH}


def secret_path(name: str) -> str:
    return core_path("secrets", NS, f"whatsapp-{name}")


def assert_safe_text(text: str) -> None:
    assert text.isprintable(), text[:200]
    assert len(text) <= MESSAGE_LIMIT + 40


# --- 5: a phone number id belongs to the channel whose claim holds it ---------------------
# (issue 21 item 1: a claim dates from its proof, not from the channel's creationTimestamp)


def claims_of(*bodies: JSON) -> PhoneClaimIndex:
    """The claim index as the operator's channel watch fills it."""
    index = PhoneClaimIndex()
    index.on_event("SYNC", {"items": list(bodies)})
    return index


async def settle(rt: reconcile.Runtime, body: JSON) -> ChannelFailure | None:
    """One reconcile, its status patch applied to `body` as the apiserver would."""
    patch: JSON = {}
    failure = await reconcile.reconcile(rt, body, patch)
    body["status"] = {**body["status"], **patch}
    return failure


async def test_an_older_channel_moving_to_a_held_number_gets_no_secret() -> None:
    """Fails on the code before issue 21: the older channel won by creationTimestamp, and the
    victim's next reconcile deleted the victim's Secret."""
    kube = MemoryKube()
    rt = await make_runtime(kube)
    key = public_key(kube)
    victim, attacker = str(uuid.uuid4()), str(uuid.uuid4())
    theirs = {k: f"{v}-attacker" for k, v in VALUES.items()}
    attacker_body = channel_body(attacker, sealed_spec(key, attacker, theirs))
    attacker_body["spec"]["phoneNumberId"] = "106540352240001"
    attacker_body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    victim_body = channel_body(victim, sealed_spec(key, victim, VALUES))
    victim_body["metadata"]["creationTimestamp"] = "2026-06-01T00:00:00Z"
    rt.phone_claims = claims_of(attacker_body, victim_body)
    assert await settle(rt, attacker_body) is None
    assert await settle(rt, victim_body) is None
    assert victim_body["status"]["phoneClaim"]["phoneNumberId"] == PHONE

    # The older channel names the victim's number (a re-POST, or kubectl edit).
    attacker_body["spec"]["phoneNumberId"] = PHONE
    attacker_body["metadata"]["generation"] = 2
    rt.phone_claims = claims_of(attacker_body, victim_body)
    patch: JSON = {}
    failure = await reconcile.reconcile(rt, attacker_body, patch)
    assert failure is not None
    assert failure.reason == PHONE_NUMBER_TAKEN
    assert victim not in failure.message
    assert victim not in json.dumps(patch)
    assert secret_path(attacker) not in kube.objects

    # The victim's next reconciles (any edit, a restart) keep its Secret.
    for _ in range(2):
        assert await settle(rt, victim_body) is None
        assert secret_values(kube, victim) == VALUES


async def test_a_claimant_meta_refuses_yields_at_once() -> None:
    """A squatter that got the Secret first, whose credentials Meta refused, loses the number
    to the real owner, and its Secret goes."""
    kube = MemoryKube()
    rt = await make_runtime(kube)
    key = public_key(kube)
    squatter, owner = str(uuid.uuid4()), str(uuid.uuid4())
    bogus = {k: f"{v}-bogus" for k, v in VALUES.items()}
    squatter_body = channel_body(squatter, sealed_spec(key, squatter, bogus))
    squatter_body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    rt.phone_claims = claims_of(squatter_body)
    assert await reconcile.reconcile(rt, squatter_body, {}) is None
    assert secret_path(squatter) in kube.objects
    squatter_body["status"] = {
        "conditions": [
            {
                "type": "CredentialsValid",
                "status": "False",
                "reason": "TokenInvalid",
                "message": "Meta refused the access token",
                "lastTransitionTime": "2026-01-01T00:00:01Z",
                "observedGeneration": 1,
            }
        ]
    }
    owner_body = channel_body(owner, sealed_spec(key, owner, VALUES))
    owner_body["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    rt.phone_claims = claims_of(squatter_body, owner_body)
    assert await settle(rt, owner_body) is None
    assert secret_values(kube, owner) == VALUES
    assert secret_path(squatter) not in kube.objects
    failure = await reconcile.reconcile(rt, squatter_body, {})
    assert failure is not None
    assert failure.reason == PHONE_NUMBER_TAKEN


async def test_unproven_claims_go_by_age_then_name_and_the_holder_keeps() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    key = public_key(kube)
    first, second = sorted(str(uuid.uuid4()) for _ in range(2))
    bodies = {n: channel_body(n, sealed_spec(key, n, VALUES)) for n in (first, second)}
    for body in bodies.values():
        body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    rt.phone_claims = claims_of(*bodies.values())
    failure = await reconcile.reconcile(rt, bodies[second], {})
    assert failure is not None
    assert failure.reason == PHONE_NUMBER_TAKEN

    # `second` came alone first and holds the number (no proof yet: Meta not asked); `first`,
    # a name that sorts lower, arrives within the same second.
    kube = MemoryKube()
    rt = await make_runtime(kube)
    key = public_key(kube)
    bodies = {n: channel_body(n, sealed_spec(key, n, VALUES)) for n in (first, second)}
    for body in bodies.values():
        body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    rt.phone_claims = claims_of(bodies[second])
    assert await reconcile.reconcile(rt, bodies[second], {}) is None
    rt.phone_claims = claims_of(*bodies.values())
    failure = await reconcile.reconcile(rt, bodies[first], {})
    assert failure is not None
    assert failure.reason == PHONE_NUMBER_TAKEN
    assert await reconcile.reconcile(rt, bodies[second], {}) is None
    assert secret_path(first) not in kube.objects


def test_the_claim_index_follows_the_channels() -> None:
    index = PhoneClaimIndex()

    def body(name: str, phone: str, created: str, proven: str | None = None) -> JSON:
        spec = {"phoneNumberId": phone}
        status = {"phoneClaim": {"phoneNumberId": proven, "since": "t0"}} if proven else {}
        metadata = {"name": name, "creationTimestamp": created}
        return {"metadata": metadata, "spec": spec, "status": status}

    index.on_event("SYNC", {"items": [body("a", PHONE, "t1", PHONE), body("b", PHONE, "t2")]})
    assert index.get(PHONE) == {Claim("a", "t0", proven=True), Claim("b", "t2")}
    index.on_event("MODIFIED", body("a", "12345", "t1", PHONE))  # a moved to another number
    assert index.get(PHONE) == {Claim("b", "t2")}
    assert index.get("12345") == {Claim("a")}  # a new claim: as young as any
    index.on_event("DELETED", body("b", PHONE, "t2"))
    assert index.get(PHONE, ()) == ()
    assert list(index) == ["12345"]


def test_the_claim_index_is_handed_only_the_fields_claims_read() -> None:
    """The operator's channel watch hands the index `claim_fields` of each channel (50,000
    whole channels would be hundreds of megabytes): every claim comes out the same."""
    sealed = {"accessToken": "wa1:k:" + "x" * 200, "appSecret": "wa1:k:" + "y" * 200}
    full = channel_body("c", {"phoneNumberId": PHONE, "sealed": sealed}, generation=3)
    full["metadata"] |= {"creationTimestamp": "t1", "managedFields": [{"manager": "x"}]}
    full["status"] = {
        "phoneClaim": {"phoneNumberId": PHONE, "since": "t0"},
        "conditions": [
            {"type": "Ready", "status": "False", "observedGeneration": 3},
            {"type": CREDENTIALS_VALID, "status": "False", "observedGeneration": 3},
        ],
        "displayPhoneNumber": "+61400111222",
    }
    moved = copy.deepcopy(full) | {"spec": {**full["spec"], "phoneNumberId": "12345"}}
    stale = copy.deepcopy(full)
    stale["status"]["conditions"][1]["observedGeneration"] = 2
    unproven = copy.deepcopy(full) | {"status": {}}
    for body in (full, moved, stale, unproven, {"metadata": {"name": "d"}, "spec": {}}):
        assert claim_of(claim_fields(body)) == claim_of(body)
    kept = claim_fields(full)
    assert set(kept["spec"]) == {"phoneNumberId"}
    assert "managedFields" not in kept["metadata"]
    assert [c["type"] for c in kept["status"]["conditions"]] == [CREDENTIALS_VALID]


# --- 6: spec.secretRef may read only a user's Secret that opts in -------------------------


async def test_a_secret_ref_to_another_channels_generated_secret_is_refused_unread() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    victim = str(uuid.uuid4())
    assert (
        await reconcile.reconcile(
            rt, channel_body(victim, sealed_spec(public_key(kube), victim, VALUES)), {}
        )
        is None
    )

    attacker = str(uuid.uuid4())
    for target in (f"whatsapp-{victim}", SEALING_KEYS_SECRET):
        kube.calls.clear()
        spec = {"instanceId": attacker, "phoneNumberId": "12345", "secretRef": {"name": target}}
        patch: JSON = {}
        failure = await reconcile.reconcile(rt, channel_body(attacker, spec), patch)
        assert failure is not None, target
        assert failure.reason == SECRET_REF_NOT_ALLOWED, target
        assert ready_of(patch)["reason"] == SECRET_REF_NOT_ALLOWED
        assert not [c for c in kube.calls if c[1] == core_path("secrets", NS, target)]
        assert secret_path(attacker) not in kube.objects


async def test_a_secret_ref_to_a_managed_secret_of_another_name_is_refused() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    data = {k: base64.b64encode(v.encode()).decode() for k, v in VALUES.items()}
    metadata = {
        "name": "looks-like-mine",
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        "annotations": {SECRET_REF_CHANNELS_ANNOTATION: name},
    }
    await kube.create(core_path("secrets", NS), {"metadata": metadata, "data": data})
    spec = {"instanceId": name, "phoneNumberId": "12345", "secretRef": {"name": "looks-like-mine"}}
    failure = await reconcile.reconcile(rt, channel_body(name, spec), {})
    assert failure is not None
    assert failure.reason == SECRET_REF_NOT_ALLOWED


async def test_a_secret_ref_to_a_secret_that_does_not_opt_in_is_refused() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    data = {k: base64.b64encode(v.encode()).decode() for k, v in VALUES.items()}
    for opt_in in ({}, {SECRET_REF_CHANNELS_ANNOTATION: str(uuid.uuid4())}):
        secret = {"metadata": {"name": "theirs", "annotations": opt_in}, "data": data}
        kube.objects.pop(core_path("secrets", NS, "theirs"), None)
        await kube.create(core_path("secrets", NS), secret)
        spec = {"instanceId": name, "phoneNumberId": "12345", "secretRef": {"name": "theirs"}}
        failure = await reconcile.reconcile(rt, channel_body(name, spec), {})
        assert failure is not None
        assert failure.reason == SECRET_REF_NOT_OPTED_IN
        assert secret_path(name) not in kube.objects


# --- 7, 8: malformed seals become Ready=False, whatever they hold --------------------------

Sealer = Callable[[PublicSealingKey, str, str], str]


def box(key: PublicSealingKey, plaintext: bytes) -> str:
    sealed = SealedBox(PublicKey(key.public_key)).encrypt(plaintext)
    return base64.b64encode(sealed).decode()


def nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def sealers() -> st.SearchStrategy[Sealer]:
    """A sealed field's value, given the operator's public key, the channel and the field."""
    text = st.text(min_size=1, max_size=300)
    raw: st.SearchStrategy[Sealer] = text.map(lambda t: lambda k, n, f: t)
    weird_id: st.SearchStrategy[Sealer] = st.tuples(st.text(max_size=300), text).map(
        lambda p: lambda k, n, f: f"wa1:{p[0]}:{p[1]}"
    )
    unknown_id: st.SearchStrategy[Sealer] = st.binary(min_size=1, max_size=200).map(
        lambda b: lambda k, n, f: f"wa1:0123456789abcdef:{base64.b64encode(b).decode()}"
    )
    bad_box: st.SearchStrategy[Sealer] = text.map(lambda t: lambda k, n, f: f"wa1:{k.key_id}:{t}")
    plaintexts = st.one_of(
        st.binary(max_size=300),
        st.integers(min_value=1, max_value=3000).map(nested_json),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"scope": st.text(max_size=100), "value": st.text(max_size=50)}).map(
            lambda v: json.dumps(v).encode()
        ),
    )
    opaque: st.SearchStrategy[Sealer] = plaintexts.map(
        lambda p: lambda k, n, f: f"wa1:{k.key_id}:{box(k, p)}"
    )
    wrong_scope: st.SearchStrategy[Sealer] = st.sampled_from(["field", "name"]).map(
        lambda which: (
            lambda k, n, f: seal(
                k,
                namespace=NS,
                name=n if which == "field" else str(uuid.uuid4()),
                field=f"{f}-other" if which == "field" else f,
                value="v",
            )
        )
    )
    return st.one_of(raw, weird_id, unknown_id, bad_box, opaque, wrong_scope)


def good(key: PublicSealingKey, name: str, field: str) -> str:
    return seal(key, namespace=NS, name=name, field=field, value="a-good-value")


async def reconcile_sealed(fields: dict[str, Sealer]) -> tuple[MemoryKube, str, Any, JSON]:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    key = public_key(kube)
    name = str(uuid.uuid4())
    sealed = {f: fields.get(f, good)(key, name, f) for f in ("accessToken", "appSecret")}
    sealed["verifyToken"] = fields.get("verifyToken", good)(key, name, "verifyToken")
    spec = {"instanceId": name, "phoneNumberId": PHONE, "sealed": sealed}
    patch: JSON = {}
    failure = await reconcile.reconcile(rt, channel_body(name, spec), patch)
    return kube, name, failure, patch


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["accessToken", "appSecret", "verifyToken"]), sealers(), min_size=1
    )
)
def test_any_malformed_seal_is_ready_false_with_a_stable_reason(fields: dict[str, Sealer]) -> None:
    kube, name, failure, patch = asyncio.run(reconcile_sealed(fields))
    assert failure is not None
    assert failure.reason in SEAL_REASONS | {INVALID_SPEC}  # INVALID_SPEC: over the length
    assert ready_of(patch)["status"] == "False"
    assert ready_of(patch)["reason"] == failure.reason
    assert_safe_text(failure.message)
    assert_safe_text(ready_of(patch)["message"])
    assert secret_path(name) not in kube.objects


async def test_an_unknown_key_in_one_field_and_a_malformed_seal_in_another() -> None:
    unknown: Sealer = lambda k, n, f: "wa1:0123456789abcdef:AAAA"  # noqa: E731
    malformed: Sealer = lambda k, n, f: "not a seal"  # noqa: E731
    _, _, failure, patch = await reconcile_sealed({"accessToken": unknown, "appSecret": malformed})
    assert failure is not None
    assert failure.reason == MALFORMED_SEAL
    assert ready_of(patch)["reason"] == MALFORMED_SEAL


async def test_a_deeply_nested_plaintext_under_the_length_limit_does_not_open() -> None:
    deep: Sealer = lambda k, n, f: f"wa1:{k.key_id}:{box(k, nested_json(2900))}"  # noqa: E731
    assert len(deep(public_key_of(new_private_key()[1]), "", "")) < SEALED_MAX_LENGTH
    _, _, failure, patch = await reconcile_sealed({"appSecret": deep})
    assert failure is not None
    assert failure.reason == SEAL_DOES_NOT_OPEN
    assert ready_of(patch)["reason"] == SEAL_DOES_NOT_OPEN


async def test_an_8_kib_key_id_with_newlines_reaches_no_message_whole() -> None:
    key_id = ("\n\x1b[31mkey-id " * 700)[: SEALED_MAX_LENGTH - 20]
    hostile: Sealer = lambda k, n, f: f"wa1:{key_id}:AAAA"  # noqa: E731
    _, _, failure, patch = await reconcile_sealed({"verifyToken": hostile})
    assert failure is not None
    assert failure.reason == MALFORMED_SEAL
    for message in (failure.message, ready_of(patch)["message"], str(failure)):
        assert "\n" not in message
        assert "\x1b" not in message
        assert len(message) < 200


# --- 9: a drift repair never writes credentials older than a reconcile's -------------------


class GatedKube(MemoryKube):
    """Holds the answer to one GET of `gated` until `release` is set; `read` says it came."""

    def __init__(self) -> None:
        super().__init__()
        self.gated: str | None = None
        self.read = asyncio.Event()
        self.release = asyncio.Event()

    async def request(self, method: str, path: str, **kwargs: Any) -> JSON:
        answer = await super().request(method, path, **kwargs)
        if method == "GET" and path == self.gated:
            self.gated = None
            self.read.set()
            await self.release.wait()
        return answer


class WatchedLock(asyncio.Lock):
    """A lock that says when someone waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        if self.locked():
            self.contended.set()
        return await super().acquire()


async def test_a_repair_that_read_generation_1_never_writes_after_generation_2() -> None:
    kube = GatedKube()
    rt = await make_runtime(kube)
    key = public_key(kube)
    name = str(uuid.uuid4())
    first = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": NS},
        "spec": sealed_spec(key, name, VALUES),
    }
    created = await kube.create(channels_path(NS), first)
    assert await reconcile.reconcile(rt, created, {}) is None
    lock = WatchedLock()
    rt.secrets._locks[f"whatsapp-{name}"] = lock

    # The repair reads generation 1 ...
    kube.gated = channels_path(NS, name)
    repair = asyncio.create_task(reconcile.repair(rt, name))
    await kube.read.wait()
    # ... generation 2 (new credentials) is written and reconciled meanwhile ...
    newer = {k: f"{v}-rotated" for k, v in VALUES.items()}
    current = await kube.get(channels_path(NS, name))
    second = await kube.replace(
        channels_path(NS, name), {**current, "spec": sealed_spec(key, name, newer)}
    )
    assert second["metadata"]["generation"] == 2
    update = asyncio.create_task(reconcile.reconcile(rt, second, {}))
    contended = asyncio.create_task(lock.contended.wait())
    await asyncio.wait({update, contended}, return_when=asyncio.FIRST_COMPLETED)
    # ... and only then does the repair go on.
    kube.release.set()
    await repair
    assert await update is None
    contended.cancel()
    assert secret_values(kube, name) == newer


async def test_a_write_for_an_older_generation_of_the_same_channel_is_skipped() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    key = public_key(kube)
    name = str(uuid.uuid4())
    newer = {k: f"{v}-2" for k, v in VALUES.items()}
    gen2 = channel_body(name, sealed_spec(key, name, newer), generation=2)
    gen1 = channel_body(name, sealed_spec(key, name, VALUES), generation=1)
    assert await reconcile.reconcile(rt, gen2, {}) is None
    kube.writes.clear()
    assert await reconcile.reconcile(rt, gen1, {}) is None
    assert kube.secret_writes() == []
    assert secret_values(kube, name) == newer


# --- issue 21 item 6: one Meta id pattern, and the Graph client's input checks ------------


def test_one_meta_id_pattern_for_the_facade_the_crd_and_the_graph_client() -> None:
    """Fails on the code before issue 21: 21-32 digits passed the facade and the CRD, and the
    Graph client raised on them (a channel `pending` forever, a traceback every 30 s)."""
    spec_schema = crd.spec_schema()["properties"]
    graph_ids = re.compile(graph_client._ID_PATTERN.pattern)
    for digits, fits in ((5, True), (20, True), (21, False), (32, False)):
        number = "1" * digits
        assert bool(graph_ids.fullmatch(number)) is fits
        for field in ("phoneNumberId", "wabaId"):
            schema = spec_schema[field]
            assert (
                bool(re.fullmatch(schema["pattern"], number)) and digits <= schema["maxLength"]
            ) is fits
        body = {"access_token": "a", "app_secret": "b", "phone_number_id": number}
        try:
            ChannelSetup.model_validate(body)
            ChannelSpec.model_validate({"instanceId": str(uuid.uuid4()), "phoneNumberId": number})
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted is fits


async def test_an_id_the_graph_client_refuses_is_invalid_spec_without_a_secret() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    # A real client: its input checks run before any connection (nothing listens there).
    rt.meta = Meta(graph=GraphClient("http://127.0.0.1:9", "v25.0"))
    name = str(uuid.uuid4())
    body = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    body["spec"]["phoneNumberId"] = "1" * 25
    patch: JSON = {}
    failure = await reconcile.reconcile(rt, body, patch)
    assert failure is not None
    assert failure.reason == INVALID_SPEC
    assert ready_of(patch)["reason"] == INVALID_SPEC
    assert secret_path(name) not in kube.objects

    # Whatever else the client's checks refuse is InvalidSpec too, and no Secret stays.
    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise graph.GraphInputError("a Graph object id is numeric, not 'x'")

    body["spec"]["phoneNumberId"] = PHONE
    rt.meta.graph.check_phone_number = refuse  # type: ignore[method-assign,assignment]
    failure = await reconcile.reconcile(rt, body, {})
    assert failure is not None
    assert failure.reason == INVALID_SPEC
    assert secret_path(name) not in kube.objects
    await rt.meta.graph.close()


# --- issue 21 item 5: labelled Secrets the operator did not write are deleted -------------


async def test_labelled_secrets_the_operator_did_not_write_are_deleted() -> None:
    """Fails on the code before issue 21, which cached and kept them (and the receiver
    routed by them)."""
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    body = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    assert await reconcile.reconcile(rt, body, {}) is None
    ours = kube.objects[secret_path(name)]
    forged_names = ["hand-made-copy", f"whatsapp-{uuid.uuid4()}"]  # the same labels and owner
    for forged_name in forged_names:
        secret = copy.deepcopy(ours)
        metadata = {
            k: v for k, v in secret["metadata"].items() if k not in ("uid", "resourceVersion")
        }
        secret["metadata"] = {**metadata, "name": forged_name}
        created = await kube.create(core_path("secrets", NS), secret)
        rt.secrets._on_event("ADDED", created)
    await asyncio.gather(*rt.secrets._tasks)
    for forged_name in forged_names:
        assert core_path("secrets", NS, forged_name) not in kube.objects
        assert rt.secrets.get(forged_name) is None
    assert secret_values(kube, name) == VALUES  # the operator's own stays
