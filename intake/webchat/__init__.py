"""The web chat: the ``/chat/ws`` websocket, the embeddable widget and the ``webchat``
outbound channel. Protocol: docs/webchat-protocol.md."""

from intake.webchat.channel import WebchatChannel
from intake.webchat.history import History
from intake.webchat.hub import Connection, Hub, LocalHub
from intake.webchat.limits import Limits, LimitSettings, RateLimiter
from intake.webchat.origin import OriginPolicy
from intake.webchat.server import WebchatServer
from intake.webchat.sessions import Session, SessionStore

__all__ = [
    "Connection",
    "History",
    "Hub",
    "LimitSettings",
    "Limits",
    "LocalHub",
    "OriginPolicy",
    "RateLimiter",
    "Session",
    "SessionStore",
    "WebchatChannel",
    "WebchatServer",
]
