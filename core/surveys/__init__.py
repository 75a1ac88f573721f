"""Post-sale surveys: the catalog, sales and their windows, the conversational runner,
the scheduler and the manager panel.

``Surveys`` assembles them from config for ``service.py`` and the CLI::

    surveys = Surveys.build(db=..., outgoing=..., clock=..., config=config.surveys,
                            default_language="es", on_commit=signal.notify)
    surveys.catalog      # Catalog: questions, rules, profiles, products, import_toml
    surveys.sales        # Sales: record, record_many, import_csv
    surveys.runner       # SurveyRunner: the inbox ConversationHook, manual answers, resume
    surveys.scheduler    # SurveyScheduler: tick(now)
    surveys.panel        # Panel: panel(filter), export_csv, seller_scores, detractors
    surveys.followups    # Followups: case_closed (a CaseService closed hook), the re-survey
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from posventa.core.config import SurveysConfig
from posventa.core.outgoing import Outgoing
from posventa.core.persistence import Database
from posventa.core.ports import Clock
from posventa.core.surveys.catalog import Catalog
from posventa.core.surveys.followup import Followups
from posventa.core.surveys.detractors import DetractorCases, DetractorPolicy, PickAssignee, first_operator
from posventa.core.surveys.panel import Panel, PanelFilter
from posventa.core.surveys.runner import SurveyRunner
from posventa.core.surveys.sales import ImportReport, SaleError, SaleInput, SaleResult, Sales
from posventa.core.surveys.scheduler import SurveyScheduler, TickReport


@dataclass(frozen=True)
class Surveys:
    catalog: Catalog
    sales: Sales
    runner: SurveyRunner
    scheduler: SurveyScheduler
    panel: Panel
    followups: Followups
    tz: ZoneInfo

    @classmethod
    def build(cls, *, db: Database, outgoing: Outgoing, clock: Clock, config: SurveysConfig,
              default_language: str = "es", on_commit: Callable[[], None] = lambda: None,
              pick_assignee: PickAssignee = first_operator, phone_region: str = "AR") -> Surveys:
        """``pick_assignee`` chooses whom a detractor case goes to among the rule's
        operators (the first, until automatic assignment is passed in here)."""
        tz = ZoneInfo(config.timezone)
        policy = DetractorPolicy.from_config(config)
        return cls(
            catalog=Catalog(db=db),
            sales=Sales(db=db, clock=clock, tz=tz, default_language=default_language, phone_region=phone_region),
            runner=SurveyRunner(db=db, outgoing=outgoing, clock=clock,
                                detractors=DetractorCases(policy=policy, pick_assignee=pick_assignee),
                                default_language=default_language, on_commit=on_commit),
            scheduler=SurveyScheduler(db=db, outgoing=outgoing, clock=clock,
                                      reminder_after=timedelta(hours=config.reminder_after_hours),
                                      default_language=default_language, on_commit=on_commit),
            panel=Panel(db=db, clock=clock, tz=tz),
            followups=Followups(default_language=default_language),
            tz=tz,
        )


__all__ = ["Catalog", "ImportReport", "Panel", "PanelFilter", "SaleError", "SaleInput", "SaleResult", "Sales",
           "SurveyRunner", "SurveyScheduler", "Surveys", "TickReport"]
