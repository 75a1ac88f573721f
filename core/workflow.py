"""The case workflow from the seeds: Análisis preliminar → derivar a sectores → Enviar
respuesta → Finalizado. Pure: it only says which moves are allowed.

It is the one place that decides a move, whoever asks for it (the API, the console, the
Telegram desk, the customer's own "yes, that solved it"): every caller passes the case's
type, so the seeds' mandatory Tipo is checked here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping

from posventa.core.domain import Activity, CaseType
from posventa.core.errors import InvalidTransition, explain

A = Activity
ALLOWED: Mapping[Activity, frozenset[Activity]] = {
    A.PRELIMINARY_ANALYSIS: frozenset({A.DERIVED, A.ANSWER_SENT, A.CLOSED}),
    # Deriving again moves the case to another sector.
    A.DERIVED: frozenset({A.DERIVED, A.PRELIMINARY_ANALYSIS, A.ANSWER_SENT, A.CLOSED}),
    # The customer may come back after an answer: analyse or derive again.
    A.ANSWER_SENT: frozenset({A.PRELIMINARY_ANALYSIS, A.DERIVED, A.CLOSED}),
    A.CLOSED: frozenset(),
}
#: In the seeds the type (request / complaint / incident) is mandatory: a case may be
#: analysed and derived while the customer has not said, but not answered or closed.
NEEDS_TYPE: frozenset[Activity] = frozenset({A.ANSWER_SENT, A.CLOSED})
#: The types a case may end with, in the order the customer is asked (email numbers them).
CLASSIFIED_TYPES: tuple[CaseType, ...] = (CaseType.REQUEST, CaseType.COMPLAINT, CaseType.INCIDENT)


class MissingCaseType(InvalidTransition):
    """The move needs the case's type first. Adapters word it for their own users."""

    field = "type"

    def __init__(self, target: Activity) -> None:
        self.target = target
        allowed = ", ".join(t.value for t in CLASSIFIED_TYPES)
        super().__init__(f"the case has no type: set type to one of {allowed} before moving it to {target.value}")


def check_transition(current: Activity | str, target: Activity | str, *, case_type: CaseType | str,
                     sector: str | None = None) -> None:
    current, target = Activity(current), Activity(target)
    if target not in ALLOWED[current]:
        if current == A.CLOSED:
            raise InvalidTransition(explain("case_closed", "the case is closed; it cannot move to %(target)s",
                                            target=target.value))
        raise InvalidTransition(explain("transition_refused", "a case in %(current)s cannot move to %(target)s",
                                        current=current.value, target=target.value))
    if target == A.DERIVED and not (sector and sector.strip()):
        raise InvalidTransition(explain("derive_needs_sector", "deriving a case needs a sector"))
    if target in NEEDS_TYPE and CaseType(case_type) == CaseType.UNCLASSIFIED:
        raise MissingCaseType(target)
