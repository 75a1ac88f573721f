"""What every ParsedEmail promises, whatever bytes it came from."""

from __future__ import annotations

import re

from posventa.intake.email.parse import EmailLimits, ParsedEmail

_SURROGATE_OR_CONTROL = re.compile("[\ud800-\udfff\x00-\x08\x0b-\x1f\x7f]")


def assert_well_formed(parsed: ParsedEmail, limits: EmailLimits = EmailLimits()) -> None:
    strings = [parsed.from_address, parsed.subject, parsed.text, parsed.full_text, *parsed.to, *parsed.cc]
    strings += [s for s in (parsed.from_name, parsed.message_id, parsed.list_id, parsed.auto_submitted) if s]
    strings += [*parsed.in_reply_to, *parsed.references, *(a.filename for a in parsed.attachments)]
    for value in strings:
        # Storable as UTF-8, and no control characters (TAB and LF only in bodies).
        assert not _SURROGATE_OR_CONTROL.search(value), value
        value.encode("utf-8")
    for one_line in (parsed.subject, parsed.from_address, parsed.from_name or "", *parsed.to, *parsed.cc):
        assert "\n" not in one_line and "\t" not in one_line
    assert len(parsed.full_text) <= limits.max_text_chars
    assert len(parsed.subject) <= 998
    assert parsed.from_address == "" or parsed.from_address.count("@") == 1
    assert parsed.message_id is None or (parsed.message_id[0], parsed.message_id[-1]) == ("<", ">")
    assert all(len(a.data) <= limits.max_attachment_bytes for a in parsed.attachments)
    assert sum(len(a.data) for a in parsed.attachments) <= limits.max_total_attachment_bytes
    assert all(a.filename and "/" not in a.filename and "\\" not in a.filename for a in parsed.attachments)
    assert parsed.language in (None, "es", "pt", "en")
