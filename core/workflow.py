"""The case workflow from the seeds: Análisis preliminar → derivar a sectores → Enviar
respuesta → Finalizado. Pure: it only says which moves are allowed."""

from __future__ import annotations

from collections.abc import Mapping

from core.domain import Activity
from core.errors import InvalidTransition

A = Activity
ALLOWED: Mapping[Activity, frozenset[Activity]] = {
    A.PRELIMINARY_ANALYSIS: frozenset({A.DERIVED, A.ANSWER_SENT, A.CLOSED}),
    # Deriving again moves the case to another sector.
    A.DERIVED: frozenset({A.DERIVED, A.PRELIMINARY_ANALYSIS, A.ANSWER_SENT, A.CLOSED}),
    # The customer may come back after an answer: analyse or derive again.
    A.ANSWER_SENT: frozenset({A.PRELIMINARY_ANALYSIS, A.DERIVED, A.CLOSED}),
    A.CLOSED: frozenset(),
}


def check_transition(current: Activity | str, target: Activity | str, *, sector: str | None = None) -> None:
    current, target = Activity(current), Activity(target)
    if target not in ALLOWED[current]:
        if current == A.CLOSED:
            raise InvalidTransition(f"the case is closed; it cannot move to {target.value}")
        raise InvalidTransition(f"a case in {current.value} cannot move to {target.value}")
    if target == A.DERIVED and not (sector and sector.strip()):
        raise InvalidTransition("deriving a case needs a sector")
