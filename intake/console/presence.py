"""Collision warnings: who else has a case page open, and who is typing a reply there.

A case page's live stream (``LiveUpdates.stream``) is the tab's presence: it says "here"
when it connects and every ``refresh_seconds`` while it stays connected, and "left" when
it ends. The page itself reports typing (``typing``/``idle``) and, when the tab closes,
"left" at once (a beacon) rather than when the server next notices the dead stream.

Every process keeps the same small table: ``(case, tab) → who, typing?, until when``.
With a shared ``Notifier`` (``core.ports``; PostgreSQL) every report goes through it, so
each process hears every tab's reports, its own included; without one (SQLite, one process) reports
apply here directly. Delivery is best effort, like every notification: a process that
starts, or misses a report while the database restarts, knows every open tab again
within one refresh.

Bounded by construction: an entry lives ``expire_seconds`` past its last report (a tab
closed without a goodbye, a laptop asleep, a dead process: gone within that), "typing"
lasts ``typing_seconds`` past the last keystroke report, and the table holds at most
``max_viewers`` tabs, ``max_per_case`` per case and ``max_per_user`` per agent; a report
beyond that is dropped (the page just shows one viewer fewer). Reports from other
processes are untrusted text: each is parsed and checked field by field
(``PresenceReport.parse``) before it touches the table.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from posventa.core.ports import Notifier
from posventa.core.tasks import Periodic

log = logging.getLogger(__name__)

TOPIC = "console_presence"
#: What a report says: the tab is open ("here": typing unchanged), a keystroke ("typing"),
#: the agent stopped typing ("idle"), the tab closed ("left").
STATES = frozenset({"here", "typing", "idle", "left"})
#: What a page may report itself; "here" comes from its stream, never from a form.
PAGE_STATES = frozenset({"typing", "idle", "left"})
#: A tab's id: made up by the page (random), bounded and plain.
TAB_ID = re.compile(r"[A-Za-z0-9_-]{8,40}")
MAX_NAME = 200
MAX_CASE = 2**63 - 1

#: A stream refreshes its tab's presence this often (and on connecting).
REFRESH_SECONDS = 15.0
#: A tab not heard from for this long is gone: three refreshes missed.
EXPIRE_SECONDS = 3 * REFRESH_SECONDS
#: "Typing" lasts this long past the last keystroke report (the page reports every few
#: seconds while keys are pressed).
TYPING_SECONDS = 8.0


@dataclass(frozen=True, slots=True)
class PresenceReport:
    case: int
    tab: str
    username: str
    name: str
    state: str

    @classmethod
    def parse(cls, payload: str) -> PresenceReport:
        """A report heard from another process; ValueError names what is wrong."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise ValueError("not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("not an object")
        case, tab, username, name, state = (data.get(k) for k in ("case", "tab", "user", "name", "state"))
        if type(case) is not int or not 1 <= case <= MAX_CASE:
            raise ValueError("case")
        if not isinstance(tab, str) or not TAB_ID.fullmatch(tab):
            raise ValueError("tab")
        if not isinstance(username, str) or not 0 < len(username) <= MAX_NAME:
            raise ValueError("user")
        if not isinstance(name, str) or len(name) > MAX_NAME:
            raise ValueError("name")
        if state not in STATES:
            raise ValueError("state")
        return cls(case, tab, username, name, state)

    def encode(self) -> str:
        return orjson.dumps({"case": self.case, "tab": self.tab, "user": self.username, "name": self.name,
                             "state": self.state}).decode()


@dataclass(frozen=True, slots=True)
class Viewer:
    """One open tab of a case, as the table holds it."""

    username: str
    name: str
    expires_at: float
    typing_until: float

    def typing(self, now: float) -> bool:
        return now < self.typing_until


@dataclass(frozen=True, slots=True)
class CaseViewer:
    """One agent on a case page (however many tabs), as a page shows it."""

    username: str
    name: str
    typing: bool


class CaseViewers:
    def __init__(self, *, notifier: Notifier | None = None, monotonic: Callable[[], float] = time.monotonic,
                 expire_seconds: float = EXPIRE_SECONDS, typing_seconds: float = TYPING_SECONDS,
                 sweep_seconds: float = 1.0, max_viewers: int = 5000, max_per_case: int = 30,
                 max_per_user: int = 30) -> None:
        self._notifier = notifier if notifier is not None and notifier.shared else None
        self._monotonic = monotonic
        self._expire = expire_seconds
        self._typing = typing_seconds
        self._max_viewers = max_viewers
        self._max_per_case = max_per_case
        self._max_per_user = max_per_user
        self._tabs: dict[tuple[int, str], Viewer] = {}
        self._per_case: dict[int, int] = {}
        self._per_user: dict[str, int] = {}
        self._listeners: list[Callable[[int], None]] = []
        self._subscribed = False
        #: Ends "typing" and forgets silent tabs (read by /metrics with the other periodic jobs).
        self.sweeper = Periodic(name="console-presence-sweep", interval=sweep_seconds, job=self._sweep_job,
                                run_at_start=False)
        self.dropped = 0
        self.refused = 0

    @property
    def size(self) -> int:
        return len(self._tabs)

    def subscribe(self, listener: Callable[[int], None]) -> None:
        """``listener(case)`` when who is on ``case``, or whether they type, changed."""
        self._listeners.append(listener)

    def report(self, report: PresenceReport) -> None:
        """This process's word about one of its tabs: to every process, this one included."""
        if self._notifier is None:
            self._apply(report)
        else:
            # The notifier calls our own subscriber too (on the loop, in publish order).
            self._notifier.publish(TOPIC, report.encode())

    def on_case(self, case: int, *, excluding: str | None = None) -> list[CaseViewer]:
        """The agents with ``case`` open, by name, ``excluding`` one username (the reader)."""
        now = self._monotonic()
        by_user: dict[str, CaseViewer] = {}
        for (tab_case, _tab), viewer in self._tabs.items():
            if tab_case != case or viewer.username == excluding or viewer.expires_at <= now:
                continue
            seen = by_user.get(viewer.username)
            by_user[viewer.username] = CaseViewer(viewer.username, viewer.name or viewer.username,
                                                  viewer.typing(now) or (seen is not None and seen.typing))
        return sorted(by_user.values(), key=lambda v: (v.name.casefold(), v.username))

    # --- the table -----------------------------------------------------------------------------

    def _on_notification(self, payload: str) -> None:
        try:
            report = PresenceReport.parse(payload)
        except ValueError as exc:
            self.refused += 1
            log.warning("console presence: a report refused (%s)", exc)
            return
        self._apply(report)

    def _apply(self, report: PresenceReport) -> None:
        now = self._monotonic()
        key = (report.case, report.tab)
        before = self._tabs.get(key)
        if report.state == "left":
            if before is not None:
                self._remove(key, before)
                self._changed(report.case)
            return
        if before is not None and before.username != report.username:
            # A tab id reused by someone else (made up by a page): theirs now.
            self._remove(key, before)
            self._changed(report.case)
            before = None
        if before is None and not self._room_for(report, now):
            self.dropped += 1
            return
        typing_until = {"typing": now + self._typing, "idle": 0.0}.get(
            report.state, before.typing_until if before is not None else 0.0)
        after = Viewer(report.username, report.name, now + self._expire, typing_until)
        if before is None:
            self._per_case[report.case] = self._per_case.get(report.case, 0) + 1
            self._per_user[report.username] = self._per_user.get(report.username, 0) + 1
        self._tabs[key] = after
        if before is None or before.name != after.name or before.typing(now) != after.typing(now):
            self._changed(report.case)

    def _room_for(self, report: PresenceReport, now: float) -> bool:
        if (len(self._tabs) >= self._max_viewers or self._per_case.get(report.case, 0) >= self._max_per_case
                or self._per_user.get(report.username, 0) >= self._max_per_user):
            self.sweep(now)  # make room from the expired before refusing
        return (len(self._tabs) < self._max_viewers and self._per_case.get(report.case, 0) < self._max_per_case
                and self._per_user.get(report.username, 0) < self._max_per_user)

    def _remove(self, key: tuple[int, str], viewer: Viewer) -> None:
        del self._tabs[key]
        for counts, name in ((self._per_case, key[0]), (self._per_user, viewer.username)):
            left = counts[name] - 1  # type: ignore[index]
            if left:
                counts[name] = left  # type: ignore[index]
            else:
                del counts[name]  # type: ignore[arg-type]

    def sweep(self, now: float | None = None) -> None:
        """Forget tabs not heard from in time; end "typing" that was not renewed."""
        now = self._monotonic() if now is None else now
        changed: set[int] = set()
        for key, viewer in list(self._tabs.items()):
            if viewer.expires_at <= now:
                self._remove(key, viewer)
                changed.add(key[0])
            elif viewer.typing_until and not viewer.typing(now):
                self._tabs[key] = replace(viewer, typing_until=0.0)
                changed.add(key[0])
        for case in changed:
            self._changed(case)

    def _changed(self, case: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(case)
            except Exception:  # one listener's bug must not stop the table
                log.exception("console presence: a listener failed")

    # --- lifecycle -------------------------------------------------------------------------

    async def _sweep_job(self) -> None:
        if self._tabs:
            self.sweep()

    async def start(self) -> None:
        if self._notifier is not None and not self._subscribed:
            self._notifier.subscribe(TOPIC, self._on_notification)
            self._subscribed = True
        await self.sweeper.start()

    async def stop(self) -> None:
        await self.sweeper.stop()


def page_report(case: int, tab: Any, state: Any, *, username: str, name: str) -> PresenceReport | None:
    """A page's own report (form fields), or None when a field is not one it may send."""
    if not isinstance(tab, str) or not TAB_ID.fullmatch(tab) or state not in PAGE_STATES:
        return None
    return PresenceReport(case, tab, username, name[:MAX_NAME], state)


def stream_report(case: Any, tab: Any, *, username: str, name: str, state: str = "here") -> PresenceReport | None:
    """A live stream's tab (``?case=&tab=``), or None when it is not a case page's."""
    if not isinstance(case, str) or not case.isdigit() or len(case) > 18 or not isinstance(tab, str) \
            or not TAB_ID.fullmatch(tab) or int(case) < 1:
        return None
    return PresenceReport(int(case), tab, username, name[:MAX_NAME], state)
