"""The platform's own Meta app (issue 20): app id, app secret and, optionally, the Embedded
Signup configuration id, read once at start from a directory holding one file per key (the
layout of a Kubernetes Secret mounted as a volume: the chart mounts
`operator.platformApp.existingSecret`; `whatsapp-dev` writes one for the stand-in's app).

A mounted file rather than a Secret read through the API: the operator needs no RBAC on its
own namespace's Secrets for it, and the kubelet keeps the file current. With the app, a
channel may leave out its app secret (the platform app's is used); without it nothing
changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from whatsapp_channel.model import TOKEN_PATTERN

APP_ID_KEY = "app_id"
APP_SECRET_KEY = "app_secret"
CONFIG_ID_KEY = "config_id"

_ID = re.compile(r"^[0-9]{1,32}$")
_SECRET = re.compile(TOKEN_PATTERN)


class PlatformAppError(ValueError):
    """The platform app's directory cannot be used; the message names the key, never a value."""


@dataclass(frozen=True, repr=False)
class PlatformApp:
    app_id: str
    app_secret: str
    config_id: str | None = None

    def __repr__(self) -> str:
        return f"PlatformApp(app_id={self.app_id!r}, <secret redacted>)"


def _read(directory: Path, key: str) -> str | None:
    path = directory / key
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def load(directory: Path) -> PlatformApp:
    """The app held in `directory` (keys app_id, app_secret, optional config_id)."""
    if not directory.is_dir():
        raise PlatformAppError(f"the platform app directory {directory} does not exist")
    app_id = _read(directory, APP_ID_KEY)
    app_secret = _read(directory, APP_SECRET_KEY)
    config_id = _read(directory, CONFIG_ID_KEY)
    if app_id is None or not _ID.match(app_id):
        raise PlatformAppError(f"{directory}/{APP_ID_KEY} must hold a numeric Meta app id")
    if app_secret is None or not _SECRET.match(app_secret):
        raise PlatformAppError(f"{directory}/{APP_SECRET_KEY} must hold the app secret")
    if config_id is not None and not _ID.match(config_id):
        raise PlatformAppError(f"{directory}/{CONFIG_ID_KEY} must be a numeric configuration id")
    return PlatformApp(app_id=app_id, app_secret=app_secret, config_id=config_id)


def write(directory: Path, app: PlatformApp) -> None:
    """The directory `load` reads (whatsapp-dev's, for the stand-in's app); files 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    values = {APP_ID_KEY: app.app_id, APP_SECRET_KEY: app.app_secret}
    if app.config_id is not None:
        values[CONFIG_ID_KEY] = app.config_id
    for key, value in values.items():
        path = directory / key
        path.touch(mode=0o600)
        path.write_text(value + "\n", encoding="utf-8")
