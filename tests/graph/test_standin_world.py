"""The stand-in's world as its admin API changes it (issue 23: the stand-in's rules joined the
mutation gate, and these are what its runs found untested): a seeded number's app, account
and PIN, a number moved to another account, a removed one, what a PATCH changes, and how
injected faults count down. Every Meta test trusts these."""

from __future__ import annotations

from graph_standin.state import (
    AppSeed,
    Fault,
    FaultKind,
    NumberPatch,
    NumberSeed,
    World,
    derived_app_id,
)

PHONE, OTHER_PHONE = "106540352242922", "106540352242999"
WABA, OTHER_WABA = "102290129340398", "102290129340999"
SECRET = "0123456789abcdef0123456789abcdef"


def seeded(world: World, **fields: object) -> NumberSeed:
    values: dict[str, object] = {
        "phone_number_id": PHONE,
        "waba_id": WABA,
        "access_token": "EAAGtoken0123456789",
        "app_secret": SECRET,
    }
    values.update(fields)
    return NumberSeed.model_validate(values)


def test_an_app_id_is_derived_from_its_secret_as_a_fifteen_digit_number() -> None:
    # The value pinned: sha256 of the secret, its first 12 hex digits as a number, padded
    # with ones to 15 digits (Meta's app ids are 15 or 16 digits).
    assert derived_app_id(SECRET) == "168933105457479"
    assert derived_app_id("s") != derived_app_id("t")
    assert all(len(derived_app_id(str(n))) == 15 for n in range(50))


def test_a_seeded_number_keeps_its_pin_and_its_apps_callback() -> None:
    world = World()
    first = world.seed(seeded(world, app_callback_url="http://127.0.0.1:9/app", pin="123456"))
    assert first.pin == "123456"
    app = world.apps[first.app_id]
    assert app.callback_url == "http://127.0.0.1:9/app"
    world.seed(seeded(world, phone_number_id=OTHER_PHONE))  # the same app, no callback said
    assert world.apps[first.app_id].callback_url == "http://127.0.0.1:9/app"


def test_a_number_seeded_again_under_another_account_leaves_the_first() -> None:
    world = World()
    world.seed(seeded(world))
    world.seed(seeded(world, waba_id=OTHER_WABA))
    assert world.wabas[WABA].numbers == set()
    assert world.wabas[OTHER_WABA].numbers == {PHONE}
    assert world.wabas[OTHER_WABA].waba_id == OTHER_WABA
    number = world.numbers[PHONE]
    world.remove(number)
    assert world.wabas[OTHER_WABA].numbers == set()
    assert PHONE not in world.numbers


def test_an_added_app_has_the_name_given() -> None:
    world = World()
    app = world.add_app(AppSeed(app_id="1234", app_secret="s", name="Platform"))
    assert (world.apps["1234"].name, app.secret) == ("Platform", "s")


def test_a_patch_changes_exactly_what_it_names() -> None:
    world = World()
    number = world.seed(seeded(world))
    world.patch(
        number,
        NumberPatch(
            messaging_limit_tier="TIER_10K",
            app_secret="another-secret",
            access_token="EAAGnewtoken987654321",
            token_expires_at=1_900_000_000,
        ),
    )
    assert number.messaging_limit_tier == "TIER_10K"
    assert world.apps[number.app_id].secret == "another-secret"
    assert number.access_token == "EAAGnewtoken987654321"
    assert world.tokens["EAAGnewtoken987654321"].expires_at == 1_900_000_000
    assert PHONE in world.tokens["EAAGnewtoken987654321"].numbers
    world.patch(number, NumberPatch(status="CONNECTED"))  # nothing else moves
    assert (number.messaging_limit_tier, world.apps[number.app_id].secret) == (
        "TIER_10K",
        "another-secret",
    )
    assert world.tokens[number.access_token].expires_at == 1_900_000_000


def test_a_fault_applies_to_its_call_only_and_as_many_times_as_said() -> None:
    world = World()
    number = world.seed(seeded(world))
    number.faults.append(Fault(kind=FaultKind.SERVER_ERROR, call="subscribe"))
    number.faults.append(Fault(kind=FaultKind.TOKEN_EXPIRED, call="check", times=3))
    taken = [number.take_fault("check") for _ in range(4)]
    assert [f.kind if f else None for f in taken] == [FaultKind.TOKEN_EXPIRED] * 3 + [None]
    assert number.take_fault("subscribe") is not None  # no count: every time
    assert number.take_fault("subscribe") is not None
