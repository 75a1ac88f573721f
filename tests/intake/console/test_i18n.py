"""The console in es, pt and en: no template text left unmarked for translation, the
catalogs complete and compiled, the request's language (profile, then Accept-Language),
and dates and numbers in the user's locale and time zone."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from intake.console.i18n import ConsoleLocales
from tests.intake.console.harness import SQLITE_ONLY
from tests.support import REPO

TEMPLATES = REPO / "intake" / "console" / "templates"
#: A block assignment holds markup (attributes), not text anyone reads where it stands.
_SET_BLOCK = re.compile(r"\{%-?\s*set\s+\w+\s*-?%\}.*?\{%-?\s*endset\s*-?%\}", re.S)
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_RAW = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
_TAG = re.compile(r"<[^>]*>", re.S)
_ENTITY = re.compile(r"&#?\w+;")
_SHOWN_ATTRS = re.compile(r'\b(placeholder|title|aria-label|alt|data-confirm)="([^"]*)"')
_LETTER = re.compile(r"[^\W\d_]")


def unmarked(source: str) -> list[str]:
    """Literal text a person would read that is not inside ``{{ _(...) }}``."""
    bare = _RAW.sub("", _JINJA.sub("\x01", _SET_BLOCK.sub("", source)))
    found = [value for tag in _TAG.findall(bare) for _name, value in _SHOWN_ATTRS.findall(tag)]
    found += _TAG.sub("\x01", bare).split("\x01")
    return [t.replace("\x01", " ").strip() for t in found if _LETTER.search(_ENTITY.sub("", t))]


def test_no_template_text_is_left_unmarked():
    left = {p.name: unmarked(p.read_text(encoding="utf-8")) for p in sorted(TEMPLATES.glob("*.html"))}
    assert {name: texts for name, texts in left.items() if texts} == {}


def test_the_check_itself_finds_unmarked_text():
    assert unmarked('<p title="Hello {{ x }}">Save {{ _("Cancel") }}</p><script>let a = "b";</script>') == [
        "Hello", "Save"]


def test_catalogs_are_complete_and_compiled():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "i18n"), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_accept_language_and_formatting_in_the_users_locale():
    locales = ConsoleLocales(default_language="es", default_timezone="America/Sao_Paulo")
    assert locales.negotiate("pt-BR,pt;q=0.9,en;q=0.8") == "pt"
    assert locales.negotiate("fr-FR, en-GB;q=0.5") == "en"
    assert locales.negotiate("de, fr") is None and locales.negotiate("") is None
    assert locales.negotiate("x" * 500 + ",;q=abc, es") == "es"
    moment = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    locales.use(locales.locale("pt", None))
    assert locales.gettext("Inbox") == "Caixa de entrada"
    assert locales.datetime(moment).startswith("01/03/2026 12:30")  # São Paulo, day first
    assert locales.number(1234567.5, places=2) == "1.234.567,50"
    locales.use(locales.locale("en", "Europe/Madrid"))
    assert locales.gettext("Inbox") == "Inbox"
    assert locales.datetime(moment).startswith("3/1/26, 4:30")
    assert locales.number(1234567.5, places=2) == "1,234,567.50"
    locales.use(locales.locale("es", "Not/AZone"))  # a stale zone falls back, never fails
    assert locales.gettext("Inbox") == "Bandeja"


@SQLITE_ONLY
@pytest.mark.parametrize("header, label", [("pt-BR,pt;q=0.9", "Caixa de entrada"), ("es-AR", "Bandeja"),
                                           ("en-US", "Inbox")])
async def test_the_browser_language_is_the_default(running, agent, header, label):
    status, page = await agent.get("/console/inbox", headers={"Accept-Language": header})
    assert status == 200 and f">{label}</a>" in page


@SQLITE_ONLY
async def test_the_profile_language_wins_over_the_browser(running, agent):
    status, page = await agent.post("/console/profile/locale", {"language": "es", "timezone": "America/Bogota"},
                                    headers={"Accept-Language": "pt-BR"})
    assert status == 200
    status, page = await agent.get("/console/inbox", headers={"Accept-Language": "pt-BR"})
    assert ">Bandeja</a>" in page and 'lang="es"' in page
    status, page = await agent.post("/console/profile/locale", {"language": "xx", "timezone": "Mars/Base"})
    assert status == 422 and "language" in page
