"""A PostgreSQL server of the test's own, to stop and start at will.

The machine's shared server on 127.0.0.1:5432 serves other engineers and CI, so it is never
touched: this one gets its own data directory in a temporary folder, a free port, trust
authentication on 127.0.0.1 only, and its Unix socket in that folder. PostgreSQL refuses to
run as root, so as root every command runs as the ``postgres`` OS user (``runuser``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def _bin_dir() -> Path | None:
    """The newest installed server binaries that include initdb and pg_ctl."""
    found = []
    for candidate in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            with contextlib.suppress(ValueError):
                found.append((float(path.parent.name), path))
    return max(found)[1] if found else None


def unavailable_reason() -> str | None:
    """Why a private server cannot be run here, or None when it can."""
    if _bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl under /usr/lib/postgresql/*/bin) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no 'postgres' OS user to run a private PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start PostgreSQL as the 'postgres' user"
    return None


class PrivatePostgres:
    def __init__(self, *, port: int) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None, unavailable_reason()
        self.bin = bin_dir
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="pv-fault-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.running = False

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr[-2000:]}\n"
                               f"{self.log_tail()}")
        return result

    def init(self) -> None:
        # --no-sync and fsync=off: a throwaway cluster; a stop, even "immediate", is a process
        # crash, not a power cut, so the OS still holds every committed WAL page.
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                   "-c full_page_writes=off -c max_connections=60")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown that disconnects everyone; ``immediate``: a crash (the
        next start replays the WAL)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop (if running) and delete everything; never raises."""
        if self.data.exists():
            with contextlib.suppress(Exception):
                subprocess.run([*self._as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                                "immediate", "-w", "-t", "30", "stop"], capture_output=True, timeout=40,
                               stdin=subprocess.DEVNULL)
        self.running = False
        shutil.rmtree(self.root, ignore_errors=True)
