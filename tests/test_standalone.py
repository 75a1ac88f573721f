"""The repository stands alone: a plain clone, with nothing beside it, runs its tests and benchmarks.

Nothing in tests/, bench/ or scripts/ may reach a path outside the repository (a sibling
``shared/`` folder was once read for the API contracts and the KB evaluation data; both are now
copied under tests/, with their sources and licences noted)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Ways a file could name a folder beside the repository.
OUTSIDE = re.compile(r"""\.\./shared|REPO\.parent|["']shared["']\s*/|/work/shared""")


def _sources() -> list[Path]:
    files: list[Path] = []
    for top in ("tests", "bench", "scripts"):
        for path in (REPO / top).rglob("*"):
            if path.is_file() and path.suffix not in {".json", ".jsonl", ".md"} and path != Path(__file__):
                files.append(path)
    return files


def test_no_test_bench_or_script_reads_outside_the_repository():
    offenders = []
    for path in _sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert offenders == []


def test_the_contracts_and_the_kb_data_are_in_the_repository():
    for name in ("contracts/telegram-bot-api.json", "contracts/discourse-openapi.json",
                 "contracts/README.md", "data/kb-eval/articles.jsonl",
                 "data/kb-eval/questions-dev.jsonl", "data/kb-eval/README.md"):
        assert (REPO / "tests" / name).is_file(), name
