import pytest

from core.domain import Activity
from core.errors import InvalidTransition
from core.workflow import check_transition

A = Activity


@pytest.mark.parametrize("a,b", [(A.PRELIMINARY_ANALYSIS, A.ANSWER_SENT), (A.ANSWER_SENT, A.CLOSED),
                                 (A.DERIVED, A.DERIVED), (A.ANSWER_SENT, A.PRELIMINARY_ANALYSIS)])
def test_allowed(a, b):
    check_transition(a, b, sector="Ventas")


@pytest.mark.parametrize("a,b,msg", [(A.CLOSED, A.DERIVED, "closed"), (A.CLOSED, A.CLOSED, "closed"),
                                     (A.PRELIMINARY_ANALYSIS, A.PRELIMINARY_ANALYSIS, "cannot move")])
def test_refused(a, b, msg):
    with pytest.raises(InvalidTransition, match=msg):
        check_transition(a, b, sector="Ventas")


def test_deriving_needs_a_sector():
    with pytest.raises(InvalidTransition, match="sector"):
        check_transition(A.PRELIMINARY_ANALYSIS, A.DERIVED, sector="  ")
