"""`channel_operator.tenancy`: a Secret's opt-in annotation names instances exactly (issue 23:
a break that matched instance ids loosely passed every test)."""

from __future__ import annotations

import pytest
from channel_operator.desired import ChannelFailure, ChannelRef
from channel_operator.tenancy import check_secret_ref
from whatsapp_channel.model import SECRET_REF_CHANNELS_ANNOTATION
from whatsapp_channel.reasons import SECRET_REF_NOT_OPTED_IN

INSTANCE = "0b7e4f1c-5d0a-4c7e-9d3e-2f1a6b8c9d01"


def secret(opt_in: str | None) -> dict[str, object]:
    annotations = {} if opt_in is None else {SECRET_REF_CHANNELS_ANNOTATION: opt_in}
    return {"metadata": {"name": "theirs", "annotations": annotations}}


REF = ChannelRef(namespace="wa", name=INSTANCE, uid="u", generation=1)


@pytest.mark.parametrize(
    "opt_in",
    [INSTANCE, f"other-instance,{INSTANCE}", f" {INSTANCE} , other-instance", f"{INSTANCE},"],
)
def test_an_opt_in_naming_the_instance_among_others_allows_it(opt_in: str) -> None:
    check_secret_ref(secret(opt_in), REF)


@pytest.mark.parametrize(
    "opt_in",
    [
        None,
        "",
        "*",
        INSTANCE[:-1],  # a prefix of the id
        INSTANCE + "0",  # the id as a prefix of another
        f"x{INSTANCE}",
        INSTANCE.upper(),
        f"{INSTANCE[:8]},{INSTANCE[9:]}",  # its parts, not itself
        f"other-instance;{INSTANCE}",  # not the separator
    ],
)
def test_an_opt_in_that_does_not_name_the_instance_exactly_refuses_it(opt_in: str | None) -> None:
    with pytest.raises(ChannelFailure) as refused:
        check_secret_ref(secret(opt_in), REF)
    assert refused.value.reason == SECRET_REF_NOT_OPTED_IN
