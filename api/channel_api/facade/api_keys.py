"""API keys: who may call the facade, and for which instances.

The keys file (`WA_FACADE_API_KEYS_FILE`, mounted from a Secret) has one key per line:

    # name      key                                         instance ids (optional)
    platform    4c1d0f9e7a3b...at least 32 printable chars
    tenant-a    9a8b7c6d5e4f...                             497f6eca-6276-4993-bfeb-53cbbbba6f08

Fields are separated by spaces. `name` ([A-Za-z0-9._-], up to 64) only labels the key in
logs. A key without instance ids may manage every instance; with ids, only those (any
other instance is refused with 403 before the cluster is asked, so such a key cannot learn
whether another instance has a channel). Blank lines and lines starting with `#` are
ignored. The file is re-read when it changes; a new version with a refused line applies
its removals anyway (only keys it still lists unchanged stay), never adds a key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 32
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_KEY = re.compile(r"^[\x21-\x7e]+$")
RECHECK_SECONDS = 5.0


class ApiKeysError(ValueError):
    """The keys file is unusable; the message names the line, never a key."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes
    # None: every instance; otherwise the canonical instance ids this key may manage.
    instances: frozenset[str] | None

    def may_manage(self, instance_id: str) -> bool:
        return self.instances is None or instance_id in self.instances


def _digest(key: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the key length.
    return hashlib.sha256(key.encode()).digest()


def read_api_keys(text: str) -> tuple[tuple[ApiKey, ...], tuple[ApiKeysError, ...]]:
    """The keys of every line the format accepts, and each refused line's complaint."""
    keys: list[ApiKey] = []
    refused: list[ApiKeysError] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            key = _parse_line(number, line)
            if key is not None and (key.name in names or key.digest in digests):
                raise ApiKeysError(f"line {number} ({key.name}): duplicate name or key")
        except ApiKeysError as exc:
            refused.append(exc)
            continue
        if key is not None:
            names.add(key.name)
            digests.add(key.digest)
            keys.append(key)
    return tuple(keys), tuple(refused)


def _parse_line(number: int, line: str) -> ApiKey | None:
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    if len(fields) < 2:
        raise ApiKeysError(f"line {number}: expected `<name> <key> [<instance id> ...]`")
    name, key, *ids = fields
    if not _NAME.fullmatch(name):
        raise ApiKeysError(f"line {number}: the name must match {_NAME.pattern}")
    if len(key) < MIN_KEY_LENGTH or not _KEY.fullmatch(key):
        raise ApiKeysError(
            f"line {number} ({name}): a key is at least {MIN_KEY_LENGTH} printable characters"
        )
    instances: set[str] = set()
    for value in ids:
        try:
            instances.add(str(uuid.UUID(value)))
        except ValueError:
            raise ApiKeysError(
                f"line {number} ({name}): {value!r} is not an instance id (a UUID)"
            ) from None
    return ApiKey(name, _digest(key), frozenset(instances) if instances else None)


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """The keys of a file every line of which is right; ApiKeysError otherwise."""
    keys, refused = read_api_keys(text)
    if refused:
        raise refused[0]
    if not keys:
        raise ApiKeysError("no API keys: the facade would refuse every request")
    return keys


class ApiKeyFile:
    """The keys of a file, re-read when its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._file_stamp()
        self._keys = parse_api_keys(path.read_text())
        self._checked_at = time.monotonic()

    def _file_stamp(self) -> tuple[int, int, int]:
        stat = os.stat(self.path)  # follows the Secret volume's ..data symlink
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < RECHECK_SECONDS:
            return
        self._checked_at = now
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            keys, refused = read_api_keys(self.path.read_text())
        except OSError as exc:
            log.error("API keys file %s unreadable, keeping the previous keys: %s", self.path, exc)
            return
        self._stamp = stamp
        if not refused and keys:
            self._keys = keys
            log.info("API keys reloaded from %s (%d keys)", self.path, len(self._keys))
            return
        # Fail closed: a removal is applied even when another line is refused; a key stays
        # only if the new file still lists it unchanged (name, key and instances).
        listed = set(keys)
        self._keys = tuple(k for k in self._keys if k in listed)
        complaint = refused[0] if refused else "no API keys"
        log.error(
            "API keys file %s has a refused line (%s); kept only the %d previous keys it "
            "still lists unchanged",
            self.path,
            complaint,
            len(self._keys),
        )

    def identify(self, presented: str) -> ApiKey | None:
        """The key `presented` is, compared in constant time against every key."""
        self._refresh()
        digest = _digest(presented)
        found: ApiKey | None = None
        for key in self._keys:
            # No early exit: every key is compared whatever matches.
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found
