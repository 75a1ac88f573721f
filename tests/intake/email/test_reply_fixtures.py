"""Replies as real mail clients write them (Gmail, Outlook, Apple Mail, Thunderbird in
es/pt/en): what the customer wrote is extracted, and the full original stays with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posventa.intake.email.parse import parse_email

REPLIES = Path(__file__).parent / "fixtures" / "replies"
EXPECTED: dict[str, str] = json.loads((REPLIES / "expected.json").read_text(encoding="utf-8"))
CLIENTS = ("gmail", "outlook", "apple_mail", "thunderbird")
LANGUAGES = ("es", "pt", "en")


def test_one_fixture_per_client_and_language() -> None:
    assert {p.stem for p in REPLIES.glob("*.eml")} == set(EXPECTED) == {
        f"{client}_{language}" for client in CLIENTS for language in LANGUAGES}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_reply_is_extracted_and_the_original_kept(name: str) -> None:
    parsed = parse_email((REPLIES / f"{name}.eml").read_bytes())
    assert parsed.text == EXPECTED[name]
    # The quoted survey question (its numbered choices) is history, not the answer; the
    # agent can still read all of it.
    assert "5) 5" not in parsed.text and "5) 5" in parsed.full_text
    assert parsed.text.split("\n")[0] in parsed.full_text
