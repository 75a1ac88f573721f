"""Telling the customer that their case was answered or closed.

When an agent moves a case to "answer sent" or "closed", the customer gets a notice on
the channel they last wrote from, in the case's language, through the outbox (so it is
sent once, after commit, with retries). Each event is switched on or off in config
(``[cases] notify_answer_sent`` / ``notify_closed``, closing on by default) and its text
can be replaced per language. Every notice says how to reopen: answer within
``[cases] reopen_days`` (the rule is ``core.case_threading``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from posventa.core.case_threading import DEFAULT_REOPEN_DAYS
from posventa.core.domain import Activity

#: The built-in texts: (event, language) → template with {number}, {title}, {days}.
BUILT_IN: Mapping[tuple[Activity, str], str] = {
    (Activity.ANSWER_SENT, "es"): ("Respondimos tu caso #{number} ({title}). Si todavía necesitas ayuda, responde a "
                                  "este mensaje dentro de {days} días y seguimos en el mismo caso."),
    (Activity.ANSWER_SENT, "pt"): ("Respondemos o seu caso #{number} ({title}). Se ainda precisar de ajuda, responda "
                                  "a esta mensagem em até {days} dias e continuamos no mesmo caso."),
    (Activity.ANSWER_SENT, "en"): ("We answered your case #{number} ({title}). If you still need help, reply to this "
                                  "message within {days} days and we'll carry on in the same case."),
    (Activity.CLOSED, "es"): ("Cerramos tu caso #{number} ({title}). Si el problema sigue, responde a este mensaje "
                             "dentro de {days} días y lo reabrimos."),
    (Activity.CLOSED, "pt"): ("Encerramos o seu caso #{number} ({title}). Se o problema continuar, responda a esta "
                             "mensagem em até {days} dias e nós o reabriremos."),
    (Activity.CLOSED, "en"): ("We closed your case #{number} ({title}). If the problem persists, reply to this "
                             "message within {days} days and we'll reopen it."),
}


@dataclass(frozen=True)
class CustomerNotices:
    """Which activity changes the customer is told about, and in what words."""

    events: frozenset[Activity] = frozenset({Activity.CLOSED})
    #: Replacements of the built-in texts, by (event, language); checked at start-up.
    custom: Mapping[tuple[Activity, str], str] = field(default_factory=dict)
    reopen_days: int = DEFAULT_REOPEN_DAYS

    @classmethod
    def from_settings(cls, *, notify_answer_sent: bool, notify_closed: bool, reopen_days: int,
                      texts: Mapping[tuple[str, str], str]) -> CustomerNotices:
        """``texts``: (event name, language) → text, "" for the built-in one."""
        events = {a for a, on in ((Activity.ANSWER_SENT, notify_answer_sent), (Activity.CLOSED, notify_closed)) if on}
        custom = {(Activity(event), language): text for (event, language), text in texts.items() if text}
        return cls(events=frozenset(events), custom=custom, reopen_days=reopen_days)

    def text_for(self, activity: Activity, *, language: str, number: int, title: str) -> str | None:
        """The notice for a move to ``activity``, or None when nobody is told about it."""
        if activity not in self.events:
            return None
        template = self.custom.get((activity, language)) or BUILT_IN.get((activity, language)) \
            or BUILT_IN[(activity, "es")]
        return template.format(number=number, title=title[:120], days=self.reopen_days)
