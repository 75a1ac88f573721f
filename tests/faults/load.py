"""Customers who keep writing while the service is being hurt, and who behave like real
senders when it does not answer: whatever was never acknowledged is sent again, with the
same identity, until it is.

- Email: an SMTP client (aiosmtplib). No ``250`` → the same message, same Message-ID,
  later (a real MTA keeps a queue and does exactly this on 4xx or a dropped connection).
- Web chat: a websocket client speaking docs/webchat-protocol.md. No ``ack`` → the same client id on
  the next connection, to whichever process answers (the widget's outbox).
- Telegram: customers write to the fake Bot API; Telegram itself keeps every update the bot
  has not confirmed and hands it out again.

Each client keeps a ledger of what was acknowledged; the checks compare it with the database.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr

import aiohttp
import aiosmtplib

from tests.faults.harness import SUPPORT_ADDRESS, RestartableTelegram

LANGS = ("es", "pt", "en")
TEXTS = {
    "es": ["La impresora no enciende desde ayer", "No me llegó la factura de marzo",
           "El sistema muestra error 42 al facturar", "¿Cómo cambio la contraseña del usuario?"],
    "pt": ["A impressora não liga desde ontem", "Não recebi a nota fiscal de março",
           "O sistema mostra erro 42 ao faturar", "Como troco a senha do usuário?"],
    "en": ["The printer does not turn on since yesterday", "I did not get the March invoice",
           "The system shows error 42 when invoicing", "How do I change the user's password?"],
}


@dataclass
class Outcomes:
    """What the senders met, by kind (``250``, ``451``, ``refused``, ``ack``, ``closed:1013``...)."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, what: str) -> None:
        self.counts[what] += 1

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def _text(rng: random.Random, lang: str, n: int) -> str:
    return f"{rng.choice(TEXTS[lang])} (ref {n})"


class EmailCustomers:
    """SMTP senders. ``ports()`` names the SMTP ports of the processes that may be up."""

    def __init__(self, *, tag: str, rng: random.Random, ports: Callable[[], Sequence[int]], workers: int = 3,
                 pause: float = 0.05, customers: int = 40) -> None:
        self.tag = tag
        self._rng = rng
        self._ports = ports
        self._workers = workers
        self._pause = pause
        self._customers = customers
        self._retry: collections.deque[EmailMessage] = collections.deque()
        self._in_flight = 0
        self._made = 0
        self.sent: dict[str, EmailMessage] = {}      # Message-ID → message (every one ever written)
        self.acked: dict[str, int] = {}              # Message-ID → attempts it took
        self._attempts: collections.Counter[str] = collections.Counter()
        self.outcomes = Outcomes()
        self.replies: list[tuple[str, int | str]] = []  # (Message-ID, reply code or error kind)

    def new_message(self) -> EmailMessage:
        n = self._made
        self._made += 1
        lang = LANGS[n % 3]
        who = n % self._customers
        msg = EmailMessage()
        msg["From"] = formataddr((f"Cliente {who}", f"cliente{who}.{self.tag}@clientes.example.net"))
        msg["To"] = SUPPORT_ADDRESS
        msg["Subject"] = f"Consulta {n} ({self.tag})"
        msg["Message-ID"] = f"<{self.tag}.{n}@clientes.example.net>"
        msg.set_content(_text(self._rng, lang, n))
        self.sent[msg["Message-ID"]] = msg
        return msg

    @property
    def unacknowledged(self) -> list[str]:
        return [m for m in self.sent if m not in self.acked]

    async def send_once(self, msg: EmailMessage, port: int) -> int | str:
        """One delivery attempt; returns the reply code, or what went wrong."""
        mid = msg["Message-ID"]
        self._attempts[mid] += 1
        try:
            await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, timeout=8,
                                  sender=msg["From"].addresses[0].addr_spec, recipients=[SUPPORT_ADDRESS])
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return exc.recipients[0].code if exc.recipients else "refused"
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return type(exc).__name__
        return 250

    async def probe(self, port: int) -> int | str:
        """Write one new message, one attempt; if it was not accepted the senders' queue
        resends it like any other."""
        msg = self.new_message()
        code = await self.send_once(msg, port)
        self.replies.append((msg["Message-ID"], code))
        self.outcomes.add(str(code))
        if code == 250:
            self.acked[msg["Message-ID"]] = 1
        else:
            self._retry.append(msg)
        return code

    async def _worker(self, stop_new: asyncio.Event) -> None:
        while True:
            if self._retry:
                msg = self._retry.popleft()
            elif not stop_new.is_set():
                msg = self.new_message()
            elif self._in_flight:
                await asyncio.sleep(0.05)  # a batch-mate's attempt may still fail and need a resend
                continue
            else:
                return
            ports = list(self._ports())
            if not ports:
                self._retry.append(msg)
                await asyncio.sleep(0.2)
                continue
            self._in_flight += 1
            try:
                code = await self.send_once(msg, self._rng.choice(ports))
            finally:
                self._in_flight -= 1
            mid = msg["Message-ID"]
            self.replies.append((mid, code))
            self.outcomes.add(str(code))
            if code == 250:
                self.acked[mid] = self._attempts[mid]
                await asyncio.sleep(self._pause)
            elif isinstance(code, int) and code >= 500:
                raise AssertionError(f"{mid} refused for good with {code}: the fault must only delay it")
            else:
                self._retry.append(msg)
                await asyncio.sleep(0.1 + self._rng.random() * 0.2)

    async def run(self, stop_new: asyncio.Event) -> None:
        """Write until ``stop_new``, then keep resending until everything has its 250."""
        await asyncio.gather(*(self._worker(stop_new) for _ in range(self._workers)))


class WebchatVisitor:
    """One visitor with one session, writing message after message, each resent until acked."""

    def __init__(self, *, tag: str, index: int, rng: random.Random, bases: Callable[[], Sequence[str]],
                 outcomes: Outcomes, pause: float = 0.15) -> None:
        self.tag = tag
        self.index = index
        self._rng = rng
        self._bases = bases
        self._pause = pause
        self.outcomes = outcomes
        self.lang = LANGS[index % 3]
        self.session: str | None = None
        self.pending: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.acked: dict[str, int] = {}   # client id → message_id in the ack
        self.cases: set[int] = set()
        self._made = 0

    def _new(self) -> None:
        cid = f"{self.tag}-v{self.index}-m{self._made}"
        self.pending[cid] = _text(self._rng, self.lang, self._made)
        self._made += 1

    @property
    def written(self) -> list[str]:
        return [*self.acked, *self.pending]

    async def run(self, http: aiohttp.ClientSession, stop_new: asyncio.Event) -> None:
        while True:
            if not self.pending and stop_new.is_set():
                return
            bases = list(self._bases())
            if not bases:
                await asyncio.sleep(0.2)
                continue
            try:
                await self._connection(http, self._rng.choice(bases), stop_new)
            except (aiohttp.ClientError, ConnectionError, TimeoutError, OSError) as exc:
                self.outcomes.add(f"webchat:{type(exc).__name__}")
            await asyncio.sleep(0.1 + self._rng.random() * 0.3)

    async def _connection(self, http: aiohttp.ClientSession, base: str, stop_new: asyncio.Event) -> None:
        async with http.ws_connect(f"{base}/chat/ws", timeout=aiohttp.ClientWSTimeout(ws_close=2),
                                   heartbeat=None) as ws:
            await ws.send_str(json.dumps({"type": "hello", "session": self.session, "last_seen": None,
                                          "lang": self.lang}))
            welcome = await self._next(ws, lambda f: f["type"] in ("welcome", "error"))
            if welcome["type"] != "welcome":
                self.outcomes.add(f"webchat:hello-{welcome.get('code')}")
                if welcome.get("code") == "unauthorized":
                    raise AssertionError(f"visitor {self.index} lost its session {self.session!r}")
                return
            self.session = welcome["session"]
            while True:
                if not self.pending:
                    if stop_new.is_set():
                        return
                    self._new()
                cid, text = next(iter(self.pending.items()))
                await ws.send_str(json.dumps({"type": "message", "id": cid, "text": text}))
                answer = await self._next(ws, lambda f: f["type"] in ("ack", "error") and f.get("id") in (cid, None))
                if answer["type"] == "error":
                    self.outcomes.add(f"webchat:error-{answer.get('code')}")
                    await asyncio.sleep(float(answer.get("retry_after") or 0.5))
                    continue
                self.pending.pop(cid)
                self.acked[cid] = int(answer["message_id"])
                if answer.get("case"):
                    self.cases.add(int(answer["case"]))
                self.outcomes.add("webchat:ack")
                await asyncio.sleep(self._pause * (0.5 + self._rng.random()))

    async def _next(self, ws: aiohttp.ClientWebSocketResponse, predicate, timeout: float = 10.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    self.outcomes.add(f"webchat:closed-{ws.close_code}")
                    raise ConnectionError(f"socket ended ({msg.type.name}, {ws.close_code})")
                frame = json.loads(msg.data)
                if predicate(frame):
                    return frame


class WebchatVisitors:
    def __init__(self, *, tag: str, rng: random.Random, bases: Callable[[], Sequence[str]], count: int = 4,
                 pause: float = 0.15) -> None:
        self.outcomes = Outcomes()
        self.visitors = [WebchatVisitor(tag=tag, index=i, rng=random.Random(rng.random()), bases=bases,
                                        outcomes=self.outcomes, pause=pause) for i in range(count)]

    @property
    def acked(self) -> dict[str, int]:
        return {cid: mid for v in self.visitors for cid, mid in v.acked.items()}

    @property
    def written(self) -> list[str]:
        return [cid for v in self.visitors for cid in v.written]

    @property
    def unacknowledged(self) -> list[str]:
        return [cid for v in self.visitors for cid in v.pending]

    async def run(self, stop_new: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(v.run(http, stop_new) for v in self.visitors))


class TelegramCustomers:
    """Customers writing to the bot. They never resend: Telegram keeps unconfirmed updates."""

    def __init__(self, *, tag: str, rng: random.Random, telegram: RestartableTelegram, users: int = 5,
                 first_user: int = 700_000, pause: float = 0.25) -> None:
        self.tag = tag
        self._rng = rng
        self.telegram = telegram
        self.users = [first_user + i for i in range(users)]
        self._pause = pause
        self.updates: list[dict] = []

    def write(self) -> dict:
        n = len(self.updates)
        user = self.users[n % len(self.users)]
        lang = LANGS[user % 3]
        update = self.telegram.private_text(user, _text(self._rng, lang, n), language_code=lang,
                                       first_name=f"Cliente{user}")
        self.updates.append(update)
        return update

    @property
    def external_ids(self) -> set[str]:
        return {f"{u['message']['chat']['id']}:{u['message']['message_id']}" for u in self.updates}

    @property
    def last_update_id(self) -> int:
        return max((u["update_id"] for u in self.updates), default=0)

    @property
    def unconfirmed(self) -> int:
        return sum(1 for u in self.updates if u["update_id"] >= self.telegram.confirmed_offset)

    async def run(self, stop_new: asyncio.Event) -> None:
        """Write until ``stop_new``, then wait until the bot confirmed every update."""
        while not stop_new.is_set():
            self.write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_new.wait(), self._pause * (0.5 + self._rng.random()))
        await self.wait_confirmed()

    async def wait_confirmed(self) -> None:
        while self.unconfirmed:
            await asyncio.sleep(0.1)
