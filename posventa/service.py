"""The composition root: builds every component from config, wires them, owns the loop.

This is the only module that imports core, the adapters (bots/, intake/) and kb/ together.
``build_parts`` is the one place the shared parts (the ``Database``, the case, contact
and assignment services...) are built from a ``Config``, and ``Parts.prepare_schema`` the
one schema check: ``Service`` (``posventa serve``) wires the adapters around them, and
every CLI command gets them from ``command_parts``.
Components are started in dependency order and stopped in reverse: inbound doors close
first, then the inbox drains, then the outbox workers finish their batch, and last the
clients those workers send through close.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text as sql_text

from posventa.core.attachments import AttachmentStore
from posventa.core.message_files import MessageFiles
from posventa.core.uploads import UploadPolicy
from posventa.core.budget import BudgetPolicy
from posventa.core.cases import CaseService
from posventa.core.config import Config, parse_networks
from posventa.core.contacts.organizations import OrganizationService
from posventa.core.contacts.service import ContactService
from posventa.core.domain import LANGUAGES, BudgetMode, ChannelName, OutboxStatus
from posventa.core.errors import StorageUnavailable
from posventa.core.inbox import InboxService, StoredMessage
from posventa.core.kb_images import KbImages
from posventa.core.macros import MacroService
from posventa.core.notices import CustomerNotices
from posventa.core.outbox import DEFAULT_CLAIM_BATCH, OutboxSignal, OutboxWorker, RetryPolicy, backlog, recover_expired_leases
from posventa.core.outgoing import Outgoing
from posventa.core.persistence import Database
from posventa.core.persistence.migrate import prepare, upgrade
from posventa.core.persistence.notify import Notifier, PgNotifier, notifier_for
from posventa.core.ports import AnswerSuggester, Channel, Clock, NullSuggester, SystemClock
from posventa.core.reply_fallback import EmailFallback
from posventa.core.assignment import Assigned, Assigner, AssignmentRules
from posventa.core.sla import build_sla_setup
from posventa.core.sla_report import REPORTED_TARGETS, SlaReportFilter, SlaReports, rows_for_metrics
from posventa.core.sla_store import CaseClockStore
from posventa.core.suggestions import SuggestionFlow
from posventa.core.tasks import Periodic
from posventa.intake.api import cases as cases_api
from posventa.intake.api import macros as macros_api
from posventa.intake.api import contacts as contacts_api
from posventa.intake.api import reports as reports_api
from posventa.intake.api.openapi import ApiRegistry
from posventa.intake.http import ClientAddresses, HttpServer, MetricsAccess, build_app
from posventa.intake.text_templates import SandboxedTemplates

if TYPE_CHECKING:
    from posventa.core.surveys import Surveys
    from posventa.kb.runtime import KbRuntime

log = logging.getLogger("posventa")


@dataclass(frozen=True)
class Parts:
    """What ``serve`` and every CLI command are made of, built one way (``build_parts``).
    Nothing here has started anything: no task, no connection until first used."""

    config: Config
    clock: Clock
    db: Database
    #: Wakes the outbox workers after a commit that queued something (``serve``'s).
    signal: OutboxSignal
    attachments: AttachmentStore
    outgoing: Outgoing
    #: Calendars and SLA policies (validated when the config was loaded).
    sla: CaseClockStore
    assigner: Assigner
    cases: CaseService
    contacts: ContactService
    kb_images: KbImages
    #: Messages' files both ways, and the one upload rule for files sent to us through a
    #: form (``[webchat] max_upload_bytes`` and ``upload_types``): visitors' and agents'.
    files: MessageFiles

    async def prepare_schema(self) -> None:
        """SQLite upgrades itself; PostgreSQL must have been upgraded (see ``prepare``)."""
        await prepare(self.db, source=self.config.source)

    def surveys(self) -> Surveys:
        """The survey services (catalog, sales, runner, scheduler, panel...)."""
        from posventa.core.surveys import Surveys

        return Surveys.build(db=self.db, outgoing=self.outgoing, clock=self.clock, config=self.config.surveys,
                             default_language=self.config.service.default_language,
                             on_commit=self.signal.notify,
                             # Whom a detractor case goes to among the rule's operators:
                             # automatic assignment's pick (the first when it is off).
                             pick_assignee=self.assigner.pick_among,
                             phone_region=self.config.contacts.phone_region)

    def kb(self) -> KbRuntime:
        """The knowledge base: Discourse client, index, sync, publisher (``[kb]``)."""
        from posventa.kb.runtime import KbRuntime, load_encoder

        return KbRuntime(config=self.config.kb, db=self.db, clock=self.clock, cases=self.cases,
                         encoder=load_encoder(self.config.kb), images=self.kb_images)

    async def close(self) -> None:
        await self.db.dispose()
        self.attachments.close()


def build_parts(config: Config, *, clock: Clock | None = None) -> Parts:
    """The one builder of the shared parts, for ``Service`` and every CLI command."""
    cfg = config
    clock = clock if clock is not None else SystemClock()
    db = Database(cfg.database.url, pool_size=cfg.database.pool_size)
    outbox_signal = OutboxSignal()
    attachments = AttachmentStore(Path(cfg.service.data_dir))
    email_domain = cfg.email.address.rsplit("@", 1)[-1] if "@" in cfg.email.address else "posventa.invalid"
    outgoing = Outgoing(email_domain=email_domain, max_attempts=cfg.outbox.max_attempts)
    sla = CaseClockStore(build_sla_setup(cfg))
    assign = cfg.assignment
    assigner = Assigner(db=db, clock=clock, rules=AssignmentRules(
        enabled=assign.enabled, strategy=assign.strategy, default_capacity=assign.default_capacity,
        reassign_after=timedelta(minutes=assign.reassign_after_minutes) if assign.reassign_after_minutes else None,
        calendar=sla.setup.notice_calendar()))
    notices = CustomerNotices.from_settings(
        notify_answer_sent=cfg.cases.notify_answer_sent, notify_closed=cfg.cases.notify_closed,
        reopen_days=cfg.cases.reopen_days,
        texts={(event, lang): getattr(cfg.cases, f"notice_{event}_{lang}")
               for event in ("answer_sent", "closed") for lang in LANGUAGES})
    cases = CaseService(sla=sla, db=db, outgoing=outgoing, clock=clock, on_commit=outbox_signal.notify,
                        desk_enabled=bool(cfg.telegram.enabled and cfg.telegram.agent_chat_id),
                        budget=BudgetPolicy(mode=BudgetMode(cfg.cases.budget_mode), currency=cfg.cases.currency),
                        notices=notices, phone_region=cfg.contacts.phone_region)
    contacts = ContactService(db=db, clock=clock, cases=cases, phone_region=cfg.contacts.phone_region,
                              files=attachments)
    return Parts(config=config, clock=clock, db=db, signal=outbox_signal, attachments=attachments, outgoing=outgoing,
                 sla=sla, assigner=assigner, cases=cases, contacts=contacts,
                 kb_images=KbImages(db=db, files=attachments, clock=clock),
                 files=MessageFiles(db=db, store=attachments, policy=UploadPolicy.of(
                     cfg.webchat.max_upload_bytes, cfg.webchat.upload_types)))


@asynccontextmanager
async def command_parts(config: Config, *, upgrade_schema: bool = False) -> AsyncIterator[Parts]:
    """The parts for a one-shot CLI command, closed on exit. The schema is checked first as
    ``serve`` checks it (a fresh SQLite file is brought up to date, an old PostgreSQL
    schema is one line saying to run ``db upgrade``); ``db upgrade`` upgrades instead."""
    parts = build_parts(config)
    try:
        if upgrade_schema:
            await upgrade(parts.db)
        else:
            await parts.prepare_schema()
        yield parts
    finally:
        await parts.close()


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Metrics:
    """The service's Prometheus metrics, on its own registry (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inbound = Counter("posventa_inbound_messages", "Customer messages stored", ["channel"],
                               registry=self.registry)
        self.new_cases = Counter("posventa_cases_opened", "Cases opened from inbound messages", ["channel"],
                                 registry=self.registry)
        self.outbox = Gauge("posventa_outbox_items", "Outbox items not yet sent, by channel and status",
                            ["channel", "status"], registry=self.registry)
        self.sla_running = Gauge("posventa_sla_running_cases", "Open cases with an SLA target running",
                                 registry=self.registry)
        self.sla_overdue = Gauge("posventa_sla_overdue_cases", "Open cases past an SLA target's due time",
                                 registry=self.registry)

    def totals(self, name: str, documentation: str, labels: Sequence[str],
               read: Callable[[], Iterable[tuple[tuple[str, ...], float]]]) -> None:
        """A total since start that a component already keeps as a number, exposed as a
        Prometheus counter (``name_total``) read at scrape time: no second count to keep
        in step, and a type that ``rate()`` understands."""
        self.registry.register(_TotalsReader(name, documentation, tuple(labels), read))

    def on_stored(self, stored: Sequence[StoredMessage]) -> None:
        # Counted per batch: labels().inc() takes two locks, per message it was a visible
        # share of the inbox batcher's time.
        inbound: dict[str, int] = {}
        opened: dict[str, int] = {}
        for s in stored:
            inbound[s.channel.value] = inbound.get(s.channel.value, 0) + 1
            if s.new_case:
                opened[s.channel.value] = opened.get(s.channel.value, 0) + 1
        for channel, n in inbound.items():
            self.inbound.labels(channel).inc(n)
        for channel, n in opened.items():
            self.new_cases.labels(channel).inc(n)


class _PeriodicReader(Collector):
    """Each periodic job's last run, last success and last error, read at scrape time;
    one ``task`` label per job, whose names are fixed in the code (a bounded set)."""

    _GAUGES = (("posventa_periodic_last_run_timestamp_seconds", "When the job last ran (Unix time)",
                "last_run_at"),
               ("posventa_periodic_last_success_timestamp_seconds", "When a run of the job last succeeded",
                "last_success_at"),
               ("posventa_periodic_last_error_timestamp_seconds", "When a run of the job last failed",
                "last_error_at"),
               ("posventa_periodic_consecutive_failures", "Failed runs of the job since its last success",
                "consecutive_failures"))

    def __init__(self, jobs: Callable[[], Iterable[Periodic]]) -> None:
        self._jobs = jobs

    def describe(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        return [*(GaugeMetricFamily(name, doc, labels=("task",)) for name, doc, _ in self._GAUGES),
                CounterMetricFamily("posventa_periodic_runs", "Runs of the job since start, by outcome",
                                    labels=("task", "outcome"))]

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        jobs = list(self._jobs())
        for name, doc, attribute in self._GAUGES:
            family = GaugeMetricFamily(name, doc, labels=("task",))
            for job in jobs:
                value = getattr(job, attribute)
                if value is not None:  # never ran, or never failed: no sample
                    family.add_metric((job.name,), float(value))
            yield family
        runs = CounterMetricFamily("posventa_periodic_runs", "Runs of the job since start, by outcome",
                                   labels=("task", "outcome"))
        for job in jobs:
            runs.add_metric((job.name, "ok"), job.runs - job.failures)
            runs.add_metric((job.name, "failed"), job.failures)
        yield runs


class _TotalsReader(Collector):
    def __init__(self, name: str, documentation: str, labels: tuple[str, ...],
                 read: Callable[[], Iterable[tuple[tuple[str, ...], float]]]) -> None:
        self._name, self._documentation, self._labels, self._read = name, documentation, labels, read

    def describe(self) -> list[CounterMetricFamily]:
        # Without describe(), registering would call collect() before anything is wired.
        return [CounterMetricFamily(self._name, self._documentation, labels=self._labels)]

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for labels, value in self._read():
            family.add_metric(labels, value)
        yield family


class SlaReportGauges(Collector):
    """The SLA report (core/sla_report.py) over the last ``days`` days as Prometheus gauges:
    achievement, median and p90 times, and met/missed counts, per target, in total and
    per channel, type, sector and agent.

    Label cardinality stays bounded: channels and types are fixed enumerations; sectors
    and agents are the ``MAX_GROUPS`` with most cases (a desk with more sees its largest
    ones, and the console or API for the rest); weeks are not a label at all, since time
    is Prometheus's own axis and a week label would add series forever.

    A ``Periodic`` job ("sla-report") computes them every ``[sla] report_refresh_seconds``
    (a few grouped queries over the window's cases, each process its own); a scrape reads
    the figures kept, at no database cost."""

    MAX_GROUPS = 20
    DIMENSIONS = (None, "channel", "type", "sector", "agent")

    def __init__(self, *, reports: SlaReports, clock: Clock, days: int) -> None:
        self._reports, self._clock, self._days = reports, clock, days
        self._families: list[GaugeMetricFamily] = []
        # Computations take turns, so the figures kept are those of the one started last
        # (the job's, or a direct call's).
        self._turn = asyncio.Lock()

    async def compute(self) -> None:
        async with self._turn:
            await self._compute()

    async def _compute(self) -> None:
        now = self._clock.now()
        today = now.astimezone(UTC).date()
        achieved = GaugeMetricFamily(
            "posventa_sla_achieved_percent",
            f"SLA targets met / decided x 100, cases opened in the last {self._days} days",
            labels=("target", "group_by", "group"))
        minutes = GaugeMetricFamily(
            "posventa_sla_time_minutes",
            f"Business minutes to first response / resolution (median, p90), last {self._days} days",
            labels=("target", "quantile", "group_by", "group"))
        decided = GaugeMetricFamily("posventa_sla_targets", f"SLA targets met or missed, last {self._days} days",
                                    labels=("target", "outcome", "group_by", "group"))
        for dimension in self.DIMENSIONS:
            report = await self._reports.report(SlaReportFilter(
                since=today - timedelta(days=self._days - 1), until=today, group_by=dimension), now=now)
            rows = rows_for_metrics(report, self.MAX_GROUPS) if dimension else [report.total]
            for row in rows:
                where = (dimension or "total", row.group or "")
                for target in REPORTED_TARGETS:
                    figures = row.target(target)
                    decided.add_metric((target, "met", *where), figures.met)
                    decided.add_metric((target, "missed", *where), figures.missed)
                    if figures.achieved_percent is not None:
                        achieved.add_metric((target, *where), figures.achieved_percent)
                    if figures.median_minutes is not None and figures.p90_minutes is not None:
                        minutes.add_metric((target, "0.5", *where), figures.median_minutes)
                        minutes.add_metric((target, "0.9", *where), figures.p90_minutes)
        self._families = [achieved, minutes, decided]

    def describe(self) -> list[GaugeMetricFamily]:
        # Without describe(), registering would call collect() before anything is computed.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families


@dataclass
class Service:
    """Everything ``posventa serve`` runs, built from one ``Config``."""

    config: Config
    clock: Clock = field(default_factory=SystemClock)
    #: Outbound channels by name; tests and the wiring below add to it before start().
    channels: dict[ChannelName, Channel] = field(default_factory=dict)
    suggester: AnswerSuggester | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        self.parts = parts = build_parts(cfg, clock=self.clock)
        self.db, self.signal, self.attachments, self.outgoing = parts.db, parts.signal, parts.attachments, parts.outgoing
        self.sla, self.assigner, self.cases, self.contacts = parts.sla, parts.assigner, parts.cases, parts.contacts
        self.kb_images = parts.kb_images
        self.files = parts.files
        self.metrics = Metrics()
        self.inbox = InboxService(sla=self.sla, db=self.db, outgoing=self.outgoing, clock=self.clock,
                                  default_language=cfg.service.default_language,
                                  desk_enabled=bool(cfg.telegram.enabled and cfg.telegram.agent_chat_id),
                                  on_commit=self.signal.notify,
                                  max_concurrent_batches=1 if self.db.is_sqlite else 2,
                                  reopen_days=cfg.cases.reopen_days)
        self.metrics.registry.register(_PeriodicReader(self.periodic_jobs))
        self.metrics.totals("posventa_inbox_batches", "Group-commit batches since start", (),
                            lambda: [((), self.inbox.batches_committed)])
        self.metrics.totals("posventa_outbox_delivered", "Deliveries by this process since start",
                            ("channel", "outcome"),
                            lambda: [((w.channel_name.value, outcome), getattr(w, outcome))
                                     for w in self.workers for outcome in ("sent", "failed", "retried")])
        #: The SLA report (API, console page, Prometheus gauges).
        self.sla_reports = SlaReports(db=self.db)
        self.sla_gauges = SlaReportGauges(reports=self.sla_reports, clock=self.clock, days=cfg.sla.report_metrics_days)
        self.macros = MacroService(db=self.db, cases=self.cases, clock=self.clock, templates=SandboxedTemplates(),
                                   default_language=cfg.service.default_language, company_name=cfg.service.company_name)
        self.organizations = OrganizationService(db=self.db, clock=self.clock, cases=self.cases,
                                                 contacts=self.contacts)
        self.api = ApiRegistry()
        #: The one rule for a request's client address (X-Forwarded-For from trusted proxies only).
        self.client_addresses = ClientAddresses.from_cidrs(cfg.http.trusted_proxies)
        metrics_access = MetricsAccess(addresses=self.client_addresses, token=cfg.http.metrics_token,
                                       allow_from=parse_networks(cfg.http.metrics_allow_from))
        self.app = build_app(registry=self.metrics.registry, max_body_bytes=cfg.http.max_body_bytes,
                             metrics_access=metrics_access, before_metrics=self._refresh_metrics, health=self._health)
        self.http = HttpServer(app=self.app, host=cfg.http.host, port=cfg.http.port)
        #: Between the processes sharing the database (LISTEN/NOTIFY on PostgreSQL; just
        #: this process on SQLite): web chat pushes and console live updates.
        self.notifier: Notifier = notifier_for(self.db)
        self.workers: list[OutboxWorker] = []
        #: Inbound doors and background loops, started after the inbox and stopped first.
        self.components: list[Component] = []
        #: Closers of the clients channels send through, run after the outbox workers stop.
        self.transports: list[Callable[[], Awaitable[None]]] = []
        self._started = False

    # --- wiring ------------------------------------------------------------------------

    def _wire(self) -> None:
        """Build every enabled adapter. Each ``_wire_*`` adds its channels, routes and
        components; the order here is the start order."""
        self.inbox.subscribe(self.metrics.on_stored)
        cases_api.register(self.api, cases=self.cases, macros=self.macros, message_files=self.files)
        macros_api.register(self.api, macros=self.macros)
        contacts_api.register(self.api, contacts=self.contacts, organizations=self.organizations)
        reports_api.register(self.api, reports=self.sla_reports, clock=self.clock)
        # First in, last out: everything below may publish or subscribe until it stops.
        self.components.append(self.notifier)
        if isinstance(self.notifier, PgNotifier):
            notifier = self.notifier
            listening = Gauge("posventa_notify_listening", "1 while the LISTEN connection to PostgreSQL is up",
                              registry=self.metrics.registry)
            listening.set_function(lambda: float(notifier.listening.is_set()))
            self.metrics.totals("posventa_notifications", "Cross-process notifications since start, by outcome",
                                ("event",), lambda: [((event,), getattr(notifier, event)) for event in
                                                     ("published", "received", "dropped", "reconnects")])
        self._wire_case_counts()
        self._wire_calendars()
        self._wire_email()
        self._wire_webchat()
        self._wire_telegram()
        self._wire_kb()
        self._wire_surveys()
        self._wire_assignment()
        self._wire_sla_report()
        self._wire_console()
        # After _wire_kb, which may have provided the suggester.
        self.suggestions = SuggestionFlow(
            db=self.db, suggester=self.suggester if self.suggester is not None else NullSuggester(),
            outgoing=self.outgoing, clock=self.clock,
            min_score=self.config.kb.min_score, limit=self.config.kb.suggest_limit,
            timeout_seconds=self.config.kb.suggest_timeout_seconds, on_commit=self.signal.notify)
        if self.suggester is not None:
            # Without a knowledge base nothing is ever suggested: no task per new case.
            self.inbox.subscribe(self.suggestions.on_stored)
        self.api.install(self.app, tokens=self.config.api.tokens, admin_tokens=self.config.api.admin_tokens)
        policy = RetryPolicy(base_delay_seconds=self.config.outbox.base_delay_seconds,
                             max_delay_seconds=self.config.outbox.max_delay_seconds,
                             lease_seconds=self.config.outbox.lease_seconds)
        # Open case pages show each reply's delivery state as it changes.
        console = getattr(self, "console", None)
        on_recorded = console.live.publish_deliveries if console is not None else None
        for channel in self.channels.values():
            self.workers.append(OutboxWorker(db=self.db, channel=channel, clock=self.clock, signal=self.signal,
                                             policy=policy, concurrency=self.config.outbox.concurrency,
                                             poll_seconds=self.config.outbox.poll_seconds,
                                             batch_size=getattr(channel, "claim_batch", DEFAULT_CLAIM_BATCH),
                                             on_recorded=on_recorded))

    def _wire_email(self) -> None:
        """Inbound SMTP server and outbound SMTP channel (intake/email)."""
        if not self.config.email.enabled:
            return
        from posventa.intake.email.channel import EmailChannel
        from posventa.intake.email.server import InboundMailHandler, SmtpServer, SmtpSettings

        cfg = self.config.email
        self.smtp_handler = InboundMailHandler(inbox=self.inbox, attachments=self.attachments,
                                               settings=SmtpSettings.from_config(cfg))
        self.smtp = SmtpServer(handler=self.smtp_handler, host=cfg.listen_host, port=cfg.listen_port,
                               max_message_bytes=cfg.max_message_bytes)
        self.components.append(self.smtp)
        if cfg.outbound.enabled:
            self.channels.setdefault(ChannelName.EMAIL, EmailChannel(config=cfg, files=self.files))

    def _wire_webchat(self) -> None:
        """The /chat/ws websocket, the widget and the webchat channel (intake/webchat)."""
        cfg = self.config.webchat
        if not cfg.enabled:
            return
        from posventa.intake.webchat import History, Hub, LocalHub, SessionStore, WebchatChannel, WebchatServer

        local = LocalHub()
        hub: Hub = local
        if self.notifier.shared:
            # Several processes: a reply claimed here reaches a socket held by another.
            from posventa.intake.webchat.fanout import FanoutHub

            hub = FanoutHub(local=local, notifier=self.notifier, db=self.db, clock=self.clock,
                            registry=self.metrics.registry)
            self.components.append(hub)
        # Replies go by email after a while only where there is an email channel to carry them.
        fallback = cfg.email_fallback_after_seconds if ChannelName.EMAIL in self.channels else 0
        self.channels[ChannelName.WEBCHAT] = WebchatChannel(hub=hub, fallback=EmailFallback(
            db=self.db, outgoing=self.outgoing, clock=self.clock, on_commit=self.signal.notify,
            after=float(fallback) if fallback > 0 else None))
        self.webchat = WebchatServer(
            config=cfg, public_url=self.config.http.public_url, inbox=self.inbox, hub=local, clock=self.clock,
            sessions=SessionStore(db=self.db, clock=self.clock),
            history=History(db=self.db, limit=cfg.history_limit), registry=self.metrics.registry,
            client_addresses=self.client_addresses, files=self.files)
        self.webchat.install(self.app)
        self.components.append(self.webchat)

    def _wire_telegram(self) -> None:
        """The customer bot and the agents' desk (bots/telegram)."""
        cfg = self.config.telegram
        if not cfg.enabled:
            return
        from posventa.bots.telegram import TelegramBot  # imported only when enabled: PTB is a heavy import
        from posventa.core.persistence.leadership import AdvisoryLeadership, always

        leader = always
        if cfg.mode != "webhook" and not self.db.is_sqlite:
            # Telegram allows one getUpdates at a time: of the processes sharing this
            # database, the holder of an advisory lock polls. Added before the bot, so it
            # is stopped after it (the bot confirms its last offset while still leading).
            bot_id = cfg.token.split(":", 1)[0]
            lead = self.telegram_leadership = AdvisoryLeadership(db=self.db, name=f"telegram-poller:{bot_id}")
            self.components.append(lead)
            leader = lead.is_leader
            Gauge("posventa_telegram_poller", "1 while this process holds the Telegram polling lock",
                  registry=self.metrics.registry).set_function(lambda: float(lead.held))
        self.telegram = TelegramBot(
            config=cfg, config_source=self.config.source, public_url=self.config.http.public_url,
            inbox=self.inbox, cases=self.cases, macros=self.macros, db=self.db, outgoing=self.outgoing,
            clock=self.clock, files=self.attachments, on_commit=self.signal.notify,
            default_language=self.config.service.default_language, company_name=self.config.service.company_name,
            leader=leader, availability=self.assigner.set_available_by_telegram,
            contacts=self.contacts, message_files=self.files,
            viewers=self._console_viewers)
        # setdefault: a test (or another wiring) may already have put its own channel there.
        self.channels.setdefault(ChannelName.TELEGRAM, self.telegram.channel)
        if self.telegram.desk_channel is not None:
            self.channels.setdefault(ChannelName.DESK, self.telegram.desk_channel)
        if cfg.mode == "webhook":
            self.telegram.webhook.install(self.app)
        self.components.append(self.telegram)
        self.transports.append(self.telegram.close)

    def _console_viewers(self, case: int) -> list[tuple[str, bool]]:
        """Who has ``case`` open in the console, and typing there (the desk's collision
        warning): every process's table holds every tab, so the desk reads its own."""
        console = getattr(self, "console", None)
        if console is None:
            return []
        return [(v.name, v.typing) for v in console.live.viewers.on_case(case)]

    def _wire_kb(self) -> None:
        """Discourse sync, the matcher as AnswerSuggester, the publisher channel (kb/)."""
        if not self.config.kb.enabled:
            return
        self.kb = self.parts.kb()
        if self.suggester is None:
            self.suggester = self.kb.index
        self.channels[ChannelName.KB] = self.kb.publisher
        self.kb.webhook.add_routes(self.app)
        self.components.append(self.kb)
        self.transports.append(self.kb.close)

    def _wire_surveys(self) -> None:
        """Catalog, sales, the survey runner hook and scheduler (core/surveys, intake/api).

        ``self.surveys`` (a ``core.surveys.Surveys``) is None when ``[surveys] enabled``
        is false; the console checks it before showing the manager panel."""
        from posventa.intake.api import surveys as surveys_api

        self.surveys = None
        if not self.config.surveys.enabled:
            return
        self.surveys = self.parts.surveys()
        self.inbox.add_hook(self.surveys.runner)
        self.cases.add_closed_hook(self.surveys.followups.case_closed)
        surveys_api.register(self.api, surveys=self.surveys)
        self.components.append(Periodic(name="survey-tick", interval=self.config.surveys.tick_seconds,
                                        job=self.surveys.scheduler.tick, jitter=0.1, expected=(StorageUnavailable,)))

    def _wire_sla_report(self) -> None:
        """The SLA report's gauges on /metrics, computed by a periodic job (scrapes only read)."""
        if not self.config.sla.enabled:
            return
        self.metrics.registry.register(self.sla_gauges)
        self.components.append(Periodic(name="sla-report", interval=self.config.sla.report_refresh_seconds,
                                        job=self.sla_gauges.compute, jitter=0.1, expected=(StorageUnavailable,)))

    def _wire_assignment(self) -> None:
        """Automatic assignment of new cases (core/assignment.py) and its agents' API."""
        from posventa.intake.api import agents as agents_api

        cfg = self.config.assignment
        agents_api.register(self.api, assigner=self.assigner)
        if cfg.enabled:
            from posventa.core.notifications import AgentNotifier

            self.agent_notifier = AgentNotifier(db=self.db, outgoing=self.outgoing, clock=self.clock,
                                                public_url=self.config.http.public_url,
                                                language=self.config.service.default_language,
                                                # Read at each notice: calendars edited while running count.
                                                tz=lambda: self.sla.setup.notice_calendar().tz,
                                                on_commit=self.signal.notify, on_browser=self._browser_notices)
            self.assigner.subscribe(self.agent_notifier.on_assigned)
            notifier = self.agent_notifier
            self.cases.add_assigned_hook(
                lambda number, assignee, previous: notifier.on_assigned(Assigned(number, assignee, previous)))
            self.inbox.subscribe(self.assigner.on_stored)
            self.inbox.subscribe(self.agent_notifier.on_stored)
            if self.config.sla.enabled:
                from posventa.core.notifications import SlaWatch

                watch = SlaWatch(notifier=self.agent_notifier,
                                 warn_before=timedelta(minutes=self.config.sla.warn_before_minutes))
                self.components.append(Periodic(name="sla-watch", interval=self.config.sla.sweep_seconds,
                                                job=watch.tick, jitter=0.1, expected=(StorageUnavailable,)))
            # Unassigned cases, and the cases of agents away too long.
            self.components.append(Periodic(name="assignment-sweep", interval=cfg.sweep_seconds,
                                            job=self.assigner.tick, jitter=0.1, expected=(StorageUnavailable,)))

    def _wire_case_counts(self) -> None:
        """The per-activity counts' tally folded every so often (core/case_counts.py)."""
        from posventa.core import case_counts

        folder = case_counts.TallyFolder(db=self.db)
        self.components.append(Periodic(name="case-counts", interval=case_counts.FOLD_SECONDS, job=folder.fold,
                                        jitter=0.1, expected=(StorageUnavailable,)))

    def _wire_calendars(self) -> None:
        """Calendars admins edit in the console (core/calendars.py): applied here at start,
        on another process's save (the notifier) and every so often."""
        from posventa.core import calendars
        from posventa.intake.api import calendars as calendars_api

        self.calendar_editor = calendars.CalendarEditor(db=self.db, clock=self.clock, config=self.config,
                                                        apply=self._apply_calendars, publish=self.notifier.publish)
        calendars_api.register(self.api, calendars=self.calendar_editor)
        self.notifier.subscribe(calendars.TOPIC, self.calendar_editor.on_notification)
        # Started (loaded) before the channels: no case is counted on config's calendars alone.
        self.components.append(self.calendar_editor)
        self.components.append(Periodic(name="calendars-reload", interval=calendars.RELOAD_SECONDS,
                                        job=self.calendar_editor.reload, run_at_start=False,
                                        # No jitter, so no draw from the global random module.
                                        rand=lambda: 0.5))

    def _apply_calendars(self, setup: Any) -> None:
        import dataclasses

        self.sla.replace_setup(setup)
        self.assigner.rules = dataclasses.replace(self.assigner.rules, calendar=setup.notice_calendar())

    def _browser_notices(self, notices: Any) -> None:
        """Agent notifications for the browser: to the console's live stream, if any."""
        console = getattr(self, "console", None)
        if console is not None:
            console.live.publish_notices(notices)

    @staticmethod
    def _console_viewer(request: Any) -> str | None:
        """Whose console page a live stream is (their browser notifications)."""
        from posventa.intake.console.app import SESSION_KEY

        session = request.get(SESSION_KEY)
        return session.user.username if session is not None else None

    async def _console_presence(self, request: Any) -> None:
        """An open console page is its agent's presence (automatic assignment)."""
        from posventa.intake.console.app import SESSION_KEY

        session = request.get(SESSION_KEY)
        if session is not None and self.config.assignment.enabled:
            await self.assigner.seen_in_console(session.user.username)

    def _wire_console(self) -> None:
        """The agents' console and manager panel pages (intake/console)."""
        if not self.config.http.enabled:
            return
        from posventa.intake.console import Console

        surveys = getattr(self, "surveys", None)
        if surveys is not None:
            catalog, panel = surveys.catalog, surveys.panel
        else:
            # Managers edit the catalog and read the panel even where the survey runner is
            # off; both are plain queries over the database.
            from zoneinfo import ZoneInfo

            from posventa.core.surveys.catalog import Catalog
            from posventa.core.surveys.panel import Panel

            catalog = Catalog(db=self.db)
            panel = Panel(db=self.db, clock=self.clock, tz=ZoneInfo(self.config.surveys.timezone))
        from posventa.intake.console.live import LiveUpdates
        from posventa.intake.console.presence import CaseViewers

        self.console = Console(db=self.db, cases=self.cases, macros=self.macros, attachments=self.attachments, clock=self.clock,
                               public_url=self.config.http.public_url,
                               company_name=self.config.service.company_name, catalog=catalog, panel=panel,
                               timezone=self.config.surveys.timezone, live=LiveUpdates(
                                   notifier=self.notifier, presence=self._console_presence, viewer=self._console_viewer,
                                   # Who has which case open, heard from every process (collision warnings).
                                   viewers=CaseViewers(notifier=self.notifier)),
                               assigner=self.assigner, calendars=self.calendar_editor,
                               client_addresses=self.client_addresses, registry=self.metrics.registry,
                               require_totp_for_admins=self.config.console.require_totp_for_admins,
                               kb_images=self.kb_images, contacts=self.contacts,
                               organizations=self.organizations, sla_reports=self.sla_reports, files=self.files)
        # Open inbox and case pages refresh when a customer writes, whichever process
        # stored the message (through the notifier).
        self.inbox.subscribe(self.console.live.publish)
        self.console.install(self.app)
        self.components.append(self.console)

    # --- lifecycle -----------------------------------------------------------------------

    async def prepare_database(self) -> None:
        await self.parts.prepare_schema()

    async def start(self) -> None:
        await self.prepare_database()
        self._wire()
        await recover_expired_leases(self.db, self.clock, all_inflight=self.db.is_sqlite)
        await self.inbox.start()
        for worker in self.workers:
            await worker.start()
        started: list[Component] = []
        try:
            if self.config.http.enabled:
                await self.http.start()
            for component in self.components:
                await component.start()
                started.append(component)
        except BaseException:
            for component in reversed(started):
                try:
                    await component.stop()
                except Exception:
                    log.exception("stopping %s after a failed start failed", type(component).__name__)
            await self._stop_core()
            raise
        self._started = True
        log.info("posventa is up: http %s:%s, channels %s", self.config.http.host, self.http.bound_port,
                 ", ".join(sorted(c.value for c in self.channels)) or "none")

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for component in reversed(self.components):
            try:
                await asyncio.wait_for(component.stop(), timeout=5)
            except Exception:
                log.exception("stopping %s failed", type(component).__name__)
        await self._stop_core()

    async def _stop_core(self) -> None:
        await self.http.stop()
        await self.inbox.stop()
        if hasattr(self, "suggestions"):
            try:
                await asyncio.wait_for(self.suggestions.drain(), timeout=3)
            except Exception:
                log.exception("draining the KB suggestions failed")
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.stop(), timeout=5)
            except Exception:
                log.exception("stopping the %s outbox worker failed", worker.channel_name.value)
        # Channels' clients close last: a worker's batch may still have been sending.
        for close in self.transports:
            try:
                await asyncio.wait_for(close(), timeout=5)
            except Exception:
                log.exception("closing a channel's client failed")
        await self.parts.close()

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- health and metrics ---------------------------------------------------------------

    def periodic_jobs(self) -> Iterator[Periodic]:
        """Every periodic job of the components wired: the service's own, and those an
        adapter runs (``periodic_jobs`` on the component)."""
        for component in self.components:
            if isinstance(component, Periodic):
                yield component
            else:
                yield from getattr(component, "periodic_jobs", ())

    async def _health(self) -> dict[str, Any]:
        async with self.db.engine.connect() as conn:
            await conn.execute(sql_text("SELECT 1"))
        return {"database": self.db.dialect}

    async def _refresh_metrics(self) -> None:
        counts = await backlog(self.db)
        channels = {c.value for c in self.channels} | {ch for ch, _ in counts}
        for ch in channels:
            for status in (OutboxStatus.QUEUED, OutboxStatus.INFLIGHT, OutboxStatus.AWAITING_RETRY,
                           OutboxStatus.FAILED):
                self.metrics.outbox.labels(ch, status.value).set(counts.get((ch, status.value), 0))
        if self.config.sla.enabled:
            async with self.db.engine.connect() as conn:
                running, overdue = await self.sla.running_counts(conn, self.clock.now())
            self.metrics.sla_running.set(running)
            self.metrics.sla_overdue.set(overdue)


async def run_until_signalled(service: Service) -> None:
    """Serve until SIGINT or SIGTERM, then drain and return (the process exits 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    # Everything built so far lives as long as the process: move it out of the collector's
    # reach, so full collections stay short (they showed up as ~200 ms ack-latency spikes).
    gc.collect()
    gc.freeze()
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await service.stop()
