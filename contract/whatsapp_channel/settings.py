"""How every process of the product starts: its settings, its log level, its refusals.

Each process (operator, facade, receiver) has one pydantic-settings class; its `main` loads it
with `load_settings`, which refuses bad settings the same way everywhere: one line on stderr,
naming the variables, and exit code 2 (`refuse`). A setting that is the same thing in several
processes has one variable for all of them (`CHANNELS_NAMESPACE_VARIABLE`,
`KEYS_NAMESPACE_VARIABLE`); an older spelling still works, with a deprecation warning
(`DEPRECATED_VARIABLES`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings

from whatsapp_channel.model import DEFAULT_NAMESPACE, DNS1123_SUBDOMAIN_PATTERN

log = logging.getLogger(__name__)

# Exit code of a process that refuses its settings (argparse's, for a bad command line).
BAD_SETTINGS = 2

# The namespace of the channels (the WhatsAppChannels and their Secrets): read by the
# operator, the facade, the receiver and `whatsapp-seal` alike.
CHANNELS_NAMESPACE_VARIABLE = "WA_CHANNELS_NAMESPACE"

# The operator's own namespace (its sealing keys and their public ConfigMap): read by the
# operator, the facade, `whatsapp-seal` and `whatsapp-operator rotate-key` alike.
KEYS_NAMESPACE_VARIABLE = "WA_KEYS_NAMESPACE"

# Older spellings -> the variable that replaces them. Still read, with a warning.
DEPRECATED_VARIABLES: Mapping[str, str] = {
    "WA_OPERATOR_NAMESPACE": CHANNELS_NAMESPACE_VARIABLE,
    "WA_FACADE_NAMESPACE": CHANNELS_NAMESPACE_VARIABLE,
    "WA_RECEIVER_NAMESPACE": CHANNELS_NAMESPACE_VARIABLE,
    "WA_OPERATOR_KEYS_NAMESPACE": KEYS_NAMESPACE_VARIABLE,
    "WA_FACADE_SEALING_KEY_NAMESPACE": KEYS_NAMESPACE_VARIABLE,
}


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


# One log level type for every process: any case in, upper case out (logging's own names);
# uvicorn gets it lower-cased.
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]


def channels_namespace_field(deprecated: str, *, description: str) -> Any:
    """The `namespace` field: `WA_CHANNELS_NAMESPACE`, else the process's deprecated spelling
    (tests and launchers pass it by that variable's name too)."""
    return Field(
        default=DEFAULT_NAMESPACE,
        validation_alias=AliasChoices(CHANNELS_NAMESPACE_VARIABLE, deprecated),
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        max_length=63,
        description=description,
    )


def keys_namespace_field(*deprecated: str, description: str) -> Any:
    """The `keys_namespace` field: `WA_KEYS_NAMESPACE`, else a deprecated spelling."""
    return Field(
        default=None,
        validation_alias=AliasChoices(KEYS_NAMESPACE_VARIABLE, *deprecated),
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        max_length=63,
        description=description,
    )


def variable_names(settings_class: type[BaseSettings]) -> dict[str, str]:
    """Each field of `settings_class` -> the environment variable it is read from."""
    prefix = str(settings_class.model_config.get("env_prefix") or "")
    names = {}
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names[name] = str(alias.choices[0])
        elif isinstance(alias, str):
            names[name] = alias
        else:
            names[name] = f"{prefix}{name}".upper()
    return names


def refuse(prog: str, problem: str) -> NoReturn:
    """Stop a process at start: one line on stderr, exit code 2."""
    print(f"{prog}: {problem}", file=sys.stderr)
    raise SystemExit(BAD_SETTINGS)


S = TypeVar("S", bound=BaseSettings)


def load_settings(settings_class: type[S], prog: str) -> S:
    """`settings_class` from the environment, or `refuse` naming every bad variable."""
    for old, new in DEPRECATED_VARIABLES.items():
        if old in os.environ and _reads(settings_class, old):
            log.warning("%s: %s is deprecated; set %s instead", prog, old, new)
    try:
        return settings_class()
    except ValidationError as exc:
        names = variable_names(settings_class)

        def variable(loc: tuple[int | str, ...]) -> str:
            field = str(loc[0]) if loc else ""
            return names.get(field, field.upper())

        problems = "; ".join(f"{variable(e['loc'])}: {e['msg']}" for e in exc.errors())
        refuse(prog, f"bad configuration: {problems}")


def _reads(settings_class: type[BaseSettings], variable: str) -> bool:
    return any(
        isinstance(field.validation_alias, AliasChoices)
        and variable in field.validation_alias.choices
        for field in settings_class.model_fields.values()
    )


def configure_logging(level: str) -> None:
    """The log format of the facade and the receiver (Kopf formats the operator's own)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
