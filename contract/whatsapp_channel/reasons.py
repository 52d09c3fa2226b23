"""Every reason a WhatsAppChannel's conditions carry, each with when it is set.

One file, as cert-manager keeps its reasons: the operator sets them, the REST status, the
Warning events, the metrics and the tests read them from here and never retype them. A new
reason is one constant here, with its one-line comment. Reasons are stable CamelCase words:
clients and alerts match on them, so a published one is never renamed.

The conditions (types in `whatsapp_channel.model`): `SecretSynced`, `WebhookConfigured`,
`CredentialsValid`, `WebhookRegistered`, `CanSendMessage` and `Ready`. On a failure the same
reason is on `SecretSynced` and `Ready`, and a Warning event repeats it; `WebhookConfigured`
then says `SecretNotSynced`. What Meta says (issue 11) is on `CredentialsValid`,
`WebhookRegistered` and `CanSendMessage`; `Ready` carries the reason of the first of the first
two that is not True. A failure Meta did not blame on the credentials is Unknown, never False.
"""

from __future__ import annotations

from whatsapp_channel import untrusted

# --- Ready=True -------------------------------------------------------------------------

# The Secret holds the credentials and the receiver takes the channel's events.
CHANNEL_READY = "ChannelReady"
# As ready, but spec.enabled is false: the webhook refuses events.
CHANNEL_DISABLED = "ChannelDisabled"

# --- SecretSynced=True, WebhookConfigured ------------------------------------------------

# SecretSynced: the channel's Secret holds what the spec says.
SYNCED = "Synced"
# WebhookConfigured=True: the receiver takes events at the channel's webhook URL.
WEBHOOK_ENABLED = "WebhookEnabled"
# WebhookConfigured=True: spec.enabled is false, so the receiver refuses its events.
WEBHOOK_DISABLED = "WebhookDisabled"
# WebhookConfigured=False: the webhook waits for the Secret (SecretSynced says why not).
SECRET_NOT_SYNCED = "SecretNotSynced"

# --- CredentialsValid (Meta's answer to the check of token, number and app secret) --------

# CredentialsValid=True: Meta accepted the token, the app secret proof and the phone number.
CREDENTIALS_ACCEPTED = "CredentialsAccepted"
# CredentialsValid=False: Meta refused the access token (code 190, 102, 104).
TOKEN_INVALID = "TokenInvalid"
# CredentialsValid=False: the access token has expired (190/463); re-post a new one.
TOKEN_EXPIRED = "TokenExpired"
# CredentialsValid=False: the app secret does not match the token's app (100, appsecret_proof).
APP_SECRET_MISMATCH = "AppSecretMismatch"
# CredentialsValid=False: the phone number (or its business account) does not exist for
# this token (100/33).
PHONE_NUMBER_NOT_FOUND = "PhoneNumberNotFound"
# CredentialsValid=False: none of the business accounts that granted the token holds the
# phone number (each was asked for its numbers); give the right token or spec.wabaId.
ACCOUNT_NOT_FOUND = "AccountNotFound"
# CredentialsValid=False: the phone number is not one of spec.wabaId's numbers.
PHONE_NUMBER_NOT_IN_ACCOUNT = "PhoneNumberNotInAccount"
# CredentialsValid=False: the token lacks a permission the channel needs (10, 200-299, or a
# WhatsApp scope missing from debug_token's answer).
PERMISSION_DENIED = "PermissionDenied"
# CredentialsValid=False: the id given as phoneNumberId is another kind of object (say, the
# business account's id): Meta's 100 "Tried accessing nonexisting field" on that node type.
WRONG_OBJECT_TYPE = "WrongObjectType"
# CredentialsValid=False: the token has no access to the number or account (200), fixed in
# Business Settings by assigning the asset to the system user.
ASSET_ACCESS_MISSING = "AssetAccessMissing"
# CredentialsValid=False: the app lacks the capability for the call (3).
CAPABILITY_MISSING = "CapabilityMissing"
# CredentialsValid=False: Meta temporarily blocked the account for policy violations (368).
POLICY_BLOCKED = "PolicyBlocked"
# CredentialsValid=False: the business account is locked (131031).
ACCOUNT_LOCKED = "AccountLocked"
# CredentialsValid=False: Meta refused the request as invalid (100 with no other meaning).
INVALID_REQUEST = "InvalidRequest"
# Warning event: the access token expires within days (debug_token's expires_at); post a
# new one before it does.
TOKEN_EXPIRES_SOON = "TokenExpiresSoon"
# Unknown (any Meta condition; Ready too until a first answer): Meta could not be reached or
# failed (codes 1, 2, HTTP 5xx, timeouts); checked again with backoff.
META_UNAVAILABLE = "MetaUnavailable"
# Unknown: Meta's rate limit (4, 80007) or the operator's own per-account call budget.
RATE_LIMITED = "RateLimited"
# Unknown: not asked yet (the Secret is not written, the channel is disabled, or the
# credentials were refused first).
NOT_CHECKED = "NotChecked"

# --- WebhookRegistered (where Meta delivers the number's events) ----------------------------

# WebhookRegistered=True (managed): Meta's read-back or answer shows our URL as the number's
# override.
OVERRIDE_REGISTERED = "OverrideRegistered"
# WebhookRegistered=True (manual): Meta called the channel's challenge (status.lastChallengeAt,
# which the receiver writes for manual webhooks only: a managed one's challenge comes during the
# operator's own override call and is confirmed by the read-back).
CHALLENGE_ANSWERED = "ChallengeAnswered"
# WebhookRegistered=Unknown (manual): waiting for Meta's challenge, i.e. for the webhook to be
# entered in the Meta app.
AWAITING_CHALLENGE = "AwaitingChallenge"
# WebhookRegistered=False: Meta's challenge against our URL failed (2200); retried with backoff.
CALLBACK_VERIFICATION_FAILED = "CallbackVerificationFailed"
# WebhookRegistered=False: the app is not subscribed to the business account and could not be
# (no waba_id known, or the subscribe call was refused).
APP_NOT_SUBSCRIBED = "AppNotSubscribed"
# WebhookRegistered=False: Meta refused the phone-level override (100 on the override call).
OVERRIDE_REFUSED = "OverrideRefused"
# Warning event (and WebhookRegistered=Unknown until re-applied): the read-back showed another
# URL than ours; the operator re-applies the override.
WEBHOOK_DRIFT = "WebhookDrift"

# --- CanSendMessage (Meta's health_status.can_send_message) --------------------------------

# CanSendMessage=True: AVAILABLE.
MESSAGING_AVAILABLE = "Available"
# CanSendMessage=True: LIMITED (the message names Meta's additional info).
MESSAGING_LIMITED = "Limited"
# CanSendMessage=False: BLOCKED (the message carries Meta's error codes).
MESSAGING_BLOCKED = "Blocked"
# CanSendMessage=False (and Ready=False), from the number's `status` (issue 19): PENDING, the
# number is not registered for the Cloud API yet.
NUMBER_NOT_REGISTERED = "NumberNotRegistered"
# CanSendMessage=Unknown (and Ready=Unknown: REST `pending`): the number is PENDING and the
# channel asks the operator to register it (spec.registration).
NUMBER_REGISTERING = "NumberRegistering"
# CanSendMessage=False: BANNED, "banned from sending or receiving any messages".
NUMBER_BANNED = "NumberBanned"
# CanSendMessage=False: RESTRICTED, the number reached its messaging limit (replies only).
NUMBER_RESTRICTED = "NumberRestricted"
# CanSendMessage=False: DISCONNECTED, the number is not connected to WhatsApp.
NUMBER_DISCONNECTED = "NumberDisconnected"
# CanSendMessage=False: FLAGGED, the quality rating fell to low (Meta's warned state).
NUMBER_FLAGGED = "NumberFlagged"

# --- failures: SecretSynced=False and Ready=False ------------------------------------------

# Registering the number (POST /{id}/register) was refused: the PIN is not the one the
# number's two-step verification holds (133005).
REGISTRATION_PIN_MISMATCH = "RegistrationPinMismatch"
# Registering the number was refused: too many registrations or deregistrations of it
# (133016, 10 in 72 hours); asked again on the slow refusal period, never looped.
REGISTRATION_LIMITED = "RegistrationLimited"

# The spec does not fit the contract, or gives no credentials.
INVALID_SPEC = "InvalidSpec"
# spec.secretRef names a Secret that does not exist in the channel's namespace.
SECRET_REF_NOT_FOUND = "SecretRefNotFound"
# The Secret spec.secretRef names lacks a key, or holds a value that is not UTF-8 text.
SECRET_REF_INCOMPLETE = "SecretRefIncomplete"
# A Secret of the generated name exists and belongs to someone else.
SECRET_NAME_TAKEN = "SecretNameTaken"
# The apiserver refused or failed a write the channel needs; retried.
APISERVER_ERROR = "ApiserverError"
# A sealed field is not a seal made by whatsapp-seal.
MALFORMED_SEAL = "MalformedSeal"
# A field was sealed with a key the operator does not have (not even after re-reading).
UNKNOWN_SEALING_KEY = "UnknownSealingKey"
# A sealed field does not open with the key it names.
SEAL_DOES_NOT_OPEN = "SealDoesNotOpen"
# A seal made for another namespace, channel or field.
SEAL_SCOPE_MISMATCH = "SealScopeMismatch"
# Another channel's claim holds this spec.phoneNumberId (`whatsapp_channel.phone_claims`):
# this one gets no Secret, so the receiver never routes to it.
PHONE_NUMBER_TAKEN = "PhoneNumberTaken"
# spec.secretRef names a Secret the operator generated (another channel's credentials).
SECRET_REF_NOT_ALLOWED = "SecretRefNotAllowed"
# The Secret spec.secretRef names does not opt in to this channel (its annotation
# whatsapp.hydracore.io/channels does not name it).
SECRET_REF_NOT_OPTED_IN = "SecretRefNotOptedIn"
# spec.sealed.signupCode was refused by Meta (already used, expired, or another app's):
# settled, never retried; POST a new code.
SIGNUP_CODE_INVALID = "SignupCodeInvalid"
# spec.sealed.signupCode is not exchanged yet (only a channel's reconcile exchanges it).
SIGNUP_PENDING = "SignupPending"
# spec.sealed has no appSecret and the operator holds no platform app to take it from.
PLATFORM_APP_MISSING = "PlatformAppMissing"


class ReasonedFailure(Exception):
    """A failure a condition reports: `reason` is one of this module's constants; `message`
    is for people and never contains a credential. The message is escaped and capped
    (`whatsapp_channel.untrusted`): whatever a resource put in it, it is safe to write into a
    condition, an Event or a log."""

    def __init__(self, reason: str, message: str) -> None:
        message = untrusted.shown(message, untrusted.MESSAGE_LIMIT)
        super().__init__(message)
        self.reason = reason
        self.message = message
