"""Every reason a WhatsAppChannel's conditions carry, each with when it is set.

One file, as cert-manager keeps its reasons: the operator sets them, the REST status, the
Warning events, the metrics and the tests read them from here and never retype them. A new
reason is one constant here, with its one-line comment. Reasons are stable CamelCase words:
clients and alerts match on them, so a published one is never renamed.

The conditions (types in `whatsapp_channel.model`): `SecretSynced`, `WebhookConfigured` and
`Ready`. On a failure the same reason is on `SecretSynced` and `Ready`, and a Warning event
repeats it; `WebhookConfigured` then says `SecretNotSynced`.
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

# --- failures: SecretSynced=False and Ready=False ------------------------------------------

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
# Another channel of the namespace, older (creationTimestamp, then name), has this
# spec.phoneNumberId: this one gets no Secret, so the receiver never routes to it.
PHONE_NUMBER_TAKEN = "PhoneNumberTaken"
# spec.secretRef names a Secret the operator generated (another channel's credentials).
SECRET_REF_NOT_ALLOWED = "SecretRefNotAllowed"
# The Secret spec.secretRef names does not opt in to this channel (its annotation
# whatsapp.hydracore.io/channels does not name it).
SECRET_REF_NOT_OPTED_IN = "SecretRefNotOptedIn"


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
