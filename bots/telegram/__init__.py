"""Telegram: the customer bot and the agents' desk (python-telegram-bot v22, async).

Inbound, updates arrive by our own at-least-once poll loop (``Poller``) or by webhook
(``WebhookEndpoint``) and are routed by chat (``UpdateRouter``) to the customer side
(``CustomerSide``: private chats → ``InboundMessage``) or the desk (``DeskSide``: agents'
replies and commands → ``CaseService``). Outbound, the outbox drives ``TelegramChannel``
(customers) and ``DeskChannel`` (one forum topic per case). ``TelegramBot`` assembles it
all from ``[telegram]`` and is what the service starts and stops.
"""

import os

# PTB 22 warns whenever a duration is read in its deprecated int form (RetryAfter builds
# its own message that way, inside the library, on every 429). Opting in to the timedelta
# form is process-wide and harmless for us: client.retry_after_seconds reads either form.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from posventa.bots.telegram.bot import TelegramBot  # noqa: E402
from posventa.bots.telegram.channel import BotLink, DeskChannel, FloodGate, TelegramChannel  # noqa: E402
from posventa.bots.telegram.customer import CustomerSide  # noqa: E402
from posventa.bots.telegram.desk import DeskSide  # noqa: E402
from posventa.bots.telegram.poller import Poller  # noqa: E402
from posventa.bots.telegram.router import UpdateRouter  # noqa: E402
from posventa.bots.telegram.webhook import WEBHOOK_PATH, WebhookEndpoint  # noqa: E402

__all__ = [
    "WEBHOOK_PATH",
    "BotLink",
    "CustomerSide",
    "DeskChannel",
    "DeskSide",
    "FloodGate",
    "Poller",
    "TelegramBot",
    "TelegramChannel",
    "UpdateRouter",
    "WebhookEndpoint",
]
