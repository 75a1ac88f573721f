"""The web chat: the ``/chat/ws`` websocket, the embeddable widget and the ``webchat``
outbound channel. Protocol: docs/webchat-protocol.md.

It reaches core through ports only: visitors' sessions through ``core.chat_sessions``,
their conversation through ``core.chat_history``, files through ``core.message_files``,
which channel an undelivered reply falls back to through ``core.reply_fallback``."""

from posventa.intake.webchat.channel import WebchatChannel
from posventa.intake.webchat.history import History
from posventa.intake.webchat.hub import Connection, Hub, LocalHub
from posventa.intake.webchat.limits import Limits, LimitSettings
from posventa.intake.webchat.origin import OriginPolicy
from posventa.intake.webchat.server import WebchatServer
from posventa.intake.webchat.sessions import Session, SessionStore

__all__ = [
    "Connection",
    "History",
    "Hub",
    "LimitSettings",
    "Limits",
    "LocalHub",
    "OriginPolicy",
    "Session",
    "SessionStore",
    "WebchatChannel",
    "WebchatServer",
]
