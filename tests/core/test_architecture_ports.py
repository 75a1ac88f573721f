"""The reverse of test_architecture.py: adapters reach core through its ports, never its tables.

No module outside ``core/`` imports ``core.persistence`` (the schema, the engine, the
lookup helpers), except the composition root: ``posventa/service.py`` and ``posventa/cli.py``, which build
the ``Database`` and run migrations. Adapters get what they need from ``core``'s public
surface (``core/__init__.py``'s ``__all__``: ports, ``Database`` for the tables an adapter
owns, ``metadata`` and the column types so those tables join the one schema Alembic sees)
or from a core port (``core.ports``).
"""

from __future__ import annotations

import ast

from tests.support import REPO

#: The composition root: the only modules outside core/ allowed to wire persistence.
COMPOSITION_ROOT = frozenset({"service.py", "cli.py"})
ADAPTER_FOLDERS = ("bots", "intake", "kb", "posventa/commands")


def imports_persistence(path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            lines += [node.lineno for a in node.names if _is_persistence(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _is_persistence(node.module) or (node.module in ("core", "posventa.core")
                                                and any(a.name == "persistence" for a in node.names)):
                lines.append(node.lineno)
    return lines


def _is_persistence(module: str) -> bool:
    module = module.removeprefix("posventa.")  # the installed namespace, see pyproject.toml
    return module == "core.persistence" or module.startswith("core.persistence.")


def modules_outside_core():
    for folder in ADAPTER_FOLDERS:
        yield from sorted((REPO / folder).rglob("*.py"))
    yield from sorted(p for p in (REPO / "posventa").glob("*.py") if p.name not in COMPOSITION_ROOT)


def test_no_module_outside_core_imports_core_persistence():
    offenders = {}
    for p in modules_outside_core():
        lines = imports_persistence(p)
        if lines:
            offenders[p.relative_to(REPO).as_posix()] = lines
    assert offenders == {}, "adapters reach core through core's ports (core/__init__.py, core/ports.py)"


def test_the_check_itself_catches_an_offender(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom core.persistence.schema import cases\nfrom core import persistence\n"
                   "import core.persistence\nfrom core.persistence_notes import x\n")
    assert imports_persistence(bad) == [2, 3, 4]
