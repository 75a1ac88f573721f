"""The survey catalog: questions, rules, profiles and products.

- A **question** has a text in es/pt/en, a scale and a weight (-100..100) per score.
- A **rule** opens ``start_after_days`` after a deal closed, stays available
  ``expires_after_days``, asks an ordered list of questions, and has responsible
  operators.
- A **profile** groups rules; a **product** points at a profile.

Every write validates first and names the offending field; a TOML import is one
transaction, so a file with one mistake changes nothing.

Changing a rule's days later does not move windows already computed for past sales;
changing its questions applies to surveys not yet answered (the runner always asks the
first question of the rule's current list that the instance has no answer for).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.domain import LANGUAGES
from posventa.core.errors import DomainError, NotFound, ValidationError
from posventa.core.persistence import Database
from posventa.core.persistence.schema import (
    products,
    rule_instances,
    sales,
    survey_answers,
    survey_profile_rules,
    survey_profiles,
    survey_questions,
    survey_rule_operators,
    survey_rule_questions,
    survey_rules,
)
from posventa.core.surveys.scales import MAX_WEIGHT, MIN_WEIGHT, Scale
from posventa.core.surveys.windows import MAX_DAYS
from posventa.core.texts import localized

MAX_NAME = 200
MAX_CODE = 80
MAX_OPERATOR = 120
MAX_TEXT = 2000
MAX_NOTE = 10_000
MAX_CATALOG_BYTES = 2_000_000
#: Ids are 64-bit in the database: a bigger number from outside is no id at all.
MAX_ID = 2**63 - 1


class InUse(DomainError):
    """Deleting it would lose history (answers, sales, survey instances)."""


@dataclass(frozen=True, slots=True)
class Question:
    id: int
    code: str
    texts: Mapping[str, str]
    scale: Scale
    weights: Mapping[str, int]
    #: Its own detractor threshold; None: the ``[surveys] detractor_weight`` default.
    detractor_threshold: int | None = None
    #: Never a detractor answer, whatever the weight.
    detractor_off: bool = False

    def text(self, language: str) -> str:
        return localized(self.texts, language)

    def detractor_at(self, default: int) -> int | None:
        """The weight at or below which an answer is a detractor answer; None: never."""
        if self.detractor_off:
            return None
        return default if self.detractor_threshold is None else self.detractor_threshold

    def is_detractor(self, score: str, default: int) -> bool:
        at = self.detractor_at(default)
        return at is not None and score in self.weights and self.weights[score] <= at

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "code": self.code, "text": dict(self.texts), "scale": self.scale.spec,
                "weights": dict(self.weights),
                "detractor_threshold": DETRACTOR_OFF if self.detractor_off else self.detractor_threshold}


#: ``detractor_threshold = "off"``: the question never opens a detractor case.
DETRACTOR_OFF = "off"


def question_from_row(row: Any) -> Question:
    scale = Scale.parse(row.scale)
    return Question(row.id, row.code, {"es": row.text_es, "pt": row.text_pt, "en": row.text_en}, scale,
                    {str(k): int(v) for k, v in dict(row.weights).items()},
                    row.detractor_threshold, bool(row.detractor_off))


def _detractor_threshold(value: Any) -> dict[str, Any]:
    """Row values for ``detractor_threshold``: a weight (-100..100), "off", or null (the default)."""
    if value is None:
        return {"detractor_threshold": None, "detractor_off": False}
    if isinstance(value, str) and value.strip().lower() == DETRACTOR_OFF:
        return {"detractor_threshold": None, "detractor_off": True}
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_WEIGHT <= value <= MAX_WEIGHT:
        raise ValidationError(f'detractor_threshold must be a weight from {MIN_WEIGHT} to {MAX_WEIGHT}, "off", '
                              "or null for the [surveys] detractor_weight default", field="detractor_threshold")
    return {"detractor_threshold": value, "detractor_off": False}


# --- validation of input (pure) ---------------------------------------------------------


def _str(data: Mapping[str, Any], key: str, *, field: str, required: bool = True, max_len: int = MAX_NAME,
         default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(f"{field} is required", field=field)
        return None if value is None else ""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text", field=field)
    value = value.strip()
    if len(value) > max_len:
        raise ValidationError(f"{field} is longer than {max_len} characters", field=field)
    return value


def _days(data: Mapping[str, Any], key: str, *, low: int, field: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be a whole number of days", field=field)
    if not low <= value <= MAX_DAYS:
        raise ValidationError(f"{field} must be between {low} and {MAX_DAYS}", field=field)
    return value


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})",
                              field=unknown[0])


def _object(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(f"{where} must be an object", field=where)
    return data


def validate_question(data: Any, *, partial: bool = False, current: Question | None = None) -> dict[str, Any]:
    """Row values for survey_questions from API/TOML input."""
    data = _object(data, "question")
    _check_keys(data, {"code", "text", "scale", "weights", "detractor_threshold", "id"}, "question")
    row: dict[str, Any] = {}
    if not partial or "code" in data:
        row["code"] = _str(data, "code", field="code", max_len=MAX_CODE)
    if not partial or "text" in data:
        texts = data.get("text")
        if not isinstance(texts, Mapping):
            raise ValidationError("text must be an object with es, pt and en", field="text")
        unknown = sorted(set(texts) - set(LANGUAGES))
        if unknown:
            raise ValidationError(f"text has unknown language {unknown[0]!r} (use es, pt, en)", field="text")
        for lang in LANGUAGES:
            row[f"text_{lang}"] = _str(texts, lang, field=f"text.{lang}", max_len=MAX_TEXT)
    if not partial or "scale" in data or "weights" in data:
        scale = Scale.parse(data.get("scale", current.scale.spec if current else None))
        if "weights" not in data and current is not None:
            raise ValidationError("changing the scale needs the weights of the new scale", field="weights")
        row["scale"] = scale.spec
        row["weights"] = scale.validate_weights(data.get("weights"))
    if not partial or "detractor_threshold" in data:
        row.update(_detractor_threshold(data.get("detractor_threshold")))
    return row


def _operators(value: Any, field: str = "operators") -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ValidationError("operators must be a list of names", field=field)
    out: list[str] = []
    for op in value:
        if not isinstance(op, str) or not op.strip() or len(op.strip()) > MAX_OPERATOR:
            raise ValidationError(f"each operator must be a name of 1-{MAX_OPERATOR} characters", field=field)
        if op.strip() not in out:
            out.append(op.strip())
    return out


def _refs(value: Any, field: str) -> list[int | str]:
    """A list of ids or codes/names, duplicates refused."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ValidationError(f"{field} must be a list", field=field)
    out: list[int | str] = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | str) or (isinstance(v, str) and not v.strip()):
            raise ValidationError(f"{field} must list ids or codes", field=field)
        if isinstance(v, int) and not 1 <= v <= MAX_ID:
            raise ValidationError(f"{field}: {v} is not an id", field=field)
        if isinstance(v, str) and len(v) > MAX_NAME:
            raise ValidationError(f"{field}: a code or name is at most {MAX_NAME} characters", field=field)
        v = v.strip() if isinstance(v, str) else v
        if v in out:
            raise ValidationError(f"{field} lists {v!r} twice", field=field)
        out.append(v)
    return out


def validate_rule(data: Any, *, partial: bool = False) -> tuple[dict[str, Any], list[int | str] | None, list[str] | None]:
    data = _object(data, "rule")
    _check_keys(data, {"name", "start_after_days", "expires_after_days", "note", "questions", "operators",
                       "resurvey_after_close", "id"}, "rule")
    row: dict[str, Any] = {}
    if not partial or "name" in data:
        row["name"] = _str(data, "name", field="name")
    if not partial or "start_after_days" in data:
        row["start_after_days"] = _days(data, "start_after_days", low=0, field="start_after_days")
    if not partial or "expires_after_days" in data:
        row["expires_after_days"] = _days(data, "expires_after_days", low=1, field="expires_after_days")
    if not partial or "note" in data:
        row["note"] = _str(data, "note", field="note", required=False, max_len=MAX_NOTE)
    if not partial or "resurvey_after_close" in data:
        value = data.get("resurvey_after_close", False)
        if not isinstance(value, bool):
            raise ValidationError("resurvey_after_close must be true or false", field="resurvey_after_close")
        row["resurvey_after_close"] = value
    questions = _refs(data["questions"], "questions") if "questions" in data else ([] if not partial else None)
    operators = _operators(data["operators"]) if "operators" in data else ([] if not partial else None)
    return row, questions, operators


def validate_profile(data: Any, *, partial: bool = False) -> tuple[dict[str, Any], list[int | str] | None]:
    data = _object(data, "profile")
    _check_keys(data, {"name", "notes", "rules", "id"}, "profile")
    row: dict[str, Any] = {}
    if not partial or "name" in data:
        row["name"] = _str(data, "name", field="name")
    if not partial or "notes" in data:
        row["notes"] = _str(data, "notes", field="notes", required=False, max_len=MAX_NOTE)
    rules = _refs(data["rules"], "rules") if "rules" in data else ([] if not partial else None)
    return row, rules


def validate_product(data: Any, *, partial: bool = False) -> tuple[dict[str, Any], int | str | None, bool]:
    """Row values, the profile reference, and whether the profile was given at all."""
    data = _object(data, "product")
    _check_keys(data, {"code", "name", "profile", "id"}, "product")
    row: dict[str, Any] = {}
    if not partial or "code" in data:
        row["code"] = _str(data, "code", field="code", max_len=MAX_CODE)
    if not partial or "name" in data:
        row["name"] = _str(data, "name", field="name")
    profile = data.get("profile")
    if profile is not None and (isinstance(profile, bool) or not isinstance(profile, int | str)):
        raise ValidationError("profile must be a profile id or name", field="profile")
    return row, profile, "profile" in data


# --- the service ------------------------------------------------------------------------


class Catalog:
    """CRUD over the catalog plus the TOML import. Each method is one transaction."""

    def __init__(self, *, db: Database) -> None:
        self._db = db

    # questions

    async def list_questions(self) -> list[dict[str, Any]]:
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(survey_questions).order_by(survey_questions.c.code))
            return [question_from_row(r).as_dict() for r in rows]

    async def get_question(self, question_id: int) -> dict[str, Any]:
        async with self._db.engine.connect() as conn:
            return (await _question(conn, question_id)).as_dict()

    async def create_question(self, data: Any) -> dict[str, Any]:
        row = validate_question(data)
        async with self._db.transaction() as conn:
            await _unique(conn, survey_questions.c.code, row["code"], "code", "question")
            qid = (await conn.execute(insert(survey_questions).values(**row).returning(survey_questions.c.id))).scalar_one()
            return (await _question(conn, qid)).as_dict()

    async def update_question(self, question_id: int, data: Any) -> dict[str, Any]:
        async with self._db.transaction() as conn:
            current = await _question(conn, question_id)
            row = validate_question(data, partial=True, current=current)
            if "code" in row and row["code"] != current.code:
                await _unique(conn, survey_questions.c.code, row["code"], "code", "question")
            if "scale" in row and row["scale"] != current.scale.spec and await _has(
                    conn, survey_answers.c.question_id == question_id):
                raise InUse("this question already has answers on its scale; create a new question instead")
            if row:
                await conn.execute(update(survey_questions).where(survey_questions.c.id == question_id).values(**row))
            return (await _question(conn, question_id)).as_dict()

    async def delete_question(self, question_id: int) -> None:
        async with self._db.transaction() as conn:
            await _question(conn, question_id)
            if await _has(conn, survey_answers.c.question_id == question_id):
                raise InUse("this question has answers; remove it from its rules instead of deleting it")
            await conn.execute(delete(survey_questions).where(survey_questions.c.id == question_id))

    # rules

    async def list_rules(self) -> list[dict[str, Any]]:
        async with self._db.engine.connect() as conn:
            ids = [r[0] for r in await conn.execute(select(survey_rules.c.id).order_by(survey_rules.c.name))]
            return await _rules(conn, ids)

    async def get_rule(self, rule_id: int) -> dict[str, Any]:
        async with self._db.engine.connect() as conn:
            return await _rule(conn, rule_id)

    async def create_rule(self, data: Any) -> dict[str, Any]:
        row, questions, operators = validate_rule(data)
        async with self._db.transaction() as conn:
            return await _create_rule(conn, row, questions or [], operators or [])

    async def update_rule(self, rule_id: int, data: Any) -> dict[str, Any]:
        row, questions, operators = validate_rule(data, partial=True)
        async with self._db.transaction() as conn:
            current = await _rule(conn, rule_id)
            if "name" in row and row["name"] != current["name"]:
                await _unique(conn, survey_rules.c.name, row["name"], "name", "rule")
            if row:
                await conn.execute(update(survey_rules).where(survey_rules.c.id == rule_id).values(**row))
            if questions is not None:
                await _set_rule_questions(conn, rule_id, questions)
            if operators is not None:
                await _set_rule_operators(conn, rule_id, operators)
            return await _rule(conn, rule_id)

    async def delete_rule(self, rule_id: int) -> None:
        async with self._db.transaction() as conn:
            await _rule(conn, rule_id)
            if await _has(conn, rule_instances.c.rule_id == rule_id):
                raise InUse("this rule already has surveys for sales; remove it from its profiles instead")
            await conn.execute(delete(survey_rules).where(survey_rules.c.id == rule_id))

    async def add_rule_question(self, rule_id: int, question: int | str, *, position: int | None = None) -> dict[str, Any]:
        """Insert ``question`` at ``position`` (1-based; default: last)."""
        async with self._db.transaction() as conn:
            rule = await _rule(conn, rule_id)
            qid = (await _resolve(conn, survey_questions, survey_questions.c.code, _refs([question], "question"),
                                  "question"))[0]
            ids = [q["id"] for q in rule["questions"]]
            if qid in ids:
                raise ValidationError("the rule already asks this question", field="question")
            if position is not None and (isinstance(position, bool) or not isinstance(position, int)
                                         or not 1 <= position <= len(ids) + 1):
                raise ValidationError(f"position must be between 1 and {len(ids) + 1}", field="position")
            ids.insert((position or len(ids) + 1) - 1, qid)
            await _set_rule_questions(conn, rule_id, ids)
            return await _rule(conn, rule_id)

    async def remove_rule_question(self, rule_id: int, question_id: int) -> dict[str, Any]:
        async with self._db.transaction() as conn:
            rule = await _rule(conn, rule_id)
            ids = [q["id"] for q in rule["questions"]]
            if question_id not in ids:
                raise NotFound("the rule does not ask this question")
            await _set_rule_questions(conn, rule_id, [i for i in ids if i != question_id])
            return await _rule(conn, rule_id)

    async def add_rule_operator(self, rule_id: int, operator: Any) -> dict[str, Any]:
        [name] = _operators([operator], field="operator")
        async with self._db.transaction() as conn:
            rule = await _rule(conn, rule_id)
            if name not in rule["operators"]:
                await conn.execute(insert(survey_rule_operators).values(rule_id=rule_id, operator=name))
            return await _rule(conn, rule_id)

    async def remove_rule_operator(self, rule_id: int, operator: str) -> dict[str, Any]:
        async with self._db.transaction() as conn:
            rule = await _rule(conn, rule_id)
            if operator not in rule["operators"]:
                raise NotFound(f"{operator!r} is not an operator of this rule")
            await conn.execute(delete(survey_rule_operators).where(survey_rule_operators.c.rule_id == rule_id,
                                                                   survey_rule_operators.c.operator == operator))
            return await _rule(conn, rule_id)

    # profiles

    async def list_profiles(self) -> list[dict[str, Any]]:
        async with self._db.engine.connect() as conn:
            ids = [r[0] for r in await conn.execute(select(survey_profiles.c.id).order_by(survey_profiles.c.name))]
            return [await _profile(conn, i) for i in ids]

    async def get_profile(self, profile_id: int) -> dict[str, Any]:
        async with self._db.engine.connect() as conn:
            return await _profile(conn, profile_id)

    async def create_profile(self, data: Any) -> dict[str, Any]:
        row, rules = validate_profile(data)
        async with self._db.transaction() as conn:
            return await _create_profile(conn, row, rules or [])

    async def update_profile(self, profile_id: int, data: Any) -> dict[str, Any]:
        row, rules = validate_profile(data, partial=True)
        async with self._db.transaction() as conn:
            current = await _profile(conn, profile_id)
            if "name" in row and row["name"] != current["name"]:
                await _unique(conn, survey_profiles.c.name, row["name"], "name", "profile")
            if row:
                await conn.execute(update(survey_profiles).where(survey_profiles.c.id == profile_id).values(**row))
            if rules is not None:
                await _set_profile_rules(conn, profile_id, rules)
            return await _profile(conn, profile_id)

    async def delete_profile(self, profile_id: int) -> None:
        async with self._db.transaction() as conn:
            await _profile(conn, profile_id)
            await conn.execute(delete(survey_profiles).where(survey_profiles.c.id == profile_id))

    # products

    async def list_products(self) -> list[dict[str, Any]]:
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(_PRODUCT_SELECT.order_by(products.c.code))
            return [_product_dict(r) for r in rows]

    async def get_product(self, product_id: int) -> dict[str, Any]:
        async with self._db.engine.connect() as conn:
            return await _product(conn, product_id)

    async def create_product(self, data: Any) -> dict[str, Any]:
        row, profile, _ = validate_product(data)
        async with self._db.transaction() as conn:
            await _unique(conn, products.c.code, row["code"], "code", "product")
            row["profile_id"] = await _profile_ref(conn, profile)
            pid = (await conn.execute(insert(products).values(**row).returning(products.c.id))).scalar_one()
            return await _product(conn, pid)

    async def update_product(self, product_id: int, data: Any) -> dict[str, Any]:
        row, profile, has_profile = validate_product(data, partial=True)
        async with self._db.transaction() as conn:
            current = await _product(conn, product_id)
            if "code" in row and row["code"] != current["code"]:
                await _unique(conn, products.c.code, row["code"], "code", "product")
            if has_profile:
                row["profile_id"] = await _profile_ref(conn, profile)
            if row:
                await conn.execute(update(products).where(products.c.id == product_id).values(**row))
            return await _product(conn, product_id)

    async def delete_product(self, product_id: int) -> None:
        async with self._db.transaction() as conn:
            await _product(conn, product_id)
            if await _has(conn, sales.c.product_id == product_id):
                raise InUse("this product has sales; it cannot be deleted")
            await conn.execute(delete(products).where(products.c.id == product_id))

    # TOML

    async def import_toml(self, data: bytes, *, source: str = "catalog") -> dict[str, int]:
        """Create or update everything in a catalog file, all or nothing.

        Errors name the entry: ``questions[2] (code 'nps'): weights: ...``."""
        doc = parse_catalog_toml(data, source=source)
        counts = {"questions": 0, "rules": 0, "profiles": 0, "products": 0}
        try:
            async with self._db.transaction() as conn:
                for i, q in enumerate(doc["questions"]):
                    with _located("questions", i, q.get("code") if isinstance(q, Mapping) else None):
                        await _upsert_question(conn, q)
                        counts["questions"] += 1
                for i, r in enumerate(doc["rules"]):
                    with _located("rules", i, r.get("name") if isinstance(r, Mapping) else None):
                        await _upsert_rule(conn, r)
                        counts["rules"] += 1
                for i, p in enumerate(doc["profiles"]):
                    with _located("profiles", i, p.get("name") if isinstance(p, Mapping) else None):
                        await _upsert_profile(conn, p)
                        counts["profiles"] += 1
                for i, p in enumerate(doc["products"]):
                    with _located("products", i, p.get("code") if isinstance(p, Mapping) else None):
                        await _upsert_product(conn, p)
                        counts["products"] += 1
        except IntegrityError as exc:  # a concurrent import created the same name first
            raise ValidationError(f"{source}: the catalog changed while importing; run the import again") from exc
        return counts


def parse_catalog_toml(data: bytes, *, source: str = "catalog") -> dict[str, list[Any]]:
    if len(data) > MAX_CATALOG_BYTES:
        raise ValidationError(f"{source}: the file is larger than {MAX_CATALOG_BYTES} bytes")
    try:
        doc = tomllib.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ValidationError(f"{source}: the file is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{source}: invalid TOML: {exc}") from None
    sections = ("questions", "rules", "profiles", "products")
    unknown = sorted(set(doc) - set(sections))
    if unknown:
        raise ValidationError(f"{source}: unknown section {unknown[0]!r} (use [[questions]], [[rules]], "
                              "[[profiles]], [[products]])", field=unknown[0])
    out: dict[str, list[Any]] = {}
    for s in sections:
        value = doc.get(s, [])
        if not isinstance(value, list):
            raise ValidationError(f"{source}: {s} must be an array of tables ([[{s}]])", field=s)
        out[s] = value
    return out


class _located:
    """Prefix a ValidationError with the entry it is about."""

    def __init__(self, section: str, index: int, key: Any) -> None:
        self._where = f"{section}[{index + 1}]" + (f" ({key!r})" if isinstance(key, str) else "")

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, ValidationError):
            raise ValidationError(f"{self._where}: {exc}", field=exc.field) from None
        if isinstance(exc, NotFound):
            raise ValidationError(f"{self._where}: {exc}") from None
        return False


# --- helpers (inside a transaction) -----------------------------------------------------


async def _has(conn: AsyncConnection, condition: Any) -> bool:
    table = condition.left.table
    return (await conn.execute(select(table.c[condition.left.name]).where(condition).limit(1))).first() is not None


async def _unique(conn: AsyncConnection, column: Any, value: Any, field: str, what: str) -> None:
    if (await conn.execute(select(column).where(column == value).limit(1))).first() is not None:
        raise ValidationError(f"a {what} with {field} {value!r} already exists", field=field)


async def _question(conn: AsyncConnection, question_id: int) -> Question:
    row = (await conn.execute(select(survey_questions).where(survey_questions.c.id == question_id))).first()
    if row is None:
        raise NotFound(f"question {question_id} does not exist")
    return question_from_row(row)


async def _resolve(conn: AsyncConnection, table: Any, key_col: Any, refs: Sequence[int | str], field: str) -> list[int]:
    """ids for a list of ids or codes/names, in order; unknown ones are an error."""
    ids = [r for r in refs if isinstance(r, int)]
    keys = [r for r in refs if isinstance(r, str)]
    by_id: set[int] = set()
    by_key: dict[str, int] = {}
    if ids:
        by_id = {r[0] for r in await conn.execute(select(table.c.id).where(table.c.id.in_(ids)))}
    if keys:
        by_key = {r[1]: r[0] for r in await conn.execute(select(table.c.id, key_col).where(key_col.in_(keys)))}
    out = []
    for ref in refs:
        found = ref if isinstance(ref, int) and ref in by_id else by_key.get(ref) if isinstance(ref, str) else None
        if found is None:
            raise ValidationError(f"{field}: {ref!r} does not exist", field=field)
        out.append(found)
    if len(set(out)) != len(out):
        raise ValidationError(f"{field} lists the same entry twice", field=field)
    return out


async def rule_questions(conn: AsyncConnection, rule_ids: Sequence[int]) -> dict[int, list[Question]]:
    """Each rule's questions, in order."""
    out: dict[int, list[Question]] = {rid: [] for rid in rule_ids}
    if not rule_ids:
        return out
    rows = await conn.execute(
        select(survey_rule_questions.c.rule_id, survey_questions)
        .join(survey_questions, survey_questions.c.id == survey_rule_questions.c.question_id)
        .where(survey_rule_questions.c.rule_id.in_(list(rule_ids)))
        .order_by(survey_rule_questions.c.rule_id, survey_rule_questions.c.position)
    )
    for r in rows:
        out[r.rule_id].append(question_from_row(r))
    return out


async def _rules(conn: AsyncConnection, ids: Sequence[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = {r.id: r for r in await conn.execute(select(survey_rules).where(survey_rules.c.id.in_(ids)))}
    questions = await rule_questions(conn, ids)
    ops: dict[int, list[str]] = {i: [] for i in ids}
    for r in await conn.execute(select(survey_rule_operators).where(survey_rule_operators.c.rule_id.in_(ids))
                                .order_by(survey_rule_operators.c.operator)):
        ops[r.rule_id].append(r.operator)
    return [{"id": i, "name": rows[i].name, "start_after_days": rows[i].start_after_days,
             "expires_after_days": rows[i].expires_after_days, "note": rows[i].note or "",
             "resurvey_after_close": bool(rows[i].resurvey_after_close),
             "questions": [q.as_dict() for q in questions[i]], "operators": ops[i]} for i in ids if i in rows]


async def _rule(conn: AsyncConnection, rule_id: int) -> dict[str, Any]:
    found = await _rules(conn, [rule_id])
    if not found:
        raise NotFound(f"rule {rule_id} does not exist")
    return found[0]


async def _set_rule_questions(conn: AsyncConnection, rule_id: int, refs: Sequence[int | str]) -> None:
    ids = await _resolve(conn, survey_questions, survey_questions.c.code, refs, "questions")
    await conn.execute(delete(survey_rule_questions).where(survey_rule_questions.c.rule_id == rule_id))
    if ids:
        await conn.execute(insert(survey_rule_questions),
                           [{"rule_id": rule_id, "question_id": q, "position": i + 1} for i, q in enumerate(ids)])


async def _set_rule_operators(conn: AsyncConnection, rule_id: int, operators: Sequence[str]) -> None:
    await conn.execute(delete(survey_rule_operators).where(survey_rule_operators.c.rule_id == rule_id))
    if operators:
        await conn.execute(insert(survey_rule_operators), [{"rule_id": rule_id, "operator": o} for o in operators])


async def _create_rule(conn: AsyncConnection, row: dict[str, Any], questions: Sequence[int | str],
                       operators: Sequence[str]) -> dict[str, Any]:
    await _unique(conn, survey_rules.c.name, row["name"], "name", "rule")
    rid = (await conn.execute(insert(survey_rules).values(**row).returning(survey_rules.c.id))).scalar_one()
    await _set_rule_questions(conn, rid, questions)
    await _set_rule_operators(conn, rid, operators)
    return await _rule(conn, rid)


async def _profile(conn: AsyncConnection, profile_id: int) -> dict[str, Any]:
    row = (await conn.execute(select(survey_profiles).where(survey_profiles.c.id == profile_id))).first()
    if row is None:
        raise NotFound(f"profile {profile_id} does not exist")
    rules = await conn.execute(
        select(survey_rules.c.id, survey_rules.c.name)
        .join(survey_profile_rules, survey_profile_rules.c.rule_id == survey_rules.c.id)
        .where(survey_profile_rules.c.profile_id == profile_id).order_by(survey_rules.c.name))
    return {"id": row.id, "name": row.name, "notes": row.notes or "",
            "rules": [{"id": r.id, "name": r.name} for r in rules]}


async def _set_profile_rules(conn: AsyncConnection, profile_id: int, refs: Sequence[int | str]) -> None:
    ids = await _resolve(conn, survey_rules, survey_rules.c.name, refs, "rules")
    await conn.execute(delete(survey_profile_rules).where(survey_profile_rules.c.profile_id == profile_id))
    if ids:
        await conn.execute(insert(survey_profile_rules), [{"profile_id": profile_id, "rule_id": r} for r in ids])


async def _create_profile(conn: AsyncConnection, row: dict[str, Any], rules: Sequence[int | str]) -> dict[str, Any]:
    await _unique(conn, survey_profiles.c.name, row["name"], "name", "profile")
    pid = (await conn.execute(insert(survey_profiles).values(**row).returning(survey_profiles.c.id))).scalar_one()
    await _set_profile_rules(conn, pid, rules)
    return await _profile(conn, pid)


async def _profile_ref(conn: AsyncConnection, ref: int | str | None) -> int | None:
    if ref is None or ref == "":
        return None
    return (await _resolve(conn, survey_profiles, survey_profiles.c.name, _refs([ref], "profile"), "profile"))[0]


_PRODUCT_SELECT = select(products.c.id, products.c.code, products.c.name, products.c.profile_id,
                         survey_profiles.c.name.label("profile_name")).outerjoin(
    survey_profiles, survey_profiles.c.id == products.c.profile_id)


def _product_dict(r: Any) -> dict[str, Any]:
    return {"id": r.id, "code": r.code, "name": r.name,
            "profile": {"id": r.profile_id, "name": r.profile_name} if r.profile_id else None}


async def _product(conn: AsyncConnection, product_id: int) -> dict[str, Any]:
    row = (await conn.execute(_PRODUCT_SELECT.where(products.c.id == product_id))).first()
    if row is None:
        raise NotFound(f"product {product_id} does not exist")
    return _product_dict(row)


async def _id_by(conn: AsyncConnection, column: Any, value: Any) -> int | None:
    return (await conn.execute(select(column.table.c.id).where(column == value))).scalar()


async def _upsert_question(conn: AsyncConnection, data: Any) -> None:
    row = validate_question(data)
    qid = await _id_by(conn, survey_questions.c.code, row["code"])
    if qid is None:
        await conn.execute(insert(survey_questions).values(**row))
        return
    current = await _question(conn, qid)
    if row["scale"] != current.scale.spec and await _has(conn, survey_answers.c.question_id == qid):
        raise ValidationError("scale: this question already has answers on its old scale; use a new code",
                              field="scale")
    await conn.execute(update(survey_questions).where(survey_questions.c.id == qid).values(**row))


async def _upsert_rule(conn: AsyncConnection, data: Any) -> None:
    row, questions, operators = validate_rule(data)
    rid = await _id_by(conn, survey_rules.c.name, row["name"])
    if rid is None:
        await _create_rule(conn, row, questions or [], operators or [])
        return
    await conn.execute(update(survey_rules).where(survey_rules.c.id == rid).values(**row))
    await _set_rule_questions(conn, rid, questions or [])
    await _set_rule_operators(conn, rid, operators or [])


async def _upsert_profile(conn: AsyncConnection, data: Any) -> None:
    row, rules = validate_profile(data)
    pid = await _id_by(conn, survey_profiles.c.name, row["name"])
    if pid is None:
        await _create_profile(conn, row, rules or [])
        return
    await conn.execute(update(survey_profiles).where(survey_profiles.c.id == pid).values(**row))
    await _set_profile_rules(conn, pid, rules or [])


async def _upsert_product(conn: AsyncConnection, data: Any) -> None:
    row, profile, _ = validate_product(data)
    row["profile_id"] = await _profile_ref(conn, profile)
    pid = await _id_by(conn, products.c.code, row["code"])
    if pid is None:
        await conn.execute(insert(products).values(**row))
    else:
        await conn.execute(update(products).where(products.c.id == pid).values(**row))
