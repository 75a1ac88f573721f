"""core/ is the domain: it imports no transport or adapter library, and no adapter."""

from __future__ import annotations

import ast

from tests.support import REPO

FORBIDDEN = {"telegram", "aiosmtpd", "aiosmtplib", "aiohttp", "aiohttp_jinja2", "rapidfuzz", "httpx", "bots",
             "intake", "kb", "service", "cli", "prometheus_client", "jinja2"}


def _root(dotted: str) -> str:
    """The top-level part of a module path, with posventa's own namespace looked through:
    ``posventa.intake.http`` is the ``intake`` adapter, ``posventa.service`` the root."""
    parts = dotted.split(".")
    return parts[1] if parts[0] == "posventa" and len(parts) > 1 else parts[0]


def imported_roots(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _root(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "posventa":  # from posventa import service
                for alias in node.names:
                    yield alias.name, node.lineno
            else:
                yield _root(node.module), node.lineno


def test_core_imports_no_transport_or_adapter():
    offenders = [f"{p.relative_to(REPO)}:{line} imports {root}"
                 for p in sorted((REPO / "core").rglob("*.py"))
                 for root, line in imported_roots(p) if root in FORBIDDEN]
    assert offenders == []


def test_the_check_itself_catches_an_offender(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom aiohttp import web\n")
    assert ("aiohttp", 2) in list(imported_roots(bad))


def test_command_line_presentation_lives_in_commands_only():
    """argparse and rich (arguments, tables, progress bars) are the CLI's: ``posventa/cli.py``
    and ``posventa/commands/``, never the domain or the adapters."""
    offenders = [f"{p.relative_to(REPO)}:{line} imports {root}"
                 for folder in ("core", "intake", "bots", "kb")
                 for p in sorted((REPO / folder).rglob("*.py"))
                 for root, line in imported_roots(p) if root in {"argparse", "rich"}]
    assert offenders == []


def _calls(path, names):
    """Calls of the functions or classes ``names`` as imported (``Database(...)``,
    ``persistence.Database(...)``); a method of the same name on some object
    (aiohttp's ``response.prepare(request)``) is another thing."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in names:
                yield func.id, node.lineno
            elif isinstance(func, ast.Attribute) and func.attr in names and isinstance(func.value, ast.Name) \
                    and func.value.id in ("persistence", "migrate", "core"):
                yield func.attr, node.lineno


def test_the_database_is_built_and_its_schema_checked_in_the_composition_root_only():
    """``serve`` and every command get their parts from ``service.build_parts``: one
    ``Database(...)`` and one schema check (``prepare``) for the whole program."""
    sources = [REPO / "posventa" / "cli.py", *[p for folder in ("core", "intake", "bots", "kb", "posventa/commands")
                                               for p in sorted((REPO / folder).rglob("*.py"))]]
    offenders = [f"{p.relative_to(REPO)}:{line} calls {name}" for p in sources
                 for name, line in _calls(p, {"Database", "prepare"})]
    assert offenders == []
    assert sorted(name for name, _ in _calls(REPO / "posventa" / "service.py", {"Database", "prepare"})) == ["Database", "prepare"]


def test_the_builder_check_itself_catches_an_offender(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("db = Database(url)\nawait prepare(db)\nawait response.prepare(request)\n"
                   "db = persistence.Database(url)\n")
    assert sorted(_calls(bad, {"Database", "prepare"}), key=lambda call: call[1]) == [
        ("Database", 1), ("prepare", 2), ("Database", 4)]
