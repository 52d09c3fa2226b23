"""The three operations of the contract, each on the instance's WhatsAppChannel resource.

The resource's name is the instance id; its credentials are sealed to the operator's public
key before they leave this process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
from collections.abc import Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from whatsapp_channel.kube import JSON, Conflict, Kube, KubeError, NotFound, channels_path
from whatsapp_channel.model import (
    FINALIZER,
    REGISTRATION_PIN_FIELD,
    ChannelCreated,
    ChannelSetup,
    ChannelSpec,
    ChannelView,
    RegistrationSpec,
    SealedCredentials,
    channel_body,
    channel_view,
    rest_status,
)
from whatsapp_channel.phone_claims import Claim, claim_of, owner
from whatsapp_channel.sealing import SealError, seal, seal_key_id

from channel_api.facade.channel_watch import ChannelWaiter, ChannelWatch
from channel_api.facade.public_keys import SealingKeyCache

log = logging.getLogger(__name__)

# Concurrent POSTs for one instance race on resourceVersion; each loser reads and retries.
WRITE_ATTEMPTS = 40


class NoChannel(Exception):
    """The instance has no channel."""


class ChannelBusy(Exception):
    """The channel is being deleted, or changed concurrently faster than we could follow."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PhoneNumberTaken(Exception):
    """Another channel's claim holds the phone number id (`whatsapp_channel.phone_claims`)."""


class ChannelStoreMissing(Exception):
    """The namespace or the WhatsAppChannel CRD does not exist: a deployment mistake."""


def generate_verify_token() -> str:
    return secrets.token_urlsafe(32)


def _metadata(obj: JSON) -> dict[str, Any]:
    metadata: dict[str, Any] = obj.get("metadata") or {}
    return metadata


class Channels:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        sealing_keys: SealingKeyCache,
        watch: ChannelWatch,
        *,
        ready_wait_seconds: float,
        platform_app: bool = False,
    ) -> None:
        self._kube = kube
        self._namespace = namespace
        self._sealing_keys = sealing_keys
        self._watch = watch
        self._ready_wait = ready_wait_seconds
        self._platform_app = platform_app

    async def read(self, instance_id: str) -> ChannelView:
        try:
            obj = await self._kube.get(channels_path(self._namespace, instance_id))
        except NotFound:
            raise NoChannel from None
        return channel_view(obj)

    async def set_up(self, instance_id: str, setup: ChannelSetup) -> ChannelCreated:
        """Create or replace the channel; wait a little for the operator's verdict.

        Without a verify token in the request, an existing channel keeps its own (the caller
        entered it at Meta); only a new channel gets a generated one, returned this once.
        """
        name = instance_id
        if setup.app_secret is None and not self._platform_app:
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body", "app_secret"), "msg": "Field required"}]
            )
        keys = await self._sealing_keys.get()

        def sealed(field: str, value: str) -> str:
            return seal(keys.active, namespace=self._namespace, name=name, field=field, value=value)

        access_token, signup_code = (
            sealed(field, value.get_secret_value()) if value is not None else None
            for field, value in (
                ("accessToken", setup.access_token),
                ("signupCode", setup.signup_code),
            )
        )
        app_secret = (  # None: the operator's platform app's
            sealed("appSecret", setup.app_secret.get_secret_value())
            if setup.app_secret is not None
            else None
        )
        registration = (
            RegistrationSpec(
                pin=sealed(REGISTRATION_PIN_FIELD, setup.registration_pin.get_secret_value())
                if setup.registration_pin is not None
                else None
            )
            if setup.register_number or setup.registration_pin is not None
            else None
        )
        requested_verify = (
            sealed("verifyToken", setup.verify_token.get_secret_value())
            if setup.verify_token is not None
            else None
        )

        with self._watch.waiting(name) as waiter:
            for attempt in range(WRITE_ATTEMPTS):
                existing = await self._existing(name, waiter)
                await self._check_phone(name, setup.phone_number_id, existing)
                generated: str | None = None
                verify_token = requested_verify or _kept_verify_token(existing, keys.key_ids)
                if verify_token is None:
                    generated = generate_verify_token()
                    verify_token = sealed("verifyToken", generated)
                spec = ChannelSpec(
                    instance_id=name,
                    phone_number_id=setup.phone_number_id,
                    display_phone=setup.display_phone,
                    waba_id=setup.waba_id or _kept_waba_id(existing, setup.phone_number_id),
                    enabled=True,
                    sealed=SealedCredentials(
                        access_token=access_token,
                        signup_code=signup_code,
                        app_secret=app_secret,
                        verify_token=verify_token,
                    ),
                    registration=registration,
                )
                try:
                    written = await self._write(name, spec, existing)
                except (Conflict, NotFound):
                    await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # noqa: S311
                    continue
                break
            else:
                raise ChannelBusy("the channel changed concurrently too often; retry")
            final = await self._settle(name, waiter, written)
        view = channel_view(final)
        log.info("channel %s set up: %s", name, view.status)
        if generated is None:
            return ChannelCreated(**view.model_dump())
        return ChannelCreated(**view.model_dump(), verify_token=generated)

    async def tear_down(self, instance_id: str) -> None:
        """Delete the channel and wait a little until the operator's finalizer let it go."""
        name = instance_id
        with self._watch.waiting(name) as waiter:
            try:
                answer = await self._kube.delete(channels_path(self._namespace, name))
            except NotFound:
                raise NoChannel from None
            metadata = _metadata(answer)
            if answer.get("kind") == "Status" or not metadata.get("finalizers"):
                return  # gone already
            uid = metadata.get("uid")
            await self._until(waiter, lambda obj: obj is None or _metadata(obj).get("uid") != uid)
        log.info("channel %s torn down", name)

    async def _check_phone(self, name: str, phone: str, existing: JSON | None) -> None:
        """Refuse a phone number id another channel's claim holds (the operator's rule, in
        `whatsapp_channel.phone_claims`; it decides again, so a race here loses nothing).
        Found with a field selector on spec.phoneNumberId: the apiserver's index, no label."""
        listed = await self._kube.get(
            channels_path(self._namespace), {"fieldSelector": f"spec.phoneNumberId={phone}"}
        )
        claims = [claim_of(item) for item in listed.get("items") or []]
        others = {c[1] for c in claims if c is not None and c[0] == phone and c[1].name != name}
        # Our claim as this write makes it: its credentials are new, so not refused (yet).
        ours = existing or {"metadata": {"name": name}}
        mine = claim_of({**ours, "spec": {"phoneNumberId": phone}})
        own = dataclasses.replace(mine[1], refused=False) if mine is not None else Claim(name)
        holder = owner({*others, own})
        if holder is not None and holder.name != name:
            raise PhoneNumberTaken

    async def _existing(self, name: str, waiter: ChannelWaiter) -> JSON | None:
        try:
            obj = await self._kube.get(channels_path(self._namespace, name))
        except NotFound:
            return None
        if not _metadata(obj).get("deletionTimestamp"):
            return obj
        # A DELETE is finishing (the operator's finalizer); set up anew once it is gone.
        uid = _metadata(obj).get("uid")
        gone = await self._until(
            waiter, lambda seen: seen is None or _metadata(seen).get("uid") != uid
        )
        if gone:
            return None
        try:
            await self._kube.get(channels_path(self._namespace, name))
        except NotFound:
            return None
        raise ChannelBusy("the channel is still being torn down; retry in a few seconds")

    async def _write(self, name: str, spec: ChannelSpec, existing: JSON | None) -> JSON:
        if existing is None:
            body = channel_body(
                namespace=self._namespace, name=name, spec=spec, finalizers=(FINALIZER,)
            )
            try:
                return await self._kube.create(channels_path(self._namespace), body)
            except NotFound:
                raise ChannelStoreMissing from None
        # Replace the spec only; metadata (finalizers, labels, resourceVersion) as read.
        replacement = {k: v for k, v in existing.items() if k != "status"}
        replacement["spec"] = spec.model_dump(by_alias=True, exclude_none=True)
        return await self._kube.replace(channels_path(self._namespace, name), replacement)

    async def _settle(self, name: str, waiter: ChannelWaiter, written: JSON) -> JSON:
        """The channel once the operator reported on this generation, or as it stands when
        the wait is over."""
        if self._ready_wait <= 0 or rest_status(written) != "pending":
            return written
        uid = _metadata(written).get("uid")
        generation = int(_metadata(written).get("generation") or 0)
        latest = written

        def reported(obj: JSON | None) -> bool:
            nonlocal latest
            if obj is None or _metadata(obj).get("uid") != uid:
                return True  # deleted meanwhile: answer with what was written
            if int(_metadata(obj).get("generation") or 0) < generation:
                return False  # an event from before our write
            latest = obj
            return rest_status(obj) != "pending"

        if await self._until(waiter, reported):
            return latest
        try:  # the watch may lag or be reconnecting: ask once more
            current = await self._kube.get(channels_path(self._namespace, name))
        except KubeError:
            return latest
        return current

    async def _until(self, waiter: ChannelWaiter, done: Callable[[JSON | None], bool]) -> bool:
        """Follow the watch until `done` holds; False when the wait time ran out."""
        try:
            async with asyncio.timeout(self._ready_wait):
                while not done(await waiter.next()):
                    pass
        except TimeoutError:
            return False
        return True


def _kept_waba_id(existing: JSON | None, phone_number_id: str) -> str | None:
    """A re-post without waba_id (say, only a new access token) keeps the account of the
    same number."""
    spec = (existing or {}).get("spec") or {}
    waba_id = spec.get("wabaId")
    if spec.get("phoneNumberId") != phone_number_id or not isinstance(waba_id, str):
        return None
    return waba_id


def _kept_verify_token(existing: JSON | None, key_ids: frozenset[str]) -> str | None:
    """The existing channel's sealed verify token, if the operator can still open it."""
    if existing is None:
        return None
    sealed = ((existing.get("spec") or {}).get("sealed") or {}).get("verifyToken")
    if not isinstance(sealed, str):
        return None
    try:
        return sealed if seal_key_id(sealed) in key_ids else None
    except SealError:
        return None
