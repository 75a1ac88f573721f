"""The Budget tab's rules: which mode a case follows, and amounts with their currency.

In the seeds "Lista de productos" belongs to the post-sale process: the process (``[cases]
budget_mode``) decides how every case's budget is kept, and a case has a mode of its own
only when an agent set one explicitly (stored in ``cases.budget_mode``; ``FOLLOW_PROCESS``
there follows the process). Amounts are in one currency, ``[cases] currency`` or the language's default,
formatted with Babel for the case's language.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from babel.numbers import format_currency, list_currencies

from posventa.core.domain import BudgetMode

#: ``cases.budget_mode`` of a case without a mode of its own.
FOLLOW_PROCESS = "process"
#: A currency when ``[cases] currency`` is empty, and the locale amounts are written in.
DEFAULT_CURRENCY = {"es": "ARS", "pt": "BRL", "en": "USD"}
LOCALES = {"es": "es_AR", "pt": "pt_BR", "en": "en_US"}
_CURRENCIES = frozenset(list_currencies())


def is_currency(code: str) -> bool:
    return code in _CURRENCIES


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """The process's budget settings, from ``[cases]`` (validated at start-up)."""

    mode: BudgetMode = BudgetMode.NOT_USED
    currency: str = ""

    def mode_of(self, case_mode: str | None) -> BudgetMode:
        """The case's own mode when an agent set one, else the process's."""
        return self.mode if self.follows_process(case_mode) else BudgetMode(case_mode)

    @staticmethod
    def follows_process(case_mode: str | None) -> bool:
        return not case_mode or case_mode == FOLLOW_PROCESS

    def currency_for(self, language: str) -> str:
        return self.currency or DEFAULT_CURRENCY.get(language, DEFAULT_CURRENCY["es"])


def money(amount: Decimal | float, currency: str, language: str) -> str:
    """``amount`` written the way the case's language writes money ("$ 1.234,50", "US$1,234.50")."""
    return format_currency(amount, currency, locale=LOCALES.get(language, LOCALES["es"]))


def total(lines: Iterable[tuple[Decimal | None, Decimal | None]]) -> Decimal:
    """The sum of quantity × unit amount over the lines that have both."""
    return sum((q * a for q, a in lines if q is not None and a is not None), Decimal(0))
