"""The console in es, pt and en: no template text left unmarked for translation, nor any
text the console's Python code puts on a page (errors, notices, refusals), the catalogs
complete and compiled, the request's language (profile, then Accept-Language),
and dates and numbers in the user's locale and time zone."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from datetime import UTC, datetime

import jinja2
import pytest

from posventa.intake.console.app import per_request_filters
from posventa.intake.console.i18n import ConsoleLocales, _l
from tests.intake.console.harness import SQLITE_ONLY
from tests.support import REPO, FakeClock

CONSOLE = REPO / "intake" / "console"
TEMPLATES = CONSOLE / "templates"
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


def test_a_label_of_a_literal_is_in_each_requests_language():
    """Jinja calls a filter of a literal (``'breached'|label``) once, when it compiles the
    template, unless the filter says it needs the render: the label must not keep the first
    request's language, nor a countdown that moment's time."""
    locales = ConsoleLocales(default_language="es", default_timezone="UTC")
    env = jinja2.Environment(autoescape=True)
    env.filters.update(per_request_filters(locales, FakeClock()))
    template = env.from_string("{{ 'breached'|label }} · {{ 'sla_paused'|label }}")
    shown = []
    for language in ("es", "pt", "en"):
        locales.use(locales.locale(language, None))
        shown.append(template.render())
    assert shown == ["Vencido · En pausa: esperando al cliente", "Estourado · Pausado: aguardando o cliente",
                     "Breached · Paused: waiting for the customer"]


def test_each_label_code_is_defined_once():
    """A code written twice in the LABELS literal silently keeps only its last text (the
    SLA's "paused" once showed the survey status's)."""
    tree = ast.parse((CONSOLE / "labels.py").read_text(encoding="utf-8"))
    [table] = [node.value for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)
               and getattr(node.target, "id", None) == "LABELS"]
    codes = [key.value for key in table.keys]
    assert sorted({c for c in codes if codes.count(c) > 1}) == []


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


# --- texts made in Python ------------------------------------------------------------------

#: Calls that mark a text for translation (scripts/i18n extracts them).
_MARKERS = {"_l", "N_", "gettext", "ngettext"}
#: Refusals whose message a console page shows (``forms.message_of``, the error page).
_REFUSALS = {"NotFound", "ValidationError", "DomainError", "InvalidTransition"}
#: Where a console text reaches a page: an HTTP error's text, a page's error or notice.
_TEXT_KEYWORDS = {"text", "error", "notice", "message"}


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(_LETTER.search(node.value)))


def unmarked_python(source: str) -> list[str]:
    """Literal texts the console's Python code puts on a page without marking them: HTTP
    errors' text, refusals raised with a message, form errors, the error/login/profile
    pages' message, tables of notices and labels."""
    found: list[ast.AST] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None \
                and any(name in ast.unparse(node.type) for name in (*_REFUSALS, "Error")):
            # A core refusal shown as str(exc) skips its translation (forms.message_of).
            found += [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                      and n.func.id == "str" and [ast.unparse(a) for a in n.args] == [node.name]]
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in _MARKERS:
                continue
            if name.startswith("HTTP") or name in _REFUSALS or name.endswith("_page"):
                found += [kw.value for kw in node.keywords if kw.arg in _TEXT_KEYWORDS and _is_text(kw.value)]
            if name in _REFUSALS and node.args and _is_text(node.args[0]):
                found.append(node.args[0])
            if name == "error_page" and len(node.args) >= 3 and _is_text(node.args[2]):
                found.append(node.args[2])
            if name == "setdefault" and "errors" in ast.unparse(func).lower() and len(node.args) == 2 \
                    and _is_text(node.args[1]):
                found.append(node.args[1])
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and "errors" in ast.unparse(target.value).lower() \
                        and _is_text(node.value):
                    found.append(node.value)
                if ast.unparse(target).upper().endswith(("NOTICES", "LABELS")) and isinstance(node.value, ast.Dict):
                    found += [v for v in node.value.values if _is_text(v)]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in ("notice", "message"):
                    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                            and isinstance(value.func.value, ast.Dict):
                        value = value.func.value  # {"saved": "..."}.get(done)
                    inner = value.values if isinstance(value, ast.Dict) else [value]
                    found += [v for v in inner if _is_text(v)]
    return [ast.unparse(n) for n in found]


def test_no_python_side_console_text_is_left_unmarked():
    left = {p.name: unmarked_python(p.read_text(encoding="utf-8")) for p in sorted(CONSOLE.glob("*.py"))}
    assert {name: texts for name, texts in left.items() if texts} == {}


def test_the_python_check_itself_finds_unmarked_text():
    source = """
raise web.HTTPForbidden(text="Nope")
raise NotFound(f"no case {n}")
raise ValidationError(_l("marked"), field="x")
form.errors["x"] = "required"
errors.setdefault("date", "too long")
return login_page(request, error="Wrong")
NOTICES = {"a": "Saved.", "b": N_("Kept.")}
page = {"notice": {"saved": "Stored."}.get(done), "count": "3 items"}
try:
    merge()
except DomainError as exc:
    form.errors["source"] = str(exc)
    log.info("refused: %s", exc)
"""
    assert sorted(unmarked_python(source)) == sorted(["'Nope'", "f'no case {n}'", "'required'", "'too long'",
                                                      "'Wrong'", "'Saved.'", "'Stored.'", "str(exc)"])


def test_python_side_texts_are_translated_where_shown():
    locales = ConsoleLocales(default_language="en", default_timezone="UTC")
    message = _l("at most %(max)d characters", max=5)
    assert str(message) == "at most 5 characters"  # logs and the CLI read English
    locales.use(locales.locale("pt", None))
    assert locales.translate(message) == "no máximo 5 caracteres"
    nested = _l("This page is for the %(role)s role.", role=_l("Manager"))
    assert locales.translate(nested) == "Esta página é para a função Gerente."
    assert locales.translate("a customer's <b>text</b>") == "a customer's <b>text</b>"  # data stays as it is
    assert locales.duration(900) == "15 minutos"
    locales.use(locales.locale("es", None))
    assert locales.translate(message) == "como máximo 5 caracteres" and locales.duration(1) == "1 segundo"


@SQLITE_ONLY
async def test_python_side_messages_reach_the_page_in_the_users_language(running, agent):
    status, page = await agent.get("/console/attachments/987654", headers={"Accept-Language": "pt-BR"})
    assert status == 404 and "esse anexo não existe" in page
    status, page = await agent.post("/console/cases/new", {"title": "x", "description": "y", "type": "request",
                                                           "contact_name": "Ana", "case_date": "ayer"},
                                    headers={"Accept-Language": "es"})
    assert status == 422 and "Indica la fecha y hora en que el cliente se comunicó." in page
    status, page = await agent.post("/console/cases/new", {"title": "x", "description": "y", "type": "request",
                                                           "contact_name": "Ana", "category_id": "x"},
                                    headers={"Accept-Language": "es"})
    assert status == 422 and "debe ser un número entero" in page
    status, page = await agent.post("/console/cases/1/reply", {"text": "x"}, csrf=False,
                                    headers={"Accept-Language": "pt-BR"})
    assert status == 403 and "O formulário expirou ou não veio deste console." in page


@SQLITE_ONLY
async def test_the_case_pages_tabs_are_translated(running, agent):
    from posventa.core.cases import NewCase

    case = await running.service.cases.create_case(NewCase(case_type="request", title="x", description="y",
                                                           contact_name="Ana"), actor="agent:agent1")
    status, page = await agent.get(f"/console/cases/{case['number']}", headers={"Accept-Language": "pt-BR"})
    assert status == 200
    assert re.search(r'id="tab-history"[^>]*>Atividade e histórico</a>', page)
    assert re.search(r'id="tab-kb"[^>]*>Base de conhecimento</a>', page)


# --- texts the console's scripts write -----------------------------------------------------

STATIC = CONSOLE / "static"
_JS_STRING = re.compile(r""""((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)'""")
_JS_COMMENT = re.compile(r"^\s*//[^\n]*|\s//\s[^\n]*", re.M)
#: Where a script's string is something a person reads: text and titles it sets, labels,
#: messages it shows or reports.
_JS_SINK = re.compile(r"(?:textContent|innerText|placeholder)\s*=\s*$|(?:\btitle|\btext|\blabel|\bbody)\s*:\s*$"
                      r"|(?:onError|confirm|alert|Notification)\(\s*$")
#: Words a script hands to the browser, not to a person (header and API names).
_JS_CODE_WORDS = {"use strict", "Accept", "Content-Type", "X-CSRF-Token", "Notification", "Enter"}


def untranslated_script(source: str) -> list[str]:
    """Literal texts a script shows without going through ``t("key")`` (SCRIPT_TEXTS):
    strings at a text sink (textContent, title:, label:, onError(...)) longer than one
    character, and anywhere a capitalised word, two words, an ellipsis or a non-ASCII
    letter, a word joined to others by a space (what prose looks like; selectors, classes,
    event and key names do not)."""
    code = _JS_COMMENT.sub("", source)
    found = []
    for match in _JS_STRING.finditer(code):
        value, before = match.group(1) or match.group(2) or "", code[max(0, match.start() - 40):match.start()]
        if re.search(r"\bt\(\s*$", before) or not _LETTER.search(value) or value in _JS_CODE_WORDS:
            continue
        prose = (re.search(r"\b[A-Z][a-z]+\b", value) or re.search(r"[^\W\d_]\s+[^\W\d_]", value)
                 or re.search(r"^[^\W\d_]+\s|\s[^\W\d_]+$", value)  # "in " + span, span + " overdue"
                 or "…" in value or re.search(r"[^\x00-\x7f]", value))
        if prose or (_JS_SINK.search(before) and len(value) > 1):
            found.append(value)
    return found


def test_no_script_text_is_left_untranslated():
    left = {p.name: untranslated_script(p.read_text(encoding="utf-8")) for p in sorted(STATIC.glob("*.js"))}
    assert {name: texts for name, texts in left.items() if texts} == {}


def test_the_script_check_itself_finds_untranslated_text():
    source = """
      status.textContent = "live";  // a comment with "Words in it"
      el.textContent = t("live");
      const b = { name: "bold", title: "Bold", text: "B" };
      onError("The image could not be uploaded.");
      return minutes >= 0 ? "in " + span : span + " overdue";
      fetch(url, { headers: { "Accept": "text/html" } }).querySelector(".case[data-live]");
      x.textContent = "reconnecting…";
    """
    assert untranslated_script(source) == ["live", "Bold", "The image could not be uploaded.", "in ", " overdue",
                                           "reconnecting…"]
    assert untranslated_script("el.title = 'x'; a = 'Cerrar caso'; b = \"añadir\"") == ["Cerrar caso", "añadir"]


def test_every_key_a_script_asks_for_is_in_the_catalogue_and_every_entry_is_used():
    from posventa.intake.console.i18n import SCRIPT_TEXTS

    sources = "\n".join(p.read_text(encoding="utf-8") for p in sorted(STATIC.glob("*.js")))
    asked = set(re.findall(r'\bt\(\s*"(\w+)"', sources))
    assert asked - SCRIPT_TEXTS.keys() == set()
    assert {key for key in SCRIPT_TEXTS if f'"{key}"' not in sources} == set()


def test_script_texts_and_countdowns_in_the_users_language():
    locales = ConsoleLocales(default_language="en", default_timezone="UTC")
    now = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    expected = {
        "en": ("live", "in 1h 20m", "2d 3h overdue", "in 5m", "Bold"),
        "es": ("en vivo", "en 1 h 20 min", "vencido hace 2 d 3 h", "en 5 min", "Negrita"),
        "pt": ("ao vivo", "em 1 h 20 min", "vencido há 2 d 3 h", "em 5 min", "Negrito"),
    }
    for lang, (live, soon, late, minutes, bold) in expected.items():
        locales.use(locales.locale(lang, None))
        texts = locales.script_texts()
        assert (texts["live"], texts["bold"]) == (live, bold)
        assert locales.countdown("2026-03-01T16:50:00+00:00", now) == soon
        assert locales.countdown(datetime(2026, 2, 27, 12, 30, tzinfo=UTC), now) == late
        assert locales.countdown("2026-03-01T15:35:59+00:00", now) == minutes
        assert all(texts.values()) and texts.keys() == locales.script_texts().keys()


@SQLITE_ONLY
async def test_every_page_carries_the_script_texts_in_its_readers_language(running, agent):
    import json

    status, page = await agent.get("/console/inbox", headers={"Accept-Language": "pt-BR"})
    assert status == 200
    block = re.search(r'<script type="application/json" id="console-texts">(.*?)</script>', page, re.S)
    texts = json.loads(block.group(1))
    assert texts["live"] == "ao vivo" and texts["image"] == "Imagem" and texts["in"] == "em %(span)s"


# --- core's refusals, shown on console pages -------------------------------------------------

CORE = REPO / "core"
#: The core modules whose refusals reach console pages (contacts, organizations, merges,
#: macros, calendars, cases and their workflow): each says what it refuses with
#: ``explain(code, template, ...)``, so that the console can word it in the reader's language.
EXPLAINED_CORE = (*sorted((CORE / "contacts").glob("*.py")), CORE / "macros.py", CORE / "calendars.py",
                  CORE / "business_hours.py", CORE / "cases.py", CORE / "workflow.py")
_CORE_REFUSALS = {"DomainError", "NotFound", "ValidationError", "InvalidTransition", "CalendarError", "Conflict"}


def unexplained_refusals(source: str) -> list[str]:
    """``raise Refusal("text")`` (a literal or f-string message, not ``explain(...)``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            first = node.exc.args[0]
            if name in _CORE_REFUSALS and (isinstance(first, ast.JoinedStr) or (
                    isinstance(first, ast.Constant) and isinstance(first.value, str))):
                found.append(ast.unparse(first))
    return found


def explained_codes(source: str) -> list[tuple[str, str]]:
    return [(node.args[0].value, node.args[1].value) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "explain"
            and len(node.args) >= 2 and all(isinstance(a, ast.Constant) for a in node.args[:2])]


def test_core_refusals_shown_on_the_console_are_explained():
    left = {p.name: unexplained_refusals(p.read_text(encoding="utf-8")) for p in EXPLAINED_CORE}
    assert {name: texts for name, texts in left.items() if texts} == {}
    assert unexplained_refusals('raise NotFound(f"case {n} not found")\nraise ValidationError("no", field="x")\n'
                                'raise NotFound(explain("case_not_found", "case %(n)s not found", n=n))\n'
                                'raise ValidationError(exc.error_text or str(exc))') == [
        "f'case {n} not found'", "'no'"]


def test_each_refusal_code_has_one_wording():
    """A code is what a translation (and a client) keys on: one template per code,
    across core, so that a translation never fits two different messages."""
    wordings: dict[str, set[str]] = {}
    for path in sorted(CORE.rglob("*.py")):
        for code, template in explained_codes(path.read_text(encoding="utf-8")):
            assert re.fullmatch(r"[a-z][a-z0-9_]*", code), code
            wordings.setdefault(code, set()).add(template)
    assert len(wordings) > 80
    assert {code: t for code, t in wordings.items() if len(t) > 1} == {}


def test_a_core_refusal_reads_english_outside_the_console_and_the_readers_language_inside():
    from posventa.core.errors import ValidationError, explain
    from posventa.core.workflow import check_transition
    from posventa.intake.console.forms import message_of

    exc = ValidationError(explain("contact_erased", "contact %(id)s was erased", id=7), field="contact_id")
    assert str(exc) == "contact 7 was erased" and exc.code == "contact_erased" and exc.field == "contact_id"
    locales = ConsoleLocales(default_language="en", default_timezone="UTC")
    locales.use(locales.locale("es", None))
    assert locales.translate(message_of(exc)) == "el contacto 7 fue borrado"
    with pytest.raises(Exception) as refused:
        check_transition("closed", "derived", case_type="request", sector="x")
    assert str(refused.value) == "the case is closed; it cannot move to derived"
    locales.use(locales.locale("pt", None))
    assert locales.translate(message_of(refused.value)) == "o caso está encerrado; não pode passar para «Encaminhado a um setor»"


def test_a_contact_history_entry_and_an_erased_name_in_the_readers_language():
    """core.contacts.history's sentences by their code (channels and field names by their
    labels); an entry without a code, and any name but the one erasure gave that contact,
    as stored."""
    from posventa.core.contacts import history
    from posventa.intake.console.contact_texts import history_text, person

    locales = ConsoleLocales(default_language="en", default_timezone="UTC")
    added = {"code": "contact_history_identity_added", "values": {"channel": "email", "address": "ana@x.example"},
             "detail": "email: ana@x.example"}
    edited = {"code": "contact_history_updated", "values": {"fields": ["language", "organization_id"]}}
    old = {"code": None, "values": {}, "detail": "absorbed contact #3: 2 cases"}
    assert history_text(locales, added) == "Email: ana@x.example"
    locales.use(locales.locale("es", None))
    assert history_text(locales, added) == "Correo: ana@x.example"
    assert history_text(locales, edited) == "cambios: Idioma, Organización"
    assert history_text(locales, old) == "absorbed contact #3: 2 cases"
    assert history_text(locales, {"code": None, "values": {}, "detail": None}) == ""
    assert person(locales, "erased contact #5", 5) == "contacto borrado #5"
    assert person(locales, "erased contact #5", 6) == "erased contact #5"
    assert person(locales, "Ana", 5) == "Ana" and person(locales, None, 5) is None
    locales.use(locales.locale("pt", None))
    assert history_text(locales, edited) == "alterado: Idioma, Organização"
    assert person(locales, "erased contact #5", 5) == "contato apagado #5"
    # Every code's sentence is translated with the same placeholders (the catalogue check
    # says translated; this, that the values fill it).
    for code, text in history.SENTENCES.items():
        names = set(re.findall(r"%\((\w+)\)s", text.template))
        for lang in ("es", "pt"):
            locales.use(locales.locale(lang, None))
            assert set(re.findall(r"%\((\w+)\)s", locales.pgettext(code, text.template))) == names, (lang, code)


def test_a_case_history_entry_in_the_readers_language():
    """core.case_history's sentences by their code, read by the same helper as a contact's
    (stored codes among the values by their labels, a moment in the reader's zone and
    format); the ``from``/``to`` of kinds that move codes by their labels, others as stored."""
    from posventa.core import case_history
    from posventa.core.contacts import history as contact_history
    from posventa.intake.console.contact_texts import SENTENCES, history_text, history_value

    assert not set(case_history.SENTENCES) & set(contact_history.SENTENCES)
    assert set(SENTENCES) == set(case_history.SENTENCES) | set(contact_history.SENTENCES)
    locales = ConsoleLocales(default_language="en", default_timezone="America/Argentina/Buenos_Aires")

    def entry(text, **values):
        return {"code": text.code, "values": values, "detail": "English"}

    told = entry(case_history.CUSTOMER_TOLD, activity="answer_sent")
    assigned = entry(case_history.DETRACTOR_ASSIGNED, operators=["ana", "beto"])
    assert history_text(locales, entry(case_history.REOPENED)) == "reopened by the customer"
    assert history_text(locales, told) == "Answer sent"
    locales.use(locales.locale("es", None))
    assert history_text(locales, entry(case_history.REOPENED)) == "reabierto por el cliente"
    assert history_text(locales, entry(case_history.FOLLOW_UP, case=12)) == "seguimiento de #12"
    assert history_text(locales, told) == "Respuesta enviada"
    assert history_text(locales, entry(case_history.ASSIGNED, strategy="least_open")) == (
        "automática (menos casos abiertos)")
    assert history_text(locales, assigned) == "entre los operadores de la regla (ana, beto)"
    # The reader's zone (-03) and date order, not the stored UTC ISO text.
    assert history_text(locales, entry(case_history.DATED, at="2026-11-30T12:00:00+00:00")) == (
        "con fecha 30/11/26, 9:00 -03")
    assert history_text(locales, {"code": None, "values": {}, "detail": "https://kb.example/t/1"}) == (
        "https://kb.example/t/1")
    assert history_value(locales, "preliminary_analysis", "activity") == "Análisis preliminar"
    assert history_value(locales, "email", "opened") == "Correo"
    assert history_value(locales, "maria_jose", "assign") == "maria_jose"
    assert history_value(locales, None, "activity") == ""
    locales.use(locales.locale("pt", None))
    assert history_text(locales, entry(case_history.REOPENED)) == "reaberto pelo cliente"
    assert history_text(locales, entry(case_history.CONTACT_ERASED)) == "contato apagado"
    for code, text in case_history.SENTENCES.items():
        names = set(re.findall(r"%\((\w+)\)s", text.template))
        for lang in ("es", "pt"):
            locales.use(locales.locale(lang, None))
            assert set(re.findall(r"%\((\w+)\)s", locales.pgettext(code, text.template))) == names, (lang, code)


@SQLITE_ONLY
async def test_core_refusals_reach_contact_pages_in_the_users_language(running, agent):
    contacts = running.service.contacts
    ana = await contacts.create({"name": "Ana", "identities": [{"kind": "email", "address": "ana@x.example"}]},
                                actor="agent:x")
    bea = await contacts.create({"name": "Bea"}, actor="agent:x")
    status, page = await agent.post(f"/console/contacts/{bea['id']}/identities", {"kind": "phone", "address": "12"},
                                    headers={"Accept-Language": "es"})
    assert status == 422 and "address no es un número de teléfono válido: &#39;12&#39;" in page
    status, page = await agent.post(f"/console/contacts/{bea['id']}/identities",
                                    {"kind": "email", "address": "ana@x.example"}, headers={"Accept-Language": "pt-BR"})
    assert status == 422 and f"email ana@x.example já pertence ao contato #{ana['id']}; mescle os dois contatos" in page
    status, page = await agent.post(f"/console/contacts/{bea['id']}/merge", {"source": str(bea["id"])},
                                    headers={"Accept-Language": "es"})
    assert status == 422 and "un contacto no puede fusionarse consigo mismo" in page
    status, page = await agent.get("/console/contacts/987654", headers={"Accept-Language": "pt-BR"})
    assert status == 404 and "o contato 987654 não foi encontrado" in page
