"""The launcher's keyword arguments (channel_launcher.product's TypedDicts) are the settings
classes' fields, with their types and their variables: a renamed or retyped setting fails here,
not in a process that silently ignores a variable it no longer reads."""

from __future__ import annotations

import types
from typing import Annotated, Any, Required, Union, get_args, get_origin, get_type_hints

import pytest
from channel_api.facade.settings import FacadeSettings
from channel_api.receiver.settings import ReceiverSettings
from channel_launcher.product import (
    FACADE,
    OPERATOR,
    RECEIVER,
    FacadeEnv,
    OperatorEnv,
    Process,
    ReceiverEnv,
)
from channel_operator.settings import OperatorSettings
from pydantic_settings import BaseSettings
from whatsapp_channel.settings import variable_names

LAUNCHERS: list[tuple[Process, Any, type[BaseSettings]]] = [
    (OPERATOR, OperatorEnv, OperatorSettings),
    (FACADE, FacadeEnv, FacadeSettings),
    (RECEIVER, ReceiverEnv, ReceiverSettings),
]


def _without_none(annotation: Any) -> Any:
    """`X | None` -> X; Annotated[X, ...] and Required[X] -> X."""
    if get_origin(annotation) is Required:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


@pytest.mark.parametrize(("process", "env", "settings_class"), LAUNCHERS)
def test_the_launcher_takes_the_settings_fields(
    process: Process, env: Any, settings_class: type[BaseSettings]
) -> None:
    fields = settings_class.model_fields
    hints = get_type_hints(env, include_extras=True)
    # Every field but where it listens, which the launcher chooses itself.
    listening = {
        name
        for name in fields
        if process.variable(name) in {process.host_variable, process.port_variable}
    }
    assert set(hints) == set(fields) - listening
    # Required where the settings class requires it (the launcher may require more).
    required = {n for n, hint in hints.items() if get_origin(hint) is Required}
    assert {n for n in hints if fields[n].is_required()} <= required
    for name, hint in hints.items():
        assert _without_none(hint) == _without_none(fields[name].annotation), name
        assert process.variable(name) == variable_names(settings_class)[name], name


def test_the_launcher_writes_the_variables_the_processes_read() -> None:
    assert OPERATOR.env(keys_namespace="wa-system", log_level="DEBUG", metrics_port=None) == {
        "WA_KEYS_NAMESPACE": "wa-system",
        "WA_OPERATOR_LOG_LEVEL": "DEBUG",
    }
    assert FACADE.env(keys_namespace="wa-system") == {"WA_KEYS_NAMESPACE": "wa-system"}
