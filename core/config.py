"""Configuration: a TOML file (all optional) plus secrets from the environment.

Every key is declared once in ``SCHEMA`` with its type and default. Unknown sections or
keys, wrong types and missing secrets for an enabled part raise ``ConfigError`` naming
the key and the file, so start-up stops with one clear line, never a traceback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from posventa.core.budget import is_currency
from posventa.core.domain import LANGUAGES, BudgetMode
from posventa.core.errors import ConfigError, ValidationError
from posventa.core.uploads import UPLOAD_KINDS

MAX_CONFIG_BYTES = 1_000_000
#: The ceiling for ``[webchat] max_upload_bytes``: a chat is no file transfer service.
MAX_UPLOAD_BYTES = 104_857_600
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (``10.0.0.0/8``) or single addresses; host bits set are allowed (``10.0.0.7/8``)."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite+aiosqlite:///posventa.db"
    pool_size: int = 10


@dataclass(frozen=True)
class ServiceConfig:
    #: Where attachments and raw mails are stored.
    data_dir: str = "./data"
    default_language: str = "es"
    company_name: str = "Soporte"
    log_level: str = "INFO"
    #: "text" (one readable line per event) or "json" (one object per line, for log shippers).
    log_format: str = "text"


@dataclass(frozen=True)
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = 1_000_000
    #: Proxies (CIDRs) whose X-Forwarded-For is believed; from anyone else it is ignored.
    trusted_proxies: tuple[str, ...] = ()
    #: Client addresses (CIDRs) that may read /metrics without a token.
    metrics_allow_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    #: A bearer token that also opens /metrics (from anywhere); empty = none.
    metrics_token: str = ""


@dataclass(frozen=True)
class ApiConfig:
    tokens: tuple[str, ...] = ()
    #: Tokens that may also do what only an admin may (erase a contact, edit calendars); they work as
    #: ordinary tokens too.
    admin_tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmailOutboundConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    tls: bool = False
    username: str = ""
    password: str = ""
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class EmailConfig:
    enabled: bool = True
    listen_host: str = "127.0.0.1"
    listen_port: int = 2525
    domains: tuple[str, ...] = ("example.com",)
    address: str = "support@example.com"
    from_name: str = "Soporte"
    max_message_bytes: int = 25_000_000
    max_attachment_bytes: int = 10_000_000
    max_total_attachment_bytes: int = 20_000_000
    #: Automatic replies to one sender per hour, at most (Zammad-style loop brake).
    auto_replies_per_sender_per_hour: int = 10
    #: aiosmtpd's own logger ("mail.log"): its INFO lines are several per mail.
    smtp_log_level: str = "WARNING"
    outbound: EmailOutboundConfig = EmailOutboundConfig()


@dataclass(frozen=True)
class TelegramConfig:
    enabled: bool = False
    token: str = ""
    api_base_url: str = "https://api.telegram.org"
    mode: str = "polling"
    agent_chat_id: int = 0
    agents: tuple[int, ...] = ()
    webhook_secret: str = ""
    poll_timeout_seconds: int = 30
    max_file_bytes: int = 20_000_000


@dataclass(frozen=True)
class WebchatConfig:
    enabled: bool = True
    allowed_origins: tuple[str, ...] = ()
    prechat_form: bool = False
    max_frame_bytes: int = 16_384
    messages_per_minute_per_session: int = 30
    #: A ceiling for a whole address (an office NAT, a mobile carrier): high on purpose;
    #: the per-session budget is the one a single visitor meets.
    messages_per_minute_per_ip: int = 600
    idle_timeout_seconds: int = 1800
    #: After this long undelivered, an agent reply also goes by email when the visitor gave one.
    email_fallback_after_seconds: int = 900
    #: Longest customer message, in characters (the widget enforces the same limit).
    max_text_chars: int = 4000
    #: New chat sessions (and wrong session tokens) one IP address may start per minute.
    new_sessions_per_minute_per_ip: int = 60
    #: Any frames at all, per connection per second (junk included).
    frames_per_second_per_connection: int = 10
    #: Consecutive frames answered with an error before the socket is closed (1008).
    max_rejected_frames: int = 20
    max_connections_per_ip: int = 2000
    #: Open tabs of one visitor.
    max_connections_per_session: int = 5
    #: A websocket that says no hello within this long is closed.
    hello_timeout_seconds: int = 10
    #: A websocket silent this long gets a ping; one that does not answer within half of
    #: it is closed (a laptop lid closed, a network gone), long before the idle timeout.
    heartbeat_seconds: int = 30
    #: Sessions that never wrote anything are deleted after this long unseen (0 = never).
    abandoned_session_hours: int = 24
    #: Messages replayed at most on (re)connect.
    history_limit: int = 200
    #: Largest file a visitor may upload (the attach button), in bytes.
    max_upload_bytes: int = 10_485_760
    #: What visitors may upload, recognised by content (core/uploads.py): "image", "pdf",
    #: "text". Empty: no uploads (the widget hides its attach button).
    upload_types: tuple[str, ...] = ("image", "pdf", "text")


@dataclass(frozen=True)
class ConsoleConfig:
    #: Admins must enrol a TOTP second factor before they can use the console.
    require_totp_for_admins: bool = False


@dataclass(frozen=True)
class CasesConfig:
    #: The post-sale process's budget mode (the seeds' "Lista de productos"): how the Budget
    #: tab of every case is shown, unless an agent sets a case's own mode explicitly.
    budget_mode: str = "not_used"
    #: ISO 4217 code of budget amounts; empty: by language (es ARS, pt BRL, en USD).
    currency: str = ""
    #: A customer's message to a case closed less than this many days ago reopens it;
    #: later, it opens a follow-up case linked to it (core/case_threading.py).
    reopen_days: int = 7
    #: Tell the customer on their channel when their case moves to "answer sent" / "closed".
    notify_answer_sent: bool = False
    notify_closed: bool = True
    #: Custom notice texts per language ("" = the built-in text). Placeholders: {number},
    #: {title}, {days} (the reopen window).
    notice_answer_sent_es: str = ""
    notice_answer_sent_pt: str = ""
    notice_answer_sent_en: str = ""
    notice_closed_es: str = ""
    notice_closed_pt: str = ""
    notice_closed_en: str = ""


@dataclass(frozen=True)
class KbConfig:
    enabled: bool = False
    type: str = "discourse"
    api_url: str = ""
    api_user: str = "system"
    api_key: str = ""
    categories: tuple[int, ...] = ()
    publish_category: int = 0
    webhook_secret: str = ""
    min_score: float = 50.0
    suggest_limit: int = 3
    #: Re-rank suggestions by meaning with the bundled sentence model (kb.embedding).
    semantic: bool = True
    sync_interval_seconds: int = 600
    suggest_timeout_seconds: float = 2.0
    requests_per_minute: int = 50


@dataclass(frozen=True)
class DetractorReplyConfig:
    """What a customer with a detractor answer reads when the survey ends, per language."""

    es: str = "¡Gracias por tus respuestas! Lamentamos que tu experiencia no haya sido buena: alguien de nuestro equipo se va a contactar contigo."
    pt: str = "Obrigado pelas suas respostas! Lamentamos que sua experiência não tenha sido boa: alguém da nossa equipe vai entrar em contato com você."
    en: str = "Thank you for your answers! We are sorry your experience was not good: someone from our team will contact you."


@dataclass(frozen=True)
class SurveysConfig:
    enabled: bool = True
    timezone: str = "America/Argentina/Buenos_Aires"
    tick_seconds: int = 60
    reminder_after_hours: int = 24
    #: An answer weighing this or less is a detractor answer (a question may set its own).
    detractor_weight: int = -50
    #: The detractor case's category: "Category" or "Category / Subcategory".
    detractor_category: str = "Post-sale / Survey"
    detractor_reply: DetractorReplyConfig = DetractorReplyConfig()


@dataclass(frozen=True)
class OutboxConfig:
    max_attempts: int = 8
    base_delay_seconds: float = 5.0
    max_delay_seconds: float = 3600.0
    lease_seconds: float = 120.0
    poll_seconds: float = 1.0
    concurrency: int = 8


@dataclass(frozen=True)
class CalendarConfig:
    """One business-hours calendar (``[[calendars]]``); see core.business_hours."""

    name: str = "default"
    timezone: str = "America/Argentina/Buenos_Aires"
    #: ISO 3166-1 alpha-2 code for public holidays (the ``holidays`` package); "" = none.
    country: str = ""
    subdivision: str = ""
    #: Each weekday's open spans, e.g. ["09:00-13:00", "14:00-18:00"]; [] = closed.
    mon: tuple[str, ...] = ("09:00-18:00",)
    tue: tuple[str, ...] = ("09:00-18:00",)
    wed: tuple[str, ...] = ("09:00-18:00",)
    thu: tuple[str, ...] = ("09:00-18:00",)
    fri: tuple[str, ...] = ("09:00-18:00",)
    sat: tuple[str, ...] = ()
    sun: tuple[str, ...] = ()
    #: Extra closed days, "YYYY-MM-DD".
    closed_days: tuple[str, ...] = ()
    #: Days open whatever the weekday or a holiday says: "YYYY-MM-DD HH:MM-HH:MM [HH:MM-HH:MM]".
    open_days: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlaPolicyConfig:
    """One SLA policy (``[[sla.policies]]``): the first whose every given list matches wins."""

    name: str = ""
    #: The calendar its targets count in ("" = ``[sla] calendar``).
    calendar: str = ""
    types: tuple[str, ...] = ()
    #: Category or subcategory names.
    categories: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    #: Organization names.
    organizations: tuple[str, ...] = ()
    #: Targets in business minutes; 0 = no such target.
    first_response_minutes: int = 0
    next_response_minutes: int = 0
    resolution_minutes: int = 0


@dataclass(frozen=True)
class SlaConfig:
    enabled: bool = True
    #: The calendar of the default policy, of policies that name none, and of the
    #: outside-hours notice.
    calendar: str = "default"
    #: The default policy's targets (business minutes; 0 = no such target).
    first_response_minutes: int = 240
    next_response_minutes: int = 480
    resolution_minutes: int = 2700
    #: The acknowledgement of a case opened outside hours says when the team opens.
    outside_hours_notice: bool = True
    #: Warn the assigned agent this long before a target is due (0 = no warnings).
    warn_before_minutes: int = 30
    #: How often the SLA watch looks for targets about to be due, or past it.
    sweep_seconds: int = 60
    #: The SLA report's Prometheus gauges cover cases opened in this many last days...
    report_metrics_days: int = 7
    #: ...computed by a periodic job this often (a scrape only reads them).
    report_refresh_seconds: int = 300
    policies: tuple[SlaPolicyConfig, ...] = ()


@dataclass(frozen=True)
class AssignmentConfig:
    #: Give each new case to an available agent automatically (manual assignment still wins).
    enabled: bool = False
    #: "round_robin" or "least_open".
    strategy: str = "round_robin"
    #: Open cases per agent at most, unless the agent's own capacity says otherwise.
    default_capacity: int = 10
    #: Reassign the open cases of an agent away (no console page, not /available) this long; 0 = never.
    reassign_after_minutes: int = 30
    #: How often unassigned and orphaned cases are looked at.
    sweep_seconds: int = 30


@dataclass(frozen=True)
class ContactsConfig:
    #: Phone numbers typed without a country code are numbers of this country (ISO 3166 code).
    phone_region: str = "AR"


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = DatabaseConfig()
    service: ServiceConfig = ServiceConfig()
    http: HttpConfig = HttpConfig()
    api: ApiConfig = ApiConfig()
    email: EmailConfig = EmailConfig()
    telegram: TelegramConfig = TelegramConfig()
    webchat: WebchatConfig = WebchatConfig()
    console: ConsoleConfig = ConsoleConfig()
    cases: CasesConfig = CasesConfig()
    kb: KbConfig = KbConfig()
    surveys: SurveysConfig = SurveysConfig()
    outbox: OutboxConfig = OutboxConfig()
    #: Business-hours calendars; none given = one "default", Monday to Friday 09:00-18:00.
    calendars: tuple[CalendarConfig, ...] = ()
    sla: SlaConfig = SlaConfig()
    assignment: AssignmentConfig = AssignmentConfig()
    contacts: ContactsConfig = ContactsConfig()
    #: Where the file came from, for error messages ("<defaults>" without one).
    source: str = field(default="<defaults>", compare=False)


#: Secrets that may come from the environment (which wins over the file).
SECRET_ENV: Mapping[str, str] = {
    "telegram.token": "POSVENTA_TELEGRAM_TOKEN",
    "telegram.webhook_secret": "POSVENTA_TELEGRAM_WEBHOOK_SECRET",
    "kb.api_key": "POSVENTA_KB_API_KEY",
    "kb.webhook_secret": "POSVENTA_KB_WEBHOOK_SECRET",
    "email.outbound.password": "POSVENTA_SMTP_PASSWORD",
    "api.tokens": "POSVENTA_API_TOKENS",
    "http.metrics_token": "POSVENTA_METRICS_TOKEN",
    "api.admin_tokens": "POSVENTA_API_ADMIN_TOKENS",
    "database.url": "POSVENTA_DATABASE_URL",
}
SECRET_KEYS = frozenset({"telegram.token", "telegram.webhook_secret", "kb.api_key", "kb.webhook_secret",
                         "email.outbound.password", "api.tokens", "http.metrics_token",
                         "api.admin_tokens"})
#: Keys that existed once: a config that still sets them is told what replaced them.
REMOVED_KEYS: Mapping[str, str] = {
    "webchat.behind_proxy": "was removed: list your proxy's addresses in [http] trusted_proxies instead",
}


def load_config(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or only defaults when None) and the environment into a ``Config``."""
    env = os.environ if env is None else env
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            if p.stat().st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"file is larger than {MAX_CONFIG_BYTES} bytes", file=source)
            data = p.read_bytes()
        except FileNotFoundError:
            raise ConfigError("file not found", file=source) from None
        except OSError as exc:
            raise ConfigError(f"cannot read file: {exc.strerror}", file=source) from None
        try:
            raw = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError("file is not UTF-8", file=source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", file=source) from None
        except RecursionError:
            # tomllib recurses once per nested array or inline table; a few thousand
            # brackets (well under MAX_CONFIG_BYTES) exhaust the stack.
            raise ConfigError("invalid TOML: arrays or tables nested too deeply", file=source) from None
    config = _build(Config, raw, prefix="", source=source)
    config = _apply_env(config, env, source)
    config = dataclasses.replace(config, source=source)
    validate(config)
    return config


def _build(cls: type, raw: Mapping[str, Any], *, prefix: str, source: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        # An empty key ("" = 1 is valid TOML) still gets a name the message can show.
        dotted = f"{prefix}{key}" if key else f'{prefix}""'
        if key not in fields:
            if dotted in REMOVED_KEYS:
                raise ConfigError(REMOVED_KEYS[dotted], key=dotted, file=source)
            kind = "section" if isinstance(value, dict) else "key"
            raise ConfigError(f"unknown {kind}", key=dotted, file=source)
        default = fields[key].default
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError("must be a table (section)", key=dotted, file=source)
            values[key] = _build(type(default), value, prefix=f"{dotted}.", source=source)
        else:
            values[key] = _coerce(value, default, dotted, source)
    return cls(**values)


def _coerce(value: Any, default: Any, key: str, source: str) -> Any:
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"must be {expected}, got {type(value).__name__}", key=key, file=source)

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise wrong("a list")
        item_type = type(default[0]) if default else _LIST_ITEM_TYPES.get(key, str)
        if dataclasses.is_dataclass(item_type):
            tables = []
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    raise ConfigError("must be a list of tables ([[...]])", key=key, file=source)
                tables.append(_build(item_type, item, prefix=f"{key}[{i}].", source=source))
            return tuple(tables)
        out = []
        for item in value:
            if item_type is int and (isinstance(item, bool) or not isinstance(item, int)):
                raise ConfigError("must be a list of integers", key=key, file=source)
            if item_type is str and not isinstance(item, str):
                raise ConfigError("must be a list of strings", key=key, file=source)
            out.append(item)
        return tuple(out)
    raise ConfigError("unsupported value", key=key, file=source)


_LIST_ITEM_TYPES: Mapping[str, type] = {
    "telegram.agents": int,
    "kb.categories": int,
    "calendars": CalendarConfig,
    "sla.policies": SlaPolicyConfig,
}


def _apply_env(config: Config, env: Mapping[str, str], source: str) -> Config:
    for key, var in SECRET_ENV.items():
        value = env.get(var)
        if value is None or value == "":
            continue
        if key in ("api.tokens", "api.admin_tokens"):
            parsed: Any = tuple(t.strip() for t in value.split(",") if t.strip())
        else:
            parsed = value
        config = _replace_dotted(config, key.split("."), parsed)
    return config


def _replace_dotted(obj: Any, parts: list[str], value: Any) -> Any:
    head, *rest = parts
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: _replace_dotted(getattr(obj, head), rest, value)})


def validate(config: Config) -> None:
    """Cross-field checks that need the whole config."""
    src = config.source

    def need(cond: bool, key: str, message: str) -> None:
        if not cond:
            raise ConfigError(message, key=key, file=src)

    need(config.service.log_level.upper() in LOG_LEVELS, "service.log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    need(config.email.smtp_log_level.upper() in LOG_LEVELS, "email.smtp_log_level",
         f"must be one of {', '.join(LOG_LEVELS)}")
    need(config.service.log_format in ("text", "json"), "service.log_format", 'must be "text" or "json"')
    for key in ("trusted_proxies", "metrics_allow_from"):
        for cidr in getattr(config.http, key):
            try:
                parse_networks([cidr])
            except ValueError:
                raise ConfigError(f"{cidr!r} is not an address or CIDR (10.0.0.0/8, ::1)", key=f"http.{key}",
                                  file=src) from None
    need(not config.http.metrics_token or len(config.http.metrics_token) >= 16, "http.metrics_token",
         "must be at least 16 characters")
    need(config.service.default_language in LANGUAGES, "service.default_language", f"must be one of {', '.join(LANGUAGES)}")
    need(config.cases.budget_mode in {m.value for m in BudgetMode}, "cases.budget_mode",
         f"must be one of {', '.join(m.value for m in BudgetMode)}")
    need(not config.cases.currency or is_currency(config.cases.currency), "cases.currency",
         "must be an ISO 4217 currency code (ARS, BRL, USD, EUR...) or empty")
    for name, port in (("http.port", config.http.port), ("email.listen_port", config.email.listen_port),
                       ("email.outbound.port", config.email.outbound.port)):
        need(0 <= port <= 65535, name, "must be a TCP port (0-65535)")
    if config.email.enabled:
        need(bool(config.email.domains), "email.domains", "list at least one support domain")
        need("@" in config.email.address, "email.address", "must be an email address")
        need(config.email.max_message_bytes > 0, "email.max_message_bytes", "must be positive")
        need(not (config.email.outbound.tls and config.email.outbound.starttls), "email.outbound.tls",
             "use either tls (implicit) or starttls, not both")
        if config.email.outbound.username:
            need(bool(config.email.outbound.password), "email.outbound.password",
                 "is required when email.outbound.username is set (or set POSVENTA_SMTP_PASSWORD)")
    if config.telegram.enabled:
        need(bool(config.telegram.token), "telegram.token",
             "is required when telegram is enabled (or set POSVENTA_TELEGRAM_TOKEN)")
        need(config.telegram.mode in ("polling", "webhook"), "telegram.mode", 'must be "polling" or "webhook"')
        if config.telegram.mode == "webhook":
            need(bool(config.telegram.webhook_secret), "telegram.webhook_secret",
                 "is required in webhook mode (or set POSVENTA_TELEGRAM_WEBHOOK_SECRET)")
        need(config.telegram.api_base_url.startswith(("http://", "https://")), "telegram.api_base_url",
             "must be an http(s) URL")
    if config.kb.enabled:
        need(config.kb.type == "discourse", "kb.type", 'must be "discourse"')
        need(config.kb.api_url.startswith(("http://", "https://")), "kb.api_url", "must be an http(s) URL")
        need(bool(config.kb.api_key), "kb.api_key", "is required when kb is enabled (or set POSVENTA_KB_API_KEY)")
        need(bool(config.kb.api_user), "kb.api_user", "is required when kb is enabled")
        need(config.kb.sync_interval_seconds >= 1, "kb.sync_interval_seconds", "must be at least 1")
    need(0 <= config.kb.min_score <= 100, "kb.min_score", "must be between 0 and 100")
    need(1 <= config.kb.suggest_limit <= 10, "kb.suggest_limit", "must be between 1 and 10")
    try:
        ZoneInfo(config.surveys.timezone)
    # OSError: the name is looked up as a file, so "America" (a directory) raises
    # IsADirectoryError and a very long name ENAMETOOLONG instead of "not found".
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"unknown time zone {config.surveys.timezone!r}", key="surveys.timezone", file=src) from None
    need(config.surveys.tick_seconds >= 1, "surveys.tick_seconds", "must be at least 1")
    need(1 <= config.surveys.reminder_after_hours <= 24 * 365, "surveys.reminder_after_hours",
         "must be between 1 and 8760")
    need(-100 <= config.surveys.detractor_weight <= 100, "surveys.detractor_weight",
         "must be a weight from -100 to 100")
    parts = [p.strip() for p in config.surveys.detractor_category.split("/")]
    need(len(parts) <= 2 and all(parts) and all(len(p) <= 120 for p in parts), "surveys.detractor_category",
         'must be "Category" or "Category / Subcategory" (each 1-120 characters)')
    for lang in LANGUAGES:
        reply = getattr(config.surveys.detractor_reply, lang)
        need(bool(reply.strip()) and len(reply) <= 1000, f"surveys.detractor_reply.{lang}",
             "must be a message of 1-1000 characters")
    need(config.outbox.max_attempts >= 1, "outbox.max_attempts", "must be at least 1")
    need(config.outbox.concurrency >= 1, "outbox.concurrency", "must be at least 1")
    need(config.webchat.max_frame_bytes >= 256, "webchat.max_frame_bytes", "must be at least 256")
    for key in ("messages_per_minute_per_session", "messages_per_minute_per_ip", "new_sessions_per_minute_per_ip",
                "frames_per_second_per_connection", "max_rejected_frames", "max_connections_per_ip", "max_connections_per_session",
                "hello_timeout_seconds", "idle_timeout_seconds", "heartbeat_seconds", "history_limit",
                "max_text_chars"):
        need(getattr(config.webchat, key) >= 1, f"webchat.{key}", "must be at least 1")
    need(config.webchat.email_fallback_after_seconds >= 0, "webchat.email_fallback_after_seconds",
         "must be 0 (off) or more")
    need(1 <= config.webchat.max_upload_bytes <= MAX_UPLOAD_BYTES, "webchat.max_upload_bytes",
         f"must be from 1 to {MAX_UPLOAD_BYTES} bytes")
    for kind in config.webchat.upload_types:
        need(kind in UPLOAD_KINDS, "webchat.upload_types",
             f"{kind!r} is not a kind of file; list some of {', '.join(map(repr, UPLOAD_KINDS))}")
    need(config.webchat.abandoned_session_hours >= 0, "webchat.abandoned_session_hours", "must be 0 (off) or more")
    for origin in config.webchat.allowed_origins:
        need(origin == "*" or origin.startswith(("http://", "https://")), "webchat.allowed_origins",
             f"{origin!r} is not an origin (https://shop.example.com, https://*.example.com or *)")
    need(1 <= config.cases.reopen_days <= 3650, "cases.reopen_days", "must be between 1 and 3650")
    for event in ("answer_sent", "closed"):
        for language in LANGUAGES:
            key = f"notice_{event}_{language}"
            problem = notice_template_problem(getattr(config.cases, key))
            need(problem is None, f"cases.{key}", problem or "")
    import phonenumbers

    need(config.contacts.phone_region.upper() in phonenumbers.SUPPORTED_REGIONS, "contacts.phone_region",
         "must be a two-letter country code (AR, BR, US...)")
    for token in config.api.tokens:
        need(len(token) >= 16, "api.tokens", "each token must be at least 16 characters")
    for token in config.api.admin_tokens:
        need(len(token) >= 16, "api.admin_tokens", "each token must be at least 16 characters")
    _validate_sla(config)
    need(config.assignment.strategy in ("round_robin", "least_open"), "assignment.strategy",
         'must be "round_robin" or "least_open"')
    need(1 <= config.assignment.default_capacity <= 10_000, "assignment.default_capacity",
         "must be from 1 to 10000 open cases")
    need(config.assignment.reassign_after_minutes >= 0, "assignment.reassign_after_minutes",
         "must be 0 (never) or more")
    need(config.assignment.sweep_seconds >= 1, "assignment.sweep_seconds", "must be at least 1")
    need(config.sla.sweep_seconds >= 1, "sla.sweep_seconds", "must be at least 1")
    need(1 <= config.sla.report_metrics_days <= 366, "sla.report_metrics_days", "must be from 1 to 366")
    need(config.sla.report_refresh_seconds >= 1, "sla.report_refresh_seconds", "must be at least 1")
    need(config.sla.warn_before_minutes >= 0, "sla.warn_before_minutes", "must be 0 (no warnings) or more")


def _validate_sla(config: Config) -> None:
    """Calendars and policies are built once here, so that a bad one stops start-up."""
    from posventa.core.sla import build_sla_setup  # the SLA rules live there, in one place

    try:
        build_sla_setup(config)
    except ValidationError as exc:
        raise ConfigError(str(exc), key=exc.field, file=config.source) from None


def notice_template_problem(template: str) -> str | None:
    """Why a customer notice text cannot be used, or None. Its only placeholders are
    {number}, {title} and {days}; anything else would fail at the moment of sending."""
    import string

    if len(template) > 2000:
        return "must be at most 2000 characters"
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"is not a valid text with placeholders ({exc}); write {{{{ and }}}} for braces"
    unknown = [f for f in fields if f not in ("number", "title", "days")]
    if unknown:
        return f"has an unknown placeholder {{{unknown[0]}}}; use {{number}}, {{title}} or {{days}}"
    return None


def redacted(config: Config) -> dict[str, Any]:
    """The config as a dict with every secret replaced, safe to print or log."""
    out = dataclasses.asdict(config)
    for key in SECRET_KEYS:
        section = out
        *path, last = key.split(".")
        for part in path:
            section = section[part]
        if section.get(last):
            section[last] = "***"
    if "@" in out["database"]["url"] and ":" in out["database"]["url"].split("@")[0]:
        scheme, rest = out["database"]["url"].split("://", 1)
        creds, host = rest.split("@", 1)
        out["database"]["url"] = f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return out
