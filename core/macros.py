"""Canned responses (macros): a named body in es / pt / en with placeholders, optional
actions on the case, shared by the team or personal to one agent, usage counted.

Bodies are templates rendered through the ``TextTemplates`` port (Jinja2's sandbox, in
intake/text_templates.py) with only the macro's variables (``customer``, ``case``,
``agent``, ``kb``, ``company``: plain values, never objects of ours); the output is cut
off at ``MAX_OUTPUT``. Every refusal names the field: ``bodies.pt``, ``actions.activity``…

The API, the console and the Telegram desk all use a macro through ``use``: render in
the customer's language (falling back to the default language), send as a reply through
``CaseService.reply`` (so through the outbox), count the use, and run the actions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update

from posventa.core.cases import CaseService, _enum, _text
from posventa.core.domain import Activity, AttachmentRef, CaseType
from posventa.core.errors import NotFound, ValidationError, explain
from posventa.core.persistence import Database
from posventa.core.persistence.schema import cases, contacts, macros, users
from posventa.core.ports import Clock, TextTemplates

LANGUAGES = ("es", "pt", "en")
MAX_BODY = 20_000
MAX_OUTPUT = 20_000
MAX_NAME = 120
VARIABLES = ("customer", "case", "agent", "kb", "company")
ACTIONS = ("type", "category_id", "subcategory_id", "activity", "sector", "note")


@dataclass(frozen=True, slots=True)
class MacroInput:
    name: Any
    bodies: Mapping[str, Any]
    #: None: shared with the team; a username: that agent's own.
    owner: str | None = None
    actions: Mapping[str, Any] = field(default_factory=dict)


class MacroService:
    def __init__(self, *, db: Database, cases: CaseService, clock: Clock, templates: TextTemplates,
                 default_language: str, company_name: str) -> None:
        self._db = db
        self._cases = cases
        self._clock = clock
        self._default_language = default_language
        self._company = company_name
        self._templates = templates

    # --- managing ---------------------------------------------------------------------

    async def list(self, *, visible_to: str | None = None, name_prefix: str | None = None) -> list[dict[str, Any]]:
        """Shared macros and, with ``visible_to``, that agent's own; most used first."""
        q = select(macros)
        if visible_to is not None:
            q = q.where(or_(macros.c.owner == "", macros.c.owner == visible_to))
        if name_prefix:
            q = q.where(func.lower(macros.c.name).startswith(name_prefix.lower()[:MAX_NAME], autoescape=True))
        q = q.order_by(macros.c.usage_count.desc(), macros.c.name)
        async with self._db.engine.connect() as conn:
            return [_public(r) for r in await conn.execute(q)]

    async def get(self, macro_id: int) -> dict[str, Any]:
        async with self._db.engine.connect() as conn:
            return _public(await self._row(conn, macro_id))

    async def create(self, new: MacroInput) -> dict[str, Any]:
        values = self._check(new)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            await self._unique(conn, values["name"], values["owner"])
            mid = (await conn.execute(insert(macros).values(**values, usage_count=0, created_at=now, updated_at=now)
                                      .returning(macros.c.id))).scalar_one()
        return await self.get(mid)

    async def update(self, macro_id: int, new: MacroInput) -> dict[str, Any]:
        values = self._check(new)
        async with self._db.transaction() as conn:
            await self._row(conn, macro_id)
            await self._unique(conn, values["name"], values["owner"], but=macro_id)
            await conn.execute(update(macros).where(macros.c.id == macro_id)
                               .values(**values, updated_at=self._clock.now()))
        return await self.get(macro_id)

    async def delete(self, macro_id: int) -> None:
        async with self._db.transaction() as conn:
            await self._row(conn, macro_id)
            await conn.execute(delete(macros).where(macros.c.id == macro_id))

    # --- using --------------------------------------------------------------------------

    async def find(self, ref: int | str, *, agent: str | None) -> dict[str, Any]:
        """A macro by id, or by name (the agent's own first, then the shared one); another
        agent's personal macro is not found. ``agent`` None: shared macros only."""
        async with self._db.engine.connect() as conn:
            if isinstance(ref, int) and not isinstance(ref, bool):
                row = await self._row(conn, ref)
            elif isinstance(ref, str) and ref.strip():
                rows = (await conn.execute(select(macros).where(
                    func.lower(macros.c.name) == ref.strip().lower()[:MAX_NAME],
                    or_(macros.c.owner == "", macros.c.owner == (agent or ""))))).all()
                if not rows:
                    raise NotFound(explain("macro_name_not_found", "no macro named %(name)r", name=ref.strip()[:MAX_NAME]))
                row = max(rows, key=lambda r: r.owner != "")
            else:
                raise ValidationError(explain("macro_ref_invalid", "macro must be a macro id or name"), field="macro")
        if row.owner and row.owner != agent:
            raise NotFound(explain("macro_not_found", "macro %(id)s not found", id=row.id))
        return _public(row)

    async def render(self, macro: Mapping[str, Any], number: int, *, agent: str) -> tuple[str, str]:
        """The text ``macro`` gives for case ``number`` and the language it chose. ``agent`` is
        the replying agent's username: ``{{ agent.name }}`` is their display name (the name as
        given when it is no console account or has none)."""
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(
                select(cases.c.id, cases.c.title, cases.c.language, cases.c.kb_url, contacts.c.name,
                       contacts.c.email, contacts.c.language.label("contact_language"),
                       # The customer reads the agent's name as the console shows it, not a login.
                       select(users.c.display_name).where(users.c.username == agent)
                       .scalar_subquery().label("agent_name"))
                .join(contacts, contacts.c.id == cases.c.contact_id).where(cases.c.id == number))).first()
        if row is None:
            raise NotFound(explain("case_not_found", "case %(number)s not found", number=number))
        bodies = macro["bodies"]
        language = next((lang for lang in (row.contact_language, row.language, self._default_language)
                         if lang in LANGUAGES and bodies.get(lang)), None)
        if language is None:
            language = next(lang for lang in LANGUAGES if bodies.get(lang))
        variables = {
            "customer": {"name": row.name or "", "email": row.email or "", "language": language},
            "case": {"number": row.id, "title": row.title},
            "agent": {"name": row.agent_name or agent},
            "kb": {"url": row.kb_url or ""},
            "company": {"name": self._company},
        }
        text = self._templates.render(bodies[language], variables, field=f"bodies.{language}", max_chars=MAX_OUTPUT)
        return text, language

    async def use(self, ref: int | str, number: int, *, agent: str, owner: str | None, text: str | None = None,
                  mirror_to_desk: bool = True, seen_message_id: int | None = None,
                  files: Sequence[AttachmentRef] = ()) -> dict[str, Any]:
        """Reply on case ``number`` with the macro (or ``text``, the agent's edit of it),
        count the use, then run its actions. ``owner`` is the username whose personal
        macros ``ref`` may name (None: shared ones only). Returns the reply's receipt."""
        macro = await self.find(ref, agent=owner)
        if text is None or not text.strip():
            text, _ = await self.render(macro, number, agent=agent)
        receipt = await self._cases.reply(number, text, agent=agent, mirror_to_desk=mirror_to_desk,
                                          seen_message_id=seen_message_id, files=files)
        async with self._db.transaction() as conn:
            # One statement: concurrent uses from several processes all count.
            await conn.execute(update(macros).where(macros.c.id == macro["id"])
                               .values(usage_count=macros.c.usage_count + 1))
        actions = macro["actions"]
        if "type" in actions:
            await self._cases.set_type(number, actions["type"], agent=agent)
        if "category_id" in actions:
            await self._cases.set_category(number, actions["category_id"], actions.get("subcategory_id"), agent=agent)
        if "activity" in actions and (await self._cases.get_case(number))["activity"] != actions["activity"]:
            # Already there (the macro used twice) is done, not a refused move.
            await self._cases.change_activity(number, actions["activity"], agent=agent, sector=actions.get("sector"))
        if "note" in actions:
            await self._cases.add_note(number, actions["note"], agent=agent)
        return {**receipt, "macro": macro["id"], "text": text}

    # --- helpers --------------------------------------------------------------------------

    def _check(self, new: MacroInput) -> dict[str, Any]:
        name = _text(new.name, "name", max_len=MAX_NAME).strip()  # type: ignore[union-attr]
        if not isinstance(new.bodies, Mapping):
            raise ValidationError(explain("macro_bodies_shape", "bodies must be an object with es, pt and en texts"),
                                  field="bodies")
        unknown = set(new.bodies) - set(LANGUAGES)
        if unknown:
            raise ValidationError(explain("macro_body_language", "bodies has no language %(language)r (es, pt, en)",
                                          language=sorted(unknown)[0]), field="bodies")
        values: dict[str, Any] = {"name": name}
        for lang in LANGUAGES:
            body = _text(new.bodies.get(lang), f"bodies.{lang}", required=False, max_len=MAX_BODY)
            if body is not None:
                self._templates.check(body, field=f"bodies.{lang}", variables=VARIABLES)
            values[f"body_{lang}"] = body
        if not any(values[f"body_{lang}"] for lang in LANGUAGES):
            raise ValidationError(explain("macro_body_missing", "a macro needs a body in at least one language"),
                                  field="bodies")
        owner = _text(new.owner, "owner", required=False, max_len=80)
        values["owner"] = owner or ""
        values["actions"] = _check_actions(new.actions)
        return values

    async def _row(self, conn, macro_id: int):
        row = (await conn.execute(select(macros).where(macros.c.id == macro_id))).first()
        if row is None:
            raise NotFound(explain("macro_not_found", "macro %(id)s not found", id=macro_id))
        return row

    async def _unique(self, conn, name: str, owner: str, *, but: int | None = None) -> None:
        q = select(macros.c.id).where(and_(func.lower(macros.c.name) == name.lower(), macros.c.owner == owner))
        if but is not None:
            q = q.where(macros.c.id != but)
        if (await conn.execute(q)).first():
            raise ValidationError(explain("macro_name_taken", "a macro named %(name)r already exists there", name=name),
                                  field="name")


def _check_actions(actions: Any) -> dict[str, Any]:
    if actions is None:
        return {}
    if not isinstance(actions, Mapping):
        raise ValidationError(explain("macro_actions_shape", "actions must be an object"), field="actions")
    unknown = set(actions) - set(ACTIONS)
    if unknown:
        raise ValidationError(explain("macro_action_unknown", "unknown action %(action)r", action=sorted(unknown)[0]),
                              field=f"actions.{sorted(unknown)[0]}")
    out: dict[str, Any] = {}
    if actions.get("type") is not None:
        out["type"] = _enum(CaseType, actions["type"], "actions.type").value
    for key in ("category_id", "subcategory_id"):
        if actions.get(key) is not None:
            if not isinstance(actions[key], int) or isinstance(actions[key], bool):
                raise ValidationError(explain("macro_action_category", "%(field)s must be a category id",
                                                  field=f"actions.{key}"), field=f"actions.{key}")
            out[key] = actions[key]
    if "subcategory_id" in out and "category_id" not in out:
        raise ValidationError(explain("macro_subcategory_alone", "a subcategory needs its category"),
                              field="actions.category_id")
    if actions.get("activity") is not None:
        out["activity"] = _enum(Activity, actions["activity"], "actions.activity").value
    if actions.get("sector") is not None:
        out["sector"] = _text(actions["sector"], "actions.sector", max_len=120)
    if actions.get("note") is not None:
        out["note"] = _text(actions["note"], "actions.note", max_len=MAX_BODY)
    return out


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "owner": row.owner or None,
        "bodies": {lang: getattr(row, f"body_{lang}") for lang in LANGUAGES if getattr(row, f"body_{lang}")},
        "actions": row.actions or {}, "usage_count": row.usage_count,
        "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
    }
