"""posventa's exception tree, split by what the caller does next.

::

    PosventaError
    ├── ConfigError                  start-up stops with one line naming the key and file
    ├── DomainError                  the request is wrong; tell the user, change nothing
    │   ├── NotFound
    │   ├── InvalidTransition        workflow refused (e.g. closed → derived)
    │   ├── StaleReply               a reply written before the case's newest message
    │   ├── Conflict                 what is stored forbids it (a calendar config defines)
    │   └── ValidationError          a field is missing or out of range
    ├── StorageUnavailable           the database did not commit; the transport says "try later"
    └── DeliveryError                raised by Channel.send
        ├── TransientDeliveryError   retry with backoff, honouring ``retry_after``
        └── PermanentDeliveryError   do not retry; the outbox item fails
"""

from __future__ import annotations

from dataclasses import dataclass


class PosventaError(Exception):
    """Base of every error posventa raises on purpose."""


class ConfigError(PosventaError):
    def __init__(self, message: str, *, key: str | None = None, file: str | None = None):
        self.key = key
        self.file = file
        where = ", ".join(p for p in (f"file {file}" if file else None, f"key {key}" if key else None) if p)
        super().__init__(f"config error ({where}): {message}" if where else f"config error: {message}")


@dataclass(frozen=True, slots=True)
class ErrorText:
    """A refusal's words (or another sentence of core's that people read: a contact's
    history, core.contacts.history) as data, so that each reader can be told in their own
    language: a stable ``code`` (what a translation, or a client, keys on), the English ``template``
    with ``%(name)s`` placeholders, and the values that fill it. ``str()`` is the English
    text (the API's message, logs, the CLI); the console translates the template through
    its catalogues (``msgctxt`` = code; scripts/i18n extracts every ``explain(...)``)."""

    code: str
    template: str
    params: tuple[tuple[str, object], ...] = ()

    def __str__(self) -> str:
        return self.template % dict(self.params) if self.params else self.template


def explain(code: str, template: str, /, **params: object) -> ErrorText:
    """``raise ValidationError(explain("contact_erased", "contact %(id)s was erased", id=n), field=...)``."""
    return ErrorText(code, template, tuple(params.items()))


class DomainError(PosventaError):
    """A request that cannot be honoured as asked. The message is safe to show a user.

    Given an ``ErrorText`` (``explain(...)``), the message is its English text and
    ``error_text`` keeps the words as data, for a reader in another language."""

    def __init__(self, message: object = "", *args: object) -> None:
        self.error_text = message if isinstance(message, ErrorText) else None
        super().__init__(str(message) if isinstance(message, ErrorText) else message, *args)

    @property
    def code(self) -> str | None:
        """The stable code of the refusal, where it has one."""
        return self.error_text.code if self.error_text is not None else None


class NotFound(DomainError):
    pass


class InvalidTransition(DomainError):
    pass


class Conflict(DomainError):
    """What is stored or configured forbids the request (deleting a calendar that config
    defines or a policy uses); the message says what to change instead."""


class StaleReply(DomainError):
    """Nothing was sent: the customer wrote, or an agent replied, after the message the
    reply's author last saw. Sending again with ``latest`` as the last one seen confirms."""

    def __init__(self, newer: tuple[int, ...], latest: int):
        self.newer = newer
        self.latest = latest
        self.field = "seen_message_id"
        super().__init__(f"{len(newer)} newer message(s) arrived since message {min(newer) - 1 if newer else latest} "
                         f"was read (ids {', '.join(map(str, newer))}); nothing was sent. To send anyway, "
                         f"send again with seen_message_id {latest}.")


class ValidationError(DomainError):
    def __init__(self, message: str | ErrorText, *, field: str | None = None):
        self.field = field
        super().__init__(message)


class StorageUnavailable(PosventaError):
    """The database could not commit. Nothing was acknowledged; the sender should retry."""


class DeliveryError(PosventaError):
    """A channel could not deliver an outbound message."""


class TransientDeliveryError(DeliveryError):
    def __init__(self, message: str, *, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class PermanentDeliveryError(DeliveryError):
    def __init__(self, message: str, *, unreachable: bool = False):
        #: True when the recipient can never be reached this way again (blocked the bot,
        #: mailbox does not exist): the identity is marked unreachable.
        self.unreachable = unreachable
        super().__init__(message)
