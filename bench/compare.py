"""Compare benchmarks between two revisions in the same run, on the same machine.

The baseline revision is checked out into a temporary git worktree; each round runs every
chosen benchmark there and in the head (the working tree, or ``--head REV`` checked out
the same way), alternating which goes first (ABBA), so a shared machine's drift falls
on both sides. Each side runs its own revision's ``bench/<name>.py`` with its own code
(``PYTHONPATH`` and the working directory are that tree), with the same interpreter and
arguments. An argument the side's script does not accept is dropped for that side, and
the report says so (an older inbox benchmark has no ``--sla-rounds``, for example).
``--same-scripts`` runs the head's scripts on both sides instead (same measurement, each
side's code), where the baseline's scripts lack a figure such as the CPU per message.

Prints one JSON object: per benchmark and key figure, each side's value in every round,
each side's best (the highest rate, the lowest latency: other agents' load on a shared
machine only ever slows a run down, so the best run is the closest to the code's own
cost), ``ratio`` = head best / baseline best, ``better`` (> 1 when the head is better,
for a rate or a latency alike), the ratio of the medians, the baseline's own
round-to-round spread (its noise), and ``within_noise``: the head is not worse than the
baseline by more than max(``--tolerance``, the baseline's own spread). The machine's load
is recorded per run.

    .venv/bin/python bench/compare.py --baseline e5b02a7 [--head REV] [--bench inbox,sla,...]
                                      [--rounds 3] [--only sqlite|postgres] [--args NAME='--x 1 ...']

With no ``--bench``, the in-process database benchmarks run at sizes that fit a
same-run comparison on a shared 2-core machine (``DEFAULT_ARGS``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ is sys.path[0], and bench/email.py would shadow the standard
# library's email package: put the repo there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import fnmatch  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: The folder holding TREE_FINDER (set while main runs).
SITE = Path()
HIGHER, LOWER = "higher", "lower"

#: Sizes for a same-run comparison: small enough that several rounds of both sides fit in
#: minutes, large enough that a round is not all start-up.
DEFAULT_ARGS: dict[str, str] = {
    "inbox": "--messages 3000 --customers 50 --bare-rows 3000 --sla-rounds 1",
    "contacts": "--contacts 50000 --queries 100",
    "search": "--messages 50000 --queries 100",
    "sla": "--cases 50000 --open 5000 --repeat 50",
    "surveys": "--sales 50000 --customers 2000 --operators 50 --queries 50",
    "email": "--mails 1000 --connections 20 --processes 1",
    "telegram": "--updates 2000 --customers 100 --processes 1",
    "webchat": "--sessions 200 --messages 10 --idle 200 --paced-seconds 3 --processes 1",
}
DEFAULT_BENCHES = ("inbox", "contacts", "search", "sla", "surveys")

#: The figures each benchmark is judged by: dotted-path patterns into its JSON, and
#: which direction is better.
KEY_FIGURES: dict[str, list[tuple[str, str]]] = {
    "inbox": [("*.cpu_us_per_message", LOWER), ("*.client_cpu_us_per_message", LOWER),
              ("*.server_cpu_us_per_message", LOWER), ("*.messages_s", HIGHER), ("*.p50_ms", LOWER), ("*.p99_ms", LOWER),
              ("*.commit_per_row_rows_s", HIGHER), ("*.ratio_to_commit_per_row", HIGHER)],
    "contacts": [("*.search.*.client_cpu_p50_ms", LOWER), ("*.search.*.server_cpu_mean_ms", LOWER),
                 ("*.search.*.p95_ms", LOWER), ("*.load_contacts_per_s", HIGHER)],
    "search": [("sqlite.client_cpu_p50_ms", LOWER), ("postgres.client_cpu_p50_ms", LOWER),
               ("postgres.server_cpu_mean_ms", LOWER), ("sqlite.p50_ms", LOWER), ("postgres.p50_ms", LOWER),
               ("sqlite.p95_ms", LOWER), ("postgres.p95_ms", LOWER), ("*.worst_query_cpu_ms", LOWER)],
    "sla": [("*.overdue_list.client_cpu_p50_ms", LOWER), ("*.due_sorted_inbox.client_cpu_p50_ms", LOWER),
            ("*.overdue_list.server_cpu_mean_ms", LOWER), ("*.due_sorted_inbox.server_cpu_mean_ms", LOWER),
            ("*.overdue_list.p95_ms", LOWER), ("*.due_sorted_inbox.p95_ms", LOWER), ("*.sweep_first_s", LOWER)],
    "surveys": [("*.windows.record_cpu_us_per_sale", LOWER), ("*.windows.record_client_cpu_us_per_sale", LOWER),
                ("*.windows.record_server_cpu_us_per_sale", LOWER), ("*.tick.cpu_s", LOWER),
                ("*.panel.*.client_cpu_p50_ms", LOWER), ("*.windows.record_sales_per_s", HIGHER),
                ("*.tick.seconds", LOWER), ("*.panel.*.p95_ms", LOWER)],
    "email": [("*.mails_s", HIGHER), ("*.p50_ms", LOWER), ("*.p99_ms", LOWER), ("*.ratio_to_bare", HIGHER)],
    "telegram": [("*.updates_s", HIGHER), ("*.ratio_vs_echo", HIGHER)],
    "webchat": [("*.closed_loop.msgs_per_s", HIGHER), ("*.closed_loop.p99_ack_ms", LOWER),
                ("*.paced.p99_ack_ms", LOWER), ("*.ratio_to_echo", HIGHER)],
}


def log(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass(frozen=True)
class Tree:
    """One side of the comparison: a checkout and the revision it holds."""

    role: str
    path: Path
    revision: str
    commit: str
    dirty: bool


@contextmanager
def checkout(role: str, revision: str | None) -> Iterator[Tree]:
    """The working tree (``revision`` None), or ``revision`` in a temporary detached worktree
    that is removed afterwards."""
    if revision is None:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        yield Tree(role, REPO, "working tree", git("rev-parse", "HEAD"), dirty)
        return
    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix=f"posventa-{role}-") as tmp:
        path = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(path), commit)
        try:
            yield Tree(role, path, revision, commit, False)
        finally:
            git("worktree", "remove", "--force", str(path))


def accepted_options(tree: Tree, bench: str) -> set[str]:
    """The --options the tree's script declares (from its --help)."""
    out = subprocess.run([sys.executable, str(tree.path / "bench" / f"{bench}.py"), "--help"], cwd=tree.path,
                         env=tree_env(tree), capture_output=True, text=True, timeout=120)
    return set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", out.stdout))


def split_args(tokens: list[str], accepted: set[str]) -> tuple[list[str], list[str]]:
    """The arguments the script accepts, and those it does not (with their values)."""
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(tokens):
        group = [tokens[i]]
        while i + len(group) < len(tokens) and not tokens[i + len(group)].startswith("--"):
            group.append(tokens[i + len(group)])
        flag = tokens[i].split("=", 1)[0]
        (kept if not flag.startswith("--") or flag in accepted else dropped).extend(group)
        i += len(group)
    return kept, dropped


#: ``sitecustomize`` for every benchmark run: ``posventa.X`` is the side's own tree's X.
#: An interpreter with posventa installed in editable mode answers ``posventa.core`` (and
#: .intake, .bots, .kb, .migrations) with the folders of the checkout it was installed
#: from, whatever ``PYTHONPATH`` says, so without this both sides would run that one
#: checkout's code. A tree from before the namespace (4065b8e: top-level ``core`` with
#: ``import core.x`` inside) gets ``posventa.X`` as an alias of its ``X``, so that the
#: head's scripts run on it (``--same-scripts``).
TREE_FINDER = '''"""Written by bench/compare.py: posventa.X is this tree's own X."""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_TREE = os.environ["POSVENTA_BENCH_TREE"]
_MAPPED = ("core", "intake", "bots", "kb", "migrations")
_NAMESPACED = os.path.isfile(os.path.join(_TREE, "posventa", "__init__.py"))


class _TreeFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "posventa" and not _NAMESPACED:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        top, _, rest = name.removeprefix("posventa.").partition(".")
        if not name.startswith("posventa.") or top not in _MAPPED:
            return None
        if _NAMESPACED:
            if rest:
                return None  # found through the package's __path__, in this tree
            folder = os.path.join(_TREE, top)
            return importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                          submodule_search_locations=[folder])
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        if spec.name == "posventa":
            return None
        module = importlib.import_module(spec.name.removeprefix("posventa."))
        self._own = getattr(self, "_own", {})
        self._own[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        if module.__name__ == "posventa":
            module.__path__ = []
            return
        module.__spec__ = self._own.pop(module.__spec__.name)  # the module's own spec again


sys.meta_path.insert(0, _TreeFinder())
'''


@contextmanager
def tree_finder() -> Iterator[Path]:
    """A folder holding TREE_FINDER as sitecustomize.py, for the runs' PYTHONPATH."""
    with tempfile.TemporaryDirectory(prefix="posventa-compare-site-") as tmp:
        (Path(tmp) / "sitecustomize.py").write_text(TREE_FINDER)
        yield Path(tmp)


def tree_env(tree: Tree, *, site: Path | None = None) -> dict[str, str]:
    """The environment of a run on ``tree``: ``site`` is the folder from ``tree_finder()``
    (default: the one compare.py's main holds)."""
    # The tree's own code first: the interpreter's editable install points at one checkout
    # (TREE_FINDER, found first as sitecustomize, maps posventa.X to this tree's folders).
    site = SITE if site is None else site
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(tree.path)]),
            "POSVENTA_BENCH_TREE": str(tree.path), "PYTHONDONTWRITEBYTECODE": "1"}


def last_json(stdout: str) -> dict[str, Any] | None:
    """The last JSON object printed (the benchmark prints one, indented, at the end)."""
    starts = [m.start() for m in re.finditer(r"^\{", stdout, re.MULTILINE)]
    for start in reversed(starts):
        try:
            return json.loads(stdout[start:])
        except json.JSONDecodeError:
            continue
    return None


def run_bench(tree: Tree, bench: str, args: list[str], timeout: float) -> dict[str, Any]:
    argv = [sys.executable, str(tree.path / "bench" / f"{bench}.py"), *args]
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    log(f"{tree.role}: bench/{bench}.py {shlex.join(args)} (load {load_before[0]})")
    proc = subprocess.run(argv, cwd=tree.path, env=tree_env(tree), capture_output=True, text=True, timeout=timeout)
    result = last_json(proc.stdout) if proc.returncode == 0 else None
    if result is None:
        log(f"{tree.role}: bench/{bench}.py failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return {"seconds": round(time.perf_counter() - t0, 1), "load_avg_before": load_before,
            "load_avg_after": [round(x, 2) for x in os.getloadavg()], "returncode": proc.returncode,
            "result": result}


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, float(value)


def key_figures(bench: str, result: dict[str, Any], extra: list[tuple[str, str]]) -> dict[str, tuple[float, str]]:
    patterns = KEY_FIGURES.get(bench, []) + extra
    figures: dict[str, tuple[float, str]] = {}
    for path, value in leaves(result):
        for pattern, direction in patterns:
            if fnmatch.fnmatchcase(path, pattern):
                figures[path] = (value, direction)
                break
    return figures


def spread(values: list[float]) -> float | None:
    """max / min over the rounds: how much one side varies against itself."""
    positive = [v for v in values if v > 0]
    return round(max(positive) / min(positive), 3) if len(positive) > 1 else None


def summarize(bench: str, base_runs: list[dict[str, Any]], head_runs: list[dict[str, Any]],
              extra: list[tuple[str, str]], tolerance: float) -> dict[str, Any]:
    per_side: dict[str, dict[str, list[float]]] = {"baseline": {}, "head": {}}
    directions: dict[str, str] = {}
    for side, runs in (("baseline", base_runs), ("head", head_runs)):
        for run in runs:
            if run["result"] is None:
                continue
            for path, (value, direction) in key_figures(bench, run["result"], extra).items():
                per_side[side].setdefault(path, []).append(value)
                directions[path] = direction
    figures: dict[str, Any] = {}
    for path in sorted(set(per_side["baseline"]) & set(per_side["head"])):
        base, head = per_side["baseline"][path], per_side["head"][path]
        pick = max if directions[path] == HIGHER else min
        base_best, head_best = pick(base), pick(head)
        ratio = head_best / base_best if base_best else math.inf
        better = ratio if directions[path] == HIGHER else (1 / ratio if ratio else math.inf)
        median_ratio = statistics.median(head) / statistics.median(base) if statistics.median(base) else math.inf
        noise = spread(base)
        allowed = max(tolerance, (noise or 1.0) - 1.0)
        figures[path] = {
            "better_is": directions[path], "baseline": base, "head": head,
            "baseline_best": base_best, "head_best": head_best, "ratio": round(ratio, 3), "better": round(better, 3),
            "ratio_of_medians": round(median_ratio, 3), "baseline_spread": noise,
            "within_noise": better >= 1 / (1 + allowed),
        }
    only_one = sorted(set(per_side["baseline"]) ^ set(per_side["head"]))
    cpu = [f["within_noise"] for path, f in figures.items() if "cpu" in path]
    return {"figures": figures, "within_noise": all(f["within_noise"] for f in figures.values()),
            # The CPU figures alone: on a machine loaded past its cores, wall-clock figures
            # mostly measure the wait for a core.
            "cpu_within_noise": all(cpu) if cpu else None,
            "figures_on_one_side_only": only_one,
            "failed_runs": sum(r["result"] is None for r in base_runs + head_runs)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="the revision to compare against (e.g. e5b02a7)")
    p.add_argument("--head", help="a revision for the other side (default: the working tree as it is)")
    p.add_argument("--bench", default=",".join(DEFAULT_BENCHES),
                   help=f"comma-separated benchmarks (default: {','.join(DEFAULT_BENCHES)})")
    p.add_argument("--rounds", type=int, default=3, help="runs of each benchmark on each side (default 3)")
    p.add_argument("--only", choices=["sqlite", "postgres"], help="one engine only (passed to every benchmark)")
    p.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                   help="arguments for one benchmark instead of DEFAULT_ARGS, e.g. inbox='--messages 6000'")
    p.add_argument("--figure", action="append", default=[], metavar="NAME:PATTERN:higher|lower",
                   help="another figure to compare, e.g. 'sla:*.activity_counts.p95_ms:lower'")
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="how much worse the head may be, at least (default 0.10; the baseline's own spread "
                        "if larger)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one benchmark run may take")
    p.add_argument("--same-scripts", action="store_true",
                   help="run the head's bench/ scripts on both sides (the baseline's code, the head's "
                        "measurement), for a baseline whose own scripts lack a figure; needs scripts that "
                        "import only what the baseline has")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benches = [b.strip() for b in args.bench.split(",") if b.strip()]
    unknown = [b for b in benches if not (REPO / "bench" / f"{b}.py").is_file()]
    if unknown:
        print(f"compare: no such benchmark: {', '.join(unknown)}", file=sys.stderr)
        return 2
    bench_args = dict(DEFAULT_ARGS)
    for item in args.args:
        name, _, value = item.partition("=")
        bench_args[name.strip()] = value
    extra: dict[str, list[tuple[str, str]]] = {}
    for item in args.figure:
        name, pattern, direction = item.rsplit(":", 2) if item.count(":") >= 2 else (item, "", "")
        if direction not in (HIGHER, LOWER) or not pattern:
            print(f"compare: --figure {item!r}: expected NAME:PATTERN:higher|lower", file=sys.stderr)
            return 2
        extra.setdefault(name, []).append((pattern, direction))
    started = time.perf_counter()
    report: dict[str, Any] = {"compare": "bench/compare.py", "rounds": args.rounds, "cpus": os.cpu_count(),
                              "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "benchmarks": {}}
    global SITE
    with tree_finder() as SITE, checkout("baseline", args.baseline) as base, checkout("head", args.head) as head:
        report["baseline"] = {"revision": base.revision, "commit": base.commit}
        report["head"] = {"revision": head.revision, "commit": head.commit, "uncommitted_changes": head.dirty}
        report["scripts"] = "the head's on both sides" if args.same_scripts else "each side's own"
        if args.same_scripts:
            for script in (head.path / "bench").glob("*.py"):
                (base.path / "bench" / script.name).write_bytes(script.read_bytes())
        for bench in benches:
            tokens = shlex.split(bench_args.get(bench, "")) + (["--only", args.only] if args.only else [])
            sides: dict[str, tuple[Tree, list[str], list[str]]] = {}
            for tree in (base, head):
                if not (tree.path / "bench" / f"{bench}.py").is_file():
                    sides = {}
                    log(f"bench/{bench}.py does not exist at the {tree.role}: skipped")
                    break
                kept, dropped = split_args(tokens, accepted_options(tree, bench))
                sides[tree.role] = (tree, kept, dropped)
            if not sides:
                report["benchmarks"][bench] = {"skipped": "missing on one side"}
                continue
            runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "head": []}
            for r in range(args.rounds):
                order = ("baseline", "head") if r % 2 == 0 else ("head", "baseline")  # ABBA
                for role in order:
                    tree, kept, _ = sides[role]
                    runs[role].append(run_bench(tree, bench, kept, args.timeout))
            report["benchmarks"][bench] = {
                "args": {role: kept for role, (_, kept, _) in sides.items()},
                "dropped_args": {role: dropped for role, (_, _, dropped) in sides.items() if dropped},
                **summarize(bench, runs["baseline"], runs["head"], extra.get(bench, []), args.tolerance),
                "runs": {role: [{k: v for k, v in run.items() if k != "result"} for run in rs]
                         for role, rs in runs.items()},
            }
    report["within_noise"] = all(b.get("within_noise", True) for b in report["benchmarks"].values())
    report["cpu_within_noise"] = all(b.get("cpu_within_noise") in (True, None) for b in report["benchmarks"].values())
    report["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
