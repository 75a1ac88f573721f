"""The attachment store: content-addressed files, and raw payloads kept for audit."""

from __future__ import annotations

import hashlib

import pytest

from posventa.core.attachments import AttachmentStore, safe_filename


async def test_attachments_are_content_addressed(tmp_path):
    store = AttachmentStore(tmp_path)
    ref = await store.put(b"%PDF-1.4 factura", filename="../../etc/factura 1.pdf", content_type="application/pdf")
    assert ref.sha256 == hashlib.sha256(b"%PDF-1.4 factura").hexdigest() and ref.size == 16
    assert ref.filename == "factura 1.pdf"
    assert store.path_for(ref.sha256).read_bytes() == b"%PDF-1.4 factura"
    with pytest.raises(ValueError):
        store.path_for("../../etc/passwd")


async def test_raw_payloads_round_trip_in_segments_and_files(tmp_path):
    store = AttachmentStore(tmp_path)
    small = await store.put_raw(b"From: a@b\r\n\r\nhola", kind="email", suffix=".eml", durable=False)
    big = await store.put_raw(b"x" * 200_000, kind="email", suffix=".eml", durable=False)
    own = await store.put_raw(b"durable copy", kind="email", suffix=".eml")
    assert small.split("@")[0] == big.split("@")[0]  # one segment file, appended
    assert store.open_raw(small) == b"From: a@b\r\n\r\nhola"
    assert store.open_raw(big) == b"x" * 200_000
    assert store.open_raw(own) == b"durable copy"
    store.close()
    # A new store (a restarted process) still reads what the old one wrote.
    assert AttachmentStore(tmp_path).open_raw(small).endswith(b"hola")
    for bad in ("../outside.eml", "../outside.eml@0+4", "/etc/passwd"):
        with pytest.raises(ValueError):
            store.open_raw(bad)


@pytest.mark.parametrize("name,expected", [("a/b\\\\c.txt", "c.txt"), ("", "attachment"), ("..", "attachment"),
                                           ("ñandú.png", "ñandú.png"), ("x\x00y\r\n.pdf", "x_y_.pdf")])
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected
