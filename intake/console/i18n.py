"""The console in es, pt and en: gettext catalogs (Babel), the request's language, and
dates and numbers in the user's locale and time zone.

Templates mark every user-visible string ``{{ _("...") }}`` (the Jinja2 i18n extension,
new-style gettext: ``%`` is written ``%%``); Python code marks its strings with
``N_("...")`` and translates them where they are shown with ``gettext``. A message made
in Python before the request's language is at hand (a form error, an error page, a
refusal raised inside a store) is ``_l("... %(name)s ...", name=value)``: a
``ConsoleText`` that the page translates where it shows it (the ``tr`` filter,
``ConsoleLocales.translate``) and that reads as English anywhere else (logs, the CLI).
English is the source language. The catalogs live in ``locale/<lang>/LC_MESSAGES/console.po``, compiled
to ``console.mo`` beside them and committed (``scripts/i18n`` extracts, updates and
compiles; a test checks that every ``.mo`` matches its ``.po`` and that no template text
is left unmarked).

Which language a request gets: the user's profile choice, else the browser's
``Accept-Language`` (best of es, pt, en), else English (the source language). The choice
is kept in a context variable for the request's task, set by the console's middleware.
"""

from __future__ import annotations

import gettext as gettext_module
import math
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_timedelta
from babel.numbers import format_decimal
from babel.support import Translations

LANGUAGES = ("es", "pt", "en")
LANGUAGE_NAMES = {"es": "Español", "pt": "Português", "en": "English"}
DOMAIN = "console"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


@dataclass(frozen=True, slots=True)
class RequestLocale:
    """What one request is shown in."""

    language: str
    translations: gettext_module.NullTranslations
    timezone: tzinfo


def N_(message: str) -> str:  # noqa: N802 (the gettext convention, so extraction finds it)
    """Mark a string for translation where it is defined; translate it where it is shown."""
    return message


#: The words the console's scripts write themselves (static/*.js), by the key a script
#: asks for (``t("live")``): every page carries them translated for its reader in a JSON
#: block (base.html, ``id="console-texts"``), so the .po files stay their one source.
#: Placeholders are ``%(name)s``, filled in by the script. The i18n test fails on a key a
#: script uses that is missing here, and on a text a script writes without one.
SCRIPT_TEXTS: dict[str, str] = {
    # the live stream's state (inbox and case pages)
    "live": N_("live"),
    "reconnecting": N_("reconnecting…"),
    # SLA countdowns, kept ticking between refreshes (the server renders the same: countdown())
    "in": N_("in %(span)s"),
    "overdue": N_("%(span)s overdue"),
    "span_days": N_("%(days)sd %(hours)sh"),
    "span_hours": N_("%(hours)sh %(minutes)sm"),
    "span_minutes": N_("%(minutes)sm"),
    # the KB and macro Markdown editor's toolbar (EasyMDE)
    "bold": N_("Bold"),
    "italic": N_("Italic"),
    "list": N_("List"),
    "list_button": N_("• List"),
    "numbered_list": N_("Numbered list"),
    "numbered_list_button": N_("1. List"),
    "link": N_("Link"),
    "image": N_("Image"),
    "preview": N_("Preview"),
    "image_upload_failed": N_("The image could not be uploaded."),
    # the editor's status bar and its own checks (EasyMDE fills in the #...# names)
    "image_status": N_("Attach images by dragging and dropping or pasting them."),
    "image_drag": N_("Drop the image to upload it."),
    "image_dropped": N_("Uploading #images_names#…"),
    "image_progress": N_("Uploading #file_name#: #progress#%"),
    "image_uploaded": N_("Uploaded #image_name#"),
    "image_no_file": N_("Choose a file."),
    "image_type": N_("This image type is not allowed."),
    "image_too_big": N_("The image #image_name# is too big (#image_size#); at most #image_max_size#."),
    "image_import_error": N_("The image #image_name# could not be uploaded."),
    "size_units": N_(" B, KB, MB"),
    # the manager charts' series
    "executed": N_("Executed"),
    "expired": N_("Expired"),
    "normalized_average": N_("Normalized average (-100..100)"),
    "average_total": N_("Average total"),
    "answers": N_("Answers"),
}


@dataclass(frozen=True, slots=True)
class ConsoleText:
    """A console message (English source, ``%(name)s`` placeholders) and its values,
    translated where it is shown. A value may itself be a ConsoleText (a label)."""

    message: str
    params: tuple[tuple[str, object], ...] = ()
    #: The msgctxt: a core refusal's stable code (``core.errors.ErrorText``).
    context: str | None = None

    def render(self, gettext: Callable[[str], str],
               pgettext: Callable[[str, str], str] | None = None) -> str:
        text = pgettext(self.context, self.message) if self.context and pgettext else gettext(self.message)
        if not self.params:
            return text
        return text % {k: v.render(gettext, pgettext) if isinstance(v, ConsoleText) else v for k, v in self.params}

    def __str__(self) -> str:
        return self.render(lambda message: message)


def _l(message: str, **params: object) -> ConsoleText:
    """A message to translate when it is shown (see the module doc)."""
    return ConsoleText(message, tuple(params.items()))


def refusal(kind: type[web.HTTPException], message: ConsoleText, **kwargs: Any) -> web.HTTPException:
    """An HTTP error whose console error page says ``message`` in the reader's language
    (its plain ``text``, for any other reader, is the English)."""
    exc = kind(text=str(message), **kwargs)
    exc.console_text = message  # type: ignore[attr-defined]
    return exc


class ConsoleLocales:
    def __init__(self, *, default_language: str, default_timezone: str) -> None:
        self.default_language = default_language if default_language in LANGUAGES else "en"
        self.default_timezone = ZoneInfo(default_timezone)
        self._translations: dict[str, gettext_module.NullTranslations] = {"en": gettext_module.NullTranslations()}
        for lang in LANGUAGES:
            if lang != "en":
                # Translations.load answers NullTranslations when the .mo is missing: a
                # fresh clone without compiled catalogs would be silently English, so say so.
                if not (LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.mo").is_file():
                    raise FileNotFoundError(f"console translations missing: {LOCALE_DIR}/{lang} (run scripts/i18n)")
                self._translations[lang] = Translations.load(str(LOCALE_DIR), [lang], DOMAIN)
        self._current: ContextVar[RequestLocale] = ContextVar("console_locale", default=self.locale(None, None))

    def locale(self, language: str | None, timezone: str | None) -> RequestLocale:
        lang = language if language in LANGUAGES else self.default_language
        try:
            zone: tzinfo = ZoneInfo(timezone) if timezone else self.default_timezone
        except (KeyError, ValueError):
            zone = self.default_timezone
        return RequestLocale(lang, self._translations[lang], zone)

    def negotiate(self, accept_language: str | None) -> str | None:
        """The best of es, pt and en for an ``Accept-Language`` header, if any fits."""
        if not accept_language:
            return None
        wanted = []
        for part in accept_language.split(",")[:20]:
            tag, _, params = part.strip().partition(";")
            quality = 1.0
            if params.strip().startswith("q="):
                try:
                    quality = float(params.strip()[2:])
                except ValueError:
                    continue
            if tag:
                wanted.append((quality, tag.strip()))
        for _quality, tag in sorted(wanted, key=lambda w: -w[0]):
            try:
                lang = Locale.parse(tag.replace("-", "_")).language
            except (ValueError, UnknownLocaleError):
                continue
            if lang in LANGUAGES:
                return lang
        return None

    # --- the current request ---------------------------------------------------------------

    def use(self, locale: RequestLocale) -> None:
        self._current.set(locale)

    @property
    def current(self) -> RequestLocale:
        return self._current.get()

    def gettext(self, message: str) -> str:
        return self._current.get().translations.gettext(message)

    def pgettext(self, context: str, message: str) -> str:
        return self._current.get().translations.pgettext(context, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._current.get().translations.ngettext(singular, plural, n)

    def translate(self, value: object) -> str:
        """A ``ConsoleText`` in the request's language; any other text (stored data, a
        message from core) as it is."""
        if isinstance(value, ConsoleText):
            return value.render(self.gettext, self.pgettext)
        return "" if value is None else str(value)

    def script_texts(self) -> dict[str, str]:
        """``SCRIPT_TEXTS`` in the request's language (base.html hands them to the scripts)."""
        return {key: self.gettext(text) for key, text in SCRIPT_TEXTS.items()}

    # --- formatting (Babel) -----------------------------------------------------------------

    def countdown(self, value: str | datetime | None, now: datetime) -> str:
        """"in 1h 20m" or "2d 3h overdue" (wall-clock time left to an SLA due time) in the
        user's language; console.js keeps it ticking with the same words (SCRIPT_TEXTS)."""
        if not value:
            return ""
        due = datetime.fromisoformat(value) if isinstance(value, str) else value
        left = int((due - now).total_seconds() // 60)
        days, rest = divmod(abs(left), 1440)
        hours, minutes = divmod(rest, 60)
        words = SCRIPT_TEXTS
        span = words["span_days"] if days else words["span_hours"] if hours else words["span_minutes"]
        span = self.gettext(span) % {"days": days, "hours": hours, "minutes": minutes}
        text = words["in"] if left >= 0 else words["overdue"]
        return self.gettext(text) % {"span": span}

    def datetime(self, value: str | datetime | None, *, seconds: bool = False) -> str:
        """A moment in the user's time zone, written the user's locale's way."""
        if not value:
            return ""
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return value
        current = self._current.get()
        fmt = "medium" if seconds else "short"
        if value.tzinfo is None:
            return format_datetime(value, fmt, locale=current.language)
        text = format_datetime(value, fmt, tzinfo=current.timezone, locale=current.language)
        return f"{text} {value.astimezone(current.timezone).strftime('%Z')}"

    def date(self, value: object) -> str:
        if not value:
            return ""
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return value
        return format_date(value, "medium", locale=self._current.get().language)  # type: ignore[arg-type]

    def duration(self, seconds: float) -> str:
        """A wait ("3 seconds", "15 minutos") in the user's language, rounded up."""
        wait = timedelta(seconds=math.ceil(seconds) if seconds < 90 else 60 * math.ceil(seconds / 60))
        return format_timedelta(wait, threshold=1.5, locale=self._current.get().language)

    def number(self, value: float | int | Decimal | None, *, places: int | None = None) -> str:
        if value is None:
            return ""
        pattern = None if places is None else "#,##0." + "0" * places if places else "#,##0"
        return format_decimal(value, format=pattern, locale=self._current.get().language)
