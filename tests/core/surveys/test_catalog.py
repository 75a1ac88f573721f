"""The catalog on both databases: CRUD with clear errors, ordered questions added and
removed, operators, and a TOML import that is all or nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from posventa.core.errors import NotFound, ValidationError
from posventa.core.persistence.schema import survey_questions
from posventa.core.surveys.catalog import InUse
from tests.support import REPO

QUESTION = {"code": "speed", "scale": "1-5", "text": {"es": "¿Rápido?", "pt": "Rápido?", "en": "Fast?"},
            "weights": {"1": -100, "2": -50, "3": 0, "4": 50, "5": 100}}


async def test_question_crud_and_weight_validation(surveys):
    cat = surveys.catalog
    q = await cat.create_question(QUESTION)
    assert q["weights"]["5"] == 100 and q["scale"] == "1-5"
    with pytest.raises(ValidationError, match="already exists"):
        await cat.create_question(QUESTION)
    with pytest.raises(ValidationError, match="weight for score 3 is missing") as e:
        await cat.create_question({**QUESTION, "code": "x", "weights": {"1": 0, "2": 0, "4": 0, "5": 0}})
    assert e.value.field == "weights"
    with pytest.raises(ValidationError, match="weight for score 1 is 150"):
        await cat.create_question({**QUESTION, "code": "x", "weights": [150, 0, 0, 0, 0]})
    with pytest.raises(ValidationError, match="text.pt is required"):
        await cat.create_question({**QUESTION, "code": "x", "text": {"es": "a", "en": "b"}})
    with pytest.raises(ValidationError, match="changing the scale needs the weights"):
        await cat.update_question(q["id"], {"scale": "0-10"})
    changed = await cat.update_question(q["id"], {"scale": "yes/no", "weights": {"yes": 10, "no": -10}})
    assert changed["scale"] == "yes/no"
    await cat.delete_question(q["id"])
    with pytest.raises(NotFound):
        await cat.get_question(q["id"])


async def test_rule_questions_are_ordered_and_editable(surveys):
    cat = surveys.catalog
    extra = await cat.create_question(QUESTION)
    rule = await cat.create_rule({"name": "r", "start_after_days": 0, "expires_after_days": 2,
                                  "questions": ["working", "attention"], "operators": ["ana", " ana ", "beto"]})
    assert [q["code"] for q in rule["questions"]] == ["working", "attention"]
    assert rule["operators"] == ["ana", "beto"]
    rule = await cat.add_rule_question(rule["id"], "speed", position=1)
    assert [q["code"] for q in rule["questions"]] == ["speed", "working", "attention"]
    rule = await cat.remove_rule_question(rule["id"], extra["id"])
    assert [q["code"] for q in rule["questions"]] == ["working", "attention"]
    with pytest.raises(ValidationError, match="already asks"):
        await cat.add_rule_question(rule["id"], "working")
    with pytest.raises(ValidationError, match="position must be between 1 and 3"):
        await cat.add_rule_question(rule["id"], "speed", position=7)
    with pytest.raises(ValidationError, match="is not an id"):
        await cat.update_rule(rule["id"], {"questions": [2**70]})
    with pytest.raises(ValidationError, match="is not an id"):
        await cat.add_rule_question(rule["id"], -1)
    with pytest.raises(ValidationError, match="'nope' does not exist"):
        await cat.update_rule(rule["id"], {"questions": ["nope"]})
    rule = await cat.add_rule_operator(rule["id"], "carla")
    rule = await cat.remove_rule_operator(rule["id"], "ana")
    assert rule["operators"] == ["beto", "carla"]
    with pytest.raises(ValidationError, match="expires_after_days must be between 1"):
        await cat.update_rule(rule["id"], {"expires_after_days": 0})
    with pytest.raises(ValidationError, match="unknown field 'colour'"):
        await cat.update_rule(rule["id"], {"colour": "red"})


async def test_profiles_and_products(surveys):
    cat = surveys.catalog
    profile = await cat.create_profile({"name": "p", "notes": "n", "rules": ["week"]})
    product = await cat.create_product({"code": "X1", "name": "Equis", "profile": "p"})
    assert product["profile"] == {"id": profile["id"], "name": "p"}
    product = await cat.update_product(product["id"], {"profile": None})
    assert product["profile"] is None
    with pytest.raises(ValidationError, match="profile: 'zzz' does not exist"):
        await cat.update_product(product["id"], {"profile": "zzz"})
    assert [p["code"] for p in await cat.list_products()] == ["BARE", "LIC", "PRN", "X1"]

    # Things with history cannot be deleted.
    await surveys.sales.record_many([{"external_id": "s1", "product": "PRN", "seller": "m",
                                      "closed_at": "2026-03-01", "customer": {"telegram_id": "5"}}])
    rules = {r["name"]: r for r in await surveys.catalog.list_rules()}
    products = {p["code"]: p for p in await surveys.catalog.list_products()}
    with pytest.raises(InUse):
        await surveys.catalog.delete_rule(rules["week"]["id"])
    with pytest.raises(InUse):
        await surveys.catalog.delete_product(products["PRN"]["id"])
    await surveys.catalog.delete_product(products["X1"]["id"])
    await surveys.catalog.delete_profile(profile["id"])


async def test_toml_import_is_all_or_nothing_and_names_the_entry(surveys, db):
    async with db.engine.connect() as conn:
        before = (await conn.execute(select(func.count()).select_from(survey_questions))).scalar_one()
    bad = b"""
[[questions]]
code = "fine"
scale = "1-5"
text = { es = "a", pt = "b", en = "c" }
weights = [1, 2, 3, 4, 5]

[[questions]]
code = "broken"
scale = "1-5"
text = { es = "a", pt = "b", en = "c" }
weights = [1, 2, 3, 4, 500]
"""
    with pytest.raises(ValidationError) as e:
        await surveys.catalog.import_toml(bad, source="bad.toml")
    assert "questions[2] ('broken')" in str(e.value) and "weight for score 5 is 500" in str(e.value)
    async with db.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(survey_questions))).scalar_one() == before
    with pytest.raises(ValidationError, match="invalid TOML"):
        await surveys.catalog.import_toml(b"[[questions]\n", source="x.toml")
    with pytest.raises(ValidationError, match="unknown section 'rulez'"):
        await surveys.catalog.import_toml(b"[[rulez]]\nname='x'\n", source="x.toml")
    with pytest.raises(ValidationError, match="rules\\[1\\] \\('r'\\): questions: 'ghost' does not exist"):
        await surveys.catalog.import_toml(b"[[rules]]\nname='r'\nstart_after_days=1\nexpires_after_days=1\n"
                                          b"questions=['ghost']\n")

    # Importing again updates in place.
    again = await surveys.catalog.import_toml(b"""
[[rules]]
name = "week"
start_after_days = 8
expires_after_days = 3
questions = ["working"]
operators = ["dora"]
""")
    assert again["rules"] == 1
    week = next(r for r in await surveys.catalog.list_rules() if r["name"] == "week")
    assert week["start_after_days"] == 8 and week["operators"] == ["dora"]
    assert [q["code"] for q in week["questions"]] == ["working"]
    counts = await surveys.catalog.import_toml((REPO / "examples" / "catalog.toml").read_bytes())
    assert counts == {"questions": 4, "rules": 2, "profiles": 2, "products": 2}
