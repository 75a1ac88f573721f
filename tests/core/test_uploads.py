"""core/uploads.py: which files a visitor may send, decided by their bytes."""

from __future__ import annotations

import pytest

from posventa.core.texts import LANGUAGES
from posventa.core.uploads import EMPTY, TOO_LARGE, TYPE_REFUSED, UploadCheck, UploadPolicy, UploadRefused, matching_name, \
    refusal_text

POLICY = UploadPolicy.of(1000, ("image", "pdf", "text"))


def check(data: bytes, policy: UploadPolicy = POLICY, chunk: int = 7) -> str:
    c = UploadCheck(policy)
    for i in range(0, len(data), chunk):
        c.feed(data[i:i + chunk])
    return c.finish()


def refused(data: bytes, policy: UploadPolicy = POLICY) -> str:
    with pytest.raises(UploadRefused) as info:
        check(data, policy)
    return info.value.reason


def test_text_is_valid_utf8_without_controls_even_split_inside_a_character():
    # "ção ✓" split every 7 bytes cuts multi-byte characters: still text.
    assert check("Instalação ✓ ok\r\n\tfim\f".encode() * 3) == "text/plain; charset=utf-8"
    assert check("\ufeffcon BOM".encode()) == "text/plain; charset=utf-8"


@pytest.mark.parametrize("data", [
    b"\x7fELF\x02\x01\x01" + bytes(60),        # ELF
    b"MZ" + b"this is not text" * 3,            # MZ header, even followed by text
    b"#!/usr/bin/env python\nprint(1)\n",       # a script
    "\ufeff#!/bin/sh\n".encode(),               # a script behind a BOM
    b"plain\x00text",                           # NUL
    b"escape \x1b[31m red",                     # terminal escapes
    b"caf\xe9",                                 # Latin-1, not UTF-8
    "ends mid-character é".encode()[:-1],       # truncated UTF-8
    b"PK\x03\x04" + bytes(40),                  # zip (an office document, an APK)
])
def test_executables_binaries_and_other_types_are_refused(data):
    assert refused(data) == TYPE_REFUSED


def test_images_and_pdf_by_magic_number_within_the_policy():
    png = b"\x89PNG\r\n\x1a\n" + bytes(40)
    assert check(png) == "image/png"
    assert check(b"%PDF-1.7\n" + bytes(40)) == "application/pdf"
    only_pdf = UploadPolicy.of(1000, ("pdf",))
    assert refused(png, only_pdf) == TYPE_REFUSED
    assert refused(b"just text", only_pdf) == TYPE_REFUSED


def test_size_is_refused_as_soon_as_it_passes_the_limit_and_empty_files_too():
    c = UploadCheck(POLICY)
    c.feed(bytes(1000))
    with pytest.raises(UploadRefused) as info:
        c.feed(b"x")
    assert info.value.reason == TOO_LARGE
    assert refused(b"") == EMPTY


def test_refusals_are_worded_in_every_language_and_names_match_the_bytes():
    for reason, data in ((TYPE_REFUSED, b"MZ"), (EMPTY, b"")):
        with pytest.raises(UploadRefused) as info:
            check(data)
        assert info.value.reason == reason
        assert len({refusal_text(info.value, POLICY, lang) for lang in LANGUAGES}) == 3
    assert refusal_text(UploadRefused(TOO_LARGE, "x"), UploadPolicy.of(10_485_760, ("image",)), "es") == \
        "El archivo es demasiado grande: el máximo es 10 MB."
    assert matching_name("photo.jpeg", "image/jpeg") == "photo.jpeg"
    assert matching_name("photo.jpg", "image/png") == "photo.jpg.png"
    assert matching_name("notes", "text/plain; charset=utf-8") == "notes.txt"
    with pytest.raises(ValueError):
        UploadPolicy.of(10, ("exe",))
