"""A survey world on a real database: the catalog below, a fake clock, ``Surveys``
assembled the way ``service.py`` does it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from posventa.core.config import SurveysConfig
from posventa.core.outgoing import Outgoing
from posventa.core.surveys import Surveys
from tests.support import FakeClock

#: Monday 2 March 2026, 12:00 in Buenos Aires.
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

CATALOG = b"""
[[questions]]
code = "attention"
scale = "1-5"
text = { es = "Atencion?", pt = "Atendimento?", en = "Service?" }
weights = [-100, -50, 0, 50, 100]

[[questions]]
code = "recommend"
scale = "0-10"
text = { es = "Recomendarias?", pt = "Recomendaria?", en = "Recommend?" }
weights = [-100, -100, -100, -80, -60, -40, -20, 0, 0, 80, 100]

[[questions]]
code = "working"
scale = "yes/no"
text = { es = "Funciona?", pt = "Funciona?", en = "Working?" }
weights = { yes = 100, no = -100 }

[[rules]]
name = "week"
start_after_days = 7
expires_after_days = 3
questions = ["attention", "recommend", "working"]
operators = ["ana", "beto"]

[[rules]]
name = "month"
start_after_days = 30
expires_after_days = 7
questions = ["working"]
operators = ["carla"]

[[profiles]]
name = "hardware"
rules = ["week", "month"]

[[profiles]]
name = "software"
rules = ["month"]

[[products]]
code = "PRN"
name = "Impresora"
profile = "hardware"

[[products]]
code = "LIC"
name = "Licencia"
profile = "software"

[[products]]
code = "BARE"
name = "Sin encuesta"
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def surveys(db, clock) -> Surveys:
    s = Surveys.build(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=clock,
                      config=SurveysConfig(timezone="America/Argentina/Buenos_Aires", reminder_after_hours=24))
    await s.catalog.import_toml(CATALOG)
    return s


def sale(external_id: str, *, product: str = "PRN", seller: str = "marta", closed_at: str = "2026-03-02",
         **customer: object) -> dict:
    return {"external_id": external_id, "product": product, "seller": seller, "closed_at": closed_at,
            "customer": customer or {"telegram_id": "1001"}}
