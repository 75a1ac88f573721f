"""The user-facing documentation lives in the repository: README.md and docs/ link only to
files that exist here, and name no design notes or folders outside it."""

from __future__ import annotations

import re

from tests.support import REPO

#: Markdown links to local files: [text](path) or [text](path#anchor), not URLs.
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(?:#[^)]*)?\)")


def _pages():
    return [REPO / "README.md", REPO / "deploy" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_docs_cover_the_protocol_the_config_and_the_api():
    names = {p.name for p in (REPO / "docs").glob("*.md")}
    assert {"webchat-protocol.md", "config.md", "api.md"} <= names
    readme = (REPO / "README.md").read_text()
    for name in ("docs/webchat-protocol.md", "docs/config.md", "docs/api.md"):
        assert f"]({name})" in readme, name
    # The widget's source points to the protocol document it speaks.
    assert "docs/webchat-protocol.md" in (REPO / "intake" / "webchat" / "static" / "widget.js").read_text()


def test_every_local_link_resolves_inside_the_repository():
    broken = []
    for page in _pages():
        for target in LINK.findall(page.read_text()):
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{page.relative_to(REPO)} → {target}")
    assert broken == []


def test_no_reference_to_design_notes_outside_the_repository():
    for page in _pages():
        text = page.read_text()
        assert "DESIGN.md" not in text, page  # (links outside the repository: the test above)
