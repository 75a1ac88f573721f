import pytest

from posventa.core.domain import Activity, CaseType
from posventa.core.errors import InvalidTransition
from posventa.core.workflow import NEEDS_TYPE, MissingCaseType, check_transition

A = Activity
T = CaseType


@pytest.mark.parametrize("a,b", [(A.PRELIMINARY_ANALYSIS, A.ANSWER_SENT), (A.ANSWER_SENT, A.CLOSED),
                                 (A.DERIVED, A.DERIVED), (A.ANSWER_SENT, A.PRELIMINARY_ANALYSIS)])
def test_allowed(a, b):
    check_transition(a, b, case_type=T.REQUEST, sector="Ventas")


@pytest.mark.parametrize("a,b,msg", [(A.CLOSED, A.DERIVED, "closed"), (A.CLOSED, A.CLOSED, "closed"),
                                     (A.PRELIMINARY_ANALYSIS, A.PRELIMINARY_ANALYSIS, "cannot move")])
def test_refused(a, b, msg):
    with pytest.raises(InvalidTransition, match=msg):
        check_transition(a, b, case_type=T.COMPLAINT, sector="Ventas")


def test_deriving_needs_a_sector():
    with pytest.raises(InvalidTransition, match="sector"):
        check_transition(A.PRELIMINARY_ANALYSIS, A.DERIVED, case_type=T.INCIDENT, sector="  ")


@pytest.mark.parametrize("current", [A.PRELIMINARY_ANALYSIS, A.DERIVED])
@pytest.mark.parametrize("target", sorted(NEEDS_TYPE))
def test_answering_or_closing_needs_the_type(current, target):
    with pytest.raises(MissingCaseType, match="no type") as info:
        check_transition(current, target, case_type="unclassified")
    assert info.value.field == "type" and info.value.target == target
    assert "request, complaint, incident" in str(info.value)


def test_an_unclassified_case_may_still_be_derived_and_analysed():
    check_transition(A.PRELIMINARY_ANALYSIS, A.DERIVED, case_type=T.UNCLASSIFIED, sector="Taller")
    check_transition(A.DERIVED, A.PRELIMINARY_ANALYSIS, case_type=T.UNCLASSIFIED)
