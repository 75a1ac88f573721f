"""KB search latency at 10,000 and 100,000 articles, against rapidfuzz brute force, on one core.

    python bench/kb_speed.py [--articles FILE] [--questions FILE] [--sizes 10000 100000]
                             [--queries 300] [--brute-queries 30] [--lexical-only]

``search`` is what ``serve`` runs per suggestion (``kb.search.KbSearch``): encoding the
query with the sentence model, the lexical index, and the semantic rerank of its
candidates; ``lexical`` is the same index without the model, for comparison.  Passage
vectors are content-addressed, so the synthetic articles below (made of real passages)
encode only the distinct passages; ``build_s`` includes that.

Synthetic articles are recombined from the real kb-eval ones: the title of one article
with a numbered suffix, and a body interleaving the passages of two articles.  That
keeps the real vocabulary, lengths and word frequencies (so posting lists grow as they
would in a bigger KB of the same kind) without inventing text.  Queries are real dev
questions.  For comparison the same run times rapidfuzz's plain
``process.extract(query, texts, scorer=WRatio, limit=3)`` over the same title+body
strings.  Prints one JSON object; p95/p50 are per query, in milliseconds, wall-clock
and CPU (the CPU figures are the ones to compare when the machine is busy).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Run as a script, bench/ comes first on sys.path, where bench/email.py would shadow the
# standard library's email package (which onnx imports): drop it, use the repo root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rapidfuzz import fuzz, process  # noqa: E402

from posventa.kb.matcher import KbDocument  # noqa: E402
from posventa.kb.normalize import passages  # noqa: E402
from posventa.kb.search import KbSearch  # noqa: E402

DATA = REPO / "tests" / "data" / "kb-eval"


def load_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def synthetic(articles: Sequence[dict], size: int) -> list[KbDocument]:
    """``size`` articles recombined from the real ones (deterministic)."""
    split = [list(passages(a["body"])) for a in articles]
    n = len(articles)
    docs = []
    for i in range(size):
        a, b = i % n, (i * 31 + 7) % n
        body = "\n".join(split[a][0::2] + split[b][1::2]) or articles[a]["body"]
        docs.append(KbDocument(id=f"syn-{i:06d}", title=f"{articles[a]['title']} (#{i})", body=body))
    return docs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))], 3)


def time_queries(fn, queries: Sequence[str]) -> dict:
    """Wall-clock and CPU time per query: on a shared, loaded machine the CPU figure is the stable one."""
    wall, cpu = [], []
    for query in queries:
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn(query)
        cpu.append((time.thread_time() - start_cpu) * 1000.0)
        wall.append((time.perf_counter() - start) * 1000.0)
    return {
        "queries": len(queries),
        "p50_ms": percentile(wall, 0.5),
        "p95_ms": percentile(wall, 0.95),
        "cpu_p50_ms": percentile(cpu, 0.5),
        "cpu_p95_ms": percentile(cpu, 0.95),
    }


def rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def measure(articles: Sequence[dict], questions: Sequence[str], size: int, brute_queries: int,
            encoder=None) -> dict:
    docs = synthetic(articles, size)
    gc.collect()
    start, start_cpu = time.perf_counter(), time.thread_time()
    search = KbSearch.build(docs, encoder=encoder)
    build_s, build_cpu_s = time.perf_counter() - start, time.thread_time() - start_cpu
    # One upsert into the full index (its new passage encoded too): webhooks pay this, not a rebuild.
    start = time.perf_counter()
    search.upsert(KbDocument(id="syn-000000", title=docs[0].title, body=docs[0].body + "\nupdated"))
    while search.encode_step():
        pass
    upsert_ms = (time.perf_counter() - start) * 1000.0
    result = {
        "articles": len(search),
        "semantic": encoder is not None,
        "passage_vectors": len(search.semantic) if search.semantic is not None else 0,
        "build_s": round(build_s, 2),
        "build_cpu_s": round(build_cpu_s, 2),
        "upsert_ms": round(upsert_ms, 3),
        "max_rss_mib": rss_mib(),
        "search": time_queries(lambda q: search.search(q, limit=3), questions),
        "lexical": time_queries(lambda q: search.matcher.search(q, limit=3), questions),
    }
    texts = [f"{d.title} {d.body}" for d in docs]
    result["rapidfuzz_wratio_bruteforce"] = time_queries(
        lambda q: process.extract(q, texts, scorer=fuzz.WRatio, limit=3), questions[:brute_queries]
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=Path, default=DATA / "articles.jsonl")
    parser.add_argument("--questions", type=Path, default=DATA / "questions-dev.jsonl")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300, help="matcher queries per size")
    parser.add_argument("--brute-queries", type=int, default=10, help="brute-force queries per size (slow)")
    parser.add_argument("--lexical-only", action="store_true", help="without the sentence model")
    args = parser.parse_args(argv)
    for path in (args.articles, args.questions):
        if not path.is_file():
            parser.error(f"no such file: {path}")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    articles = load_jsonl(args.articles)
    rows = load_jsonl(args.questions)
    step = max(1, len(rows) // max(1, args.queries))
    questions = [r["text"] for r in rows[::step]][: args.queries]  # spread over all three sources
    encoder = None if args.lexical_only else KbSearch.default_encoder()
    report = {"one_core": hasattr(os, "sched_setaffinity"), "sizes": {}}
    for size in args.sizes:
        report["sizes"][str(size)] = measure(articles, questions, size, args.brute_queries, encoder)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
