"""Instructions per inbox message, counted by valgrind, for two revisions: a figure that
does not move with the machine's load.

CPU time per message on a shared 2-core machine swings 1.3-1.7x from one run to the next,
too much to settle "within 10 % of before". The number of instructions executed does not
depend on the load: ``valgrind --tool=cachegrind --cache-sim=no`` counts them, a run's
total the same to about 0.1 % from run to run.

For each side (the baseline revision, and the head: the working tree, or ``--head REV``)
a small driver runs under cachegrind twice: a warm-up of ``--warmup`` messages (500)
through ``bench/inbox.py``'s ``pipeline`` (50 concurrent customers) on a fresh database,
then ``--messages`` N more (3000), or none. The difference of the two runs' instruction
counts, divided by N, is the cost of one message: start-up, imports, migrations and the
warm-up are in both runs and cancel. Prints one JSON object: each side's instructions
per message (one value per ``--repeat``), their medians, ``ratio`` = head / baseline, and
the C functions whose instructions per message differ most between the sides (from the
cachegrind files: ``sqlite3VdbeExec`` is SQLite's work, ``_PyEval_EvalFrameDefault``
Python's).

    .venv/bin/python bench/instructions.py --baseline 5bf1d0d [--head REV] [--messages 3000]
        [--warmup 500] [--customers 50] [--engine sqlite|postgres] [--without-fulltext]
        [--without-typed-answers] [--repeat 1] [--top 15] [--out-dir DIR]

Both sides run the head's bench/ scripts (as ``bench/compare.py --same-scripts``: the same
measurement, each side's posventa code, ``TREE_FINDER`` aliasing ``posventa.X`` on a tree
from before the namespace); the driver checks which ``core/inbox.py`` it imported and the
report shows it. ``--without-fulltext`` drops issue #21's full-text index first
(``bench.inbox.drop_fulltext``; nothing on a revision without it), and
``--without-typed-answers`` skips reading each message to an unclassified case for a
typed case type (39d3633, the seeds' mandatory case type): two later issues' costs,
left out to see what the rest of the head costs against the baseline. Each side's 2 x
``--repeat`` runs go at most two at a time (valgrind runs one core per process: a run of
3,500 messages on SQLite takes 15-35 s here, the whole comparison about 100 s).

The figure per message (a difference of two runs) repeats to about 1 % (dict lookups and
the type cache depend on object addresses, the WAL's checkpoints on timing;
``PYTHONHASHSEED`` is fixed at 0 so the string hashes do not add to it): ``--repeat``
shows the spread. ``???`` in the function list is
code without symbols: mostly SQLite's internal functions (Debian's libsqlite3 keeps only
its exported ones, such as ``sqlite3VdbeExec``), FTS5's among them.

Limits: on PostgreSQL only the client process is counted (the server's backends run
outside valgrind; the JSON says so). valgrind must be installed (``apt-get install
valgrind``); none of this runs in the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ is sys.path[0], and bench/email.py would shadow the standard
# library's email package: put the repo there instead. As the driver, "the repo" is a
# folder holding only a copy of the head's bench/ (see copy_scripts).
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from bench.compare import Tree, checkout, tree_env, tree_finder  # noqa: E402

VALGRIND = ("valgrind", "--tool=cachegrind", "--cache-sim=no")
#: valgrind processes at once: one core each, and the machine has two.
PARALLEL = 2
DRIVER = "--driver"

# valgrind's closing lines on stderr: "==12345== I   refs:      7,857,427,624".
_I_REFS = re.compile(r"^==\d+==\s+I\s+refs:\s+([\d,]+)\s*$", re.MULTILINE)


# --- Reading cachegrind's output ---------------------------------------------------------

def valgrind_i_refs(stderr: str) -> int | None:
    """The instruction count valgrind prints on stderr when the program ends (the last one:
    the program's own stderr comes first)."""
    found = _I_REFS.findall(stderr)
    return int(found[-1].replace(",", "")) if found else None


def _ir_column(out_text: str) -> int:
    """Which column of the count lines is Ir (the only event with --cache-sim=no)."""
    for line in out_text.splitlines():
        if line.startswith("events:"):
            return line.split()[1:].index("Ir")
    raise ValueError("not a cachegrind out file: no 'events:' line")


def summary_i_refs(out_text: str) -> int:
    """The total instruction count from a cachegrind out file's ``summary:`` line."""
    column = _ir_column(out_text)
    for line in out_text.splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1:][column])
    raise ValueError("not a cachegrind out file: no 'summary:' line")


def function_i_refs(out_text: str) -> dict[str, int]:
    """Instructions per C function in a cachegrind out file: ``fl=FILE`` and ``fn=NAME``
    lines, then ``LINE COUNT...`` lines for that function. A function met under several
    files (code inlined from a header) is summed under its one name."""
    column = _ir_column(out_text) + 1  # after the line number
    counts: dict[str, int] = {}
    function: str | None = None
    for line in out_text.splitlines():
        if line.startswith("fn="):
            function = line[3:]
        elif line.startswith("fl="):
            function = None
        elif function is not None and line[:1].isdigit():
            fields = line.split()
            if len(fields) > column:
                counts[function] = counts.get(function, 0) + int(fields[column])
    return counts


# --- The driver: one process under valgrind ----------------------------------------------

def drive(argv: list[str]) -> int:
    """The warm-up and N messages on a fresh database of one engine, in this process.

    Started by main() under valgrind, with the side's tree on PYTHONPATH and, first on
    sys.path, a folder holding only the head's bench/: ``bench.X`` is the head's script,
    ``posventa``/``core``/``tests`` are the side's (nothing else there to shadow them).
    Prints which files it took, then one JSON line."""
    p = argparse.ArgumentParser(prog="instructions.py --driver")
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--customers", type=int, required=True)
    p.add_argument("--engine", choices=["sqlite", "postgres"], required=True)
    p.add_argument("--without-fulltext", action="store_true")
    p.add_argument("--without-typed-answers", action="store_true")
    args = p.parse_args(argv)

    import asyncio

    import posventa.core.inbox as core_inbox
    from bench import inbox
    from bench.support import on_each_database

    if args.without_typed_answers and hasattr(core_inbox, "typed_answer"):
        # Every message to an unclassified case is read for a typed case type (39d3633,
        # the seeds' mandatory case type, after 5bf1d0d): left out to see what else costs.
        core_inbox.typed_answer = lambda message, case_id: message
    print(f"instructions driver: posventa.core.inbox is {core_inbox.__file__}, "
          f"the pipeline is {inbox.__file__}", file=sys.stderr, flush=True)

    async def run_one(db: Any) -> dict[str, Any]:
        if args.without_fulltext:
            await inbox.drop_fulltext(db)
        warm = await inbox.pipeline(db, args.warmup, args.customers, prefix="warm-")
        run = await inbox.pipeline(db, args.messages, args.customers, prefix="run-") if args.messages else {}
        # The batches depend on timing (messages arriving while a commit runs): a
        # difference between runs in the instructions may come from there.
        return {"messages": run.get("messages", 0), "mean_batch": run.get("mean_batch", warm["mean_batch"])}

    result = asyncio.run(on_each_database(args.engine, run_one))[args.engine]
    print(json.dumps({"messages": result["messages"], "mean_batch": result["mean_batch"],
                      "core_inbox_file": core_inbox.__file__, "pipeline_file": inbox.__file__}), flush=True)
    return 0


# --- The comparison ----------------------------------------------------------------------

def log(message: str) -> None:
    print(f"[instructions {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Job:
    tree: Tree
    messages: int
    repeat: int


@dataclass(frozen=True)
class Run:
    job: Job
    #: Messages the driver put through after the warm-up (N rounded down to the customers).
    messages: int
    i_refs: int
    functions: dict[str, int]
    #: Messages per commit in the counted part (the warm-up's with none).
    mean_batch: float
    core_inbox_file: str
    pipeline_file: str
    seconds: float


@contextmanager
def copy_scripts(head: Tree) -> Iterator[Path]:
    """A folder holding only ``bench/``: the head's scripts, and this file as the driver
    (a ``--head REV`` from before it has none)."""
    with tempfile.TemporaryDirectory(prefix="posventa-instructions-scripts-") as tmp:
        bench = Path(tmp) / "bench"
        bench.mkdir()
        for script in (head.path / "bench").glob("*.py"):
            shutil.copyfile(script, bench / script.name)
        shutil.copyfile(Path(__file__).resolve(), bench / "instructions.py")
        yield Path(tmp)


def run_job(job: Job, *, scripts: Path, site: Path, out_dir: Path, args: argparse.Namespace) -> Run:
    name = f"{job.tree.role}-{job.messages}-{job.repeat}"
    out_file = out_dir / f"cachegrind.{name}.out"
    argv = [*VALGRIND, f"--cachegrind-out-file={out_file}", sys.executable, str(scripts / "bench" / "instructions.py"),
            DRIVER, "--messages", str(job.messages), "--warmup", str(args.warmup), "--customers", str(args.customers),
            "--engine", args.engine, *(["--without-fulltext"] if args.without_fulltext else []),
            *(["--without-typed-answers"] if args.without_typed_answers else [])]
    # A fixed hash seed: the same dict and set layouts in every run (fewer collisions in
    # one run than the other would show as a difference).
    env = {**tree_env(job.tree, site=site), "PYTHONHASHSEED": "0"}
    log(f"{name}: started (load {os.getloadavg()[0]:.2f})")
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=job.tree.path, env=env, capture_output=True, text=True, timeout=args.timeout)
    seconds = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: the driver failed (exit {proc.returncode}): {proc.stderr.strip()[-3000:]}")
    out_text = out_file.read_text()
    i_refs = summary_i_refs(out_text)
    shown = valgrind_i_refs(proc.stderr)
    if shown is not None and shown != i_refs:
        raise RuntimeError(f"{name}: valgrind printed {shown} I refs, its out file says {i_refs}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if not Path(report["core_inbox_file"]).resolve().is_relative_to(job.tree.path.resolve()):
        raise RuntimeError(f"{name}: imported {report['core_inbox_file']}, not the {job.tree.role}'s "
                           f"({job.tree.path}): the two sides would run the same code")
    if not Path(report["pipeline_file"]).resolve().is_relative_to(scripts.resolve()):
        raise RuntimeError(f"{name}: the pipeline came from {report['pipeline_file']}, not the head's scripts")
    log(f"{name}: {i_refs:,} instructions in {seconds} s")
    return Run(job, report["messages"], i_refs, function_i_refs(out_text), report["mean_batch"],
               report["core_inbox_file"], report["pipeline_file"], seconds)


def per_message(runs: list[Run], tree: Tree, repeat: int) -> tuple[Run, Run]:
    """The (N = 0, N) pair of runs of one side and repeat."""
    mine = {r.job.messages: r for r in runs if r.job.tree is tree and r.job.repeat == repeat}
    zero = mine.pop(0)
    (n,) = mine.values()
    if n.messages <= 0:
        raise RuntimeError(f"{tree.role}: no messages after the warm-up")
    return zero, n


def side_report(runs: list[Run], tree: Tree, repeats: int) -> tuple[dict[str, Any], dict[str, float]]:
    """One side's instructions per message in each repeat, and per C function (the mean
    over the repeats)."""
    values: list[float] = []
    functions: dict[str, float] = {}
    for k in range(repeats):
        zero, n = per_message(runs, tree, k)
        values.append((n.i_refs - zero.i_refs) / n.messages)
        for fn in n.functions.keys() | zero.functions.keys():
            delta = (n.functions.get(fn, 0) - zero.functions.get(fn, 0)) / n.messages / repeats
            functions[fn] = functions.get(fn, 0.0) + delta
    core_files = sorted({r.core_inbox_file for r in runs if r.job.tree is tree})
    report = {
        "revision": tree.revision, "commit": tree.commit,
        **({"uncommitted_changes": tree.dirty} if tree.role == "head" else {}),
        "core_inbox_file": [str(Path(f).relative_to(tree.path)) if Path(f).is_relative_to(tree.path) else f
                            for f in core_files],
        "instructions_per_message": [round(v, 1) for v in values],
        "median": round(statistics.median(values), 1),
        "spread": round(max(values) / min(values), 4) if len(values) > 1 and min(values) > 0 else None,
    }
    return report, functions


def top_functions(base: dict[str, float], head: dict[str, float], top: int) -> list[dict[str, Any]]:
    """The C functions whose instructions per message differ most between the sides."""
    rows = [{"function": fn, "baseline": round(base.get(fn, 0.0), 1), "head": round(head.get(fn, 0.0), 1),
             "difference": round(head.get(fn, 0.0) - base.get(fn, 0.0), 1)} for fn in base.keys() | head.keys()]
    rows.sort(key=lambda r: (-abs(r["difference"]), r["function"]))
    return rows[:top]


def valgrind_version() -> str:
    return subprocess.run(["valgrind", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="the revision to compare against (e.g. 5bf1d0d)")
    p.add_argument("--head", help="a revision for the other side (default: the working tree as it is)")
    p.add_argument("--messages", type=int, default=3000, help="messages counted after the warm-up (default 3000)")
    p.add_argument("--warmup", type=int, default=500, help="messages before, in both runs (default 500)")
    p.add_argument("--customers", type=int, default=50, help="concurrent customers (default 50)")
    p.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite",
                   help="the database (default sqlite; on postgres only the client process is counted)")
    p.add_argument("--without-fulltext", action="store_true",
                   help="drop issue #21's full-text index before the warm-up (nothing on a revision without it)")
    p.add_argument("--without-typed-answers", action="store_true",
                   help="skip reading each message to an unclassified case for a typed case type (39d3633)")
    p.add_argument("--repeat", type=int, default=1, help="pairs of runs per side, to show the spread (default 1)")
    p.add_argument("--top", type=int, default=15, help="C functions listed by difference (default 15)")
    p.add_argument("--out-dir", type=Path, help="keep the cachegrind out files here (for cg_annotate)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one valgrind run may take")
    args = p.parse_args(argv)
    if args.messages < args.customers or args.repeat < 1:
        p.error("--messages must be at least --customers, --repeat at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="posventa-instructions-") as tmp, tree_finder() as site, \
            checkout("baseline", args.baseline) as base, checkout("head", args.head) as head, \
            copy_scripts(head) as scripts:
        out_dir = args.out_dir or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        # The long runs first, so that the short ones fill in beside the last long one.
        jobs = [Job(tree, n, k) for n in (args.messages, 0) for k in range(args.repeat) for tree in (base, head)]
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            runs = list(pool.map(lambda job: run_job(job, scripts=scripts, site=site, out_dir=out_dir, args=args),
                                 jobs))
        base_report, base_functions = side_report(runs, base, args.repeat)
        head_report, head_functions = side_report(runs, head, args.repeat)
        ratios = [round(h / b, 4) for h, b in zip(head_report["instructions_per_message"],
                                                  base_report["instructions_per_message"], strict=True)]
        report: dict[str, Any] = {
            "benchmark": "instructions",
            "engine": args.engine,
            "counted": ("this process, SQLite included" if args.engine == "sqlite" else
                        "the client process only: the PostgreSQL server's backends run outside valgrind"),
            "messages": runs[0].messages, "warmup": args.warmup, "customers": args.customers,
            "fulltext": not args.without_fulltext, "typed_answers": not args.without_typed_answers,
            "repeat": args.repeat,
            "scripts": "the head's bench/ on both sides",
            "baseline": base_report, "head": head_report,
            "ratio": round(head_report["median"] / base_report["median"], 4),
            "ratio_per_repeat": ratios,
            "top_functions_by_difference": top_functions(base_functions, head_functions, args.top),
            "runs": [{"side": r.job.tree.role, "messages": r.job.messages, "repeat": r.job.repeat,
                      "i_refs": r.i_refs, "mean_batch": r.mean_batch, "seconds": r.seconds} for r in runs],
            "valgrind": valgrind_version(),
            "out_dir": str(args.out_dir) if args.out_dir else None,
            "load_avg_before": load_before, "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "seconds": round(time.perf_counter() - started, 1), "cpus": os.cpu_count(),
        }
    print(json.dumps(report, indent=2, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [DRIVER]:
        sys.exit(drive(sys.argv[2:]))
    sys.exit(main())
