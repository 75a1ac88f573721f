"""KB matcher quality on the labelled kb-eval set: top-1, top-3, MRR, p95 latency, per source.

    python bench/kb_quality.py [--articles FILE] [--questions FILE] [--history-split] [--lexical-only]

Every question is searched against *all* articles (pooled: the other languages are
distractors), through the matcher ``serve`` runs: the lexical index plus the semantic
rerank with the bundled sentence model (``kb.search.KbSearch``; encoding the articles is
part of ``build_ms``, and each query's time includes encoding it).  ``--lexical-only``
measures the lexical steps alone.  Prints one JSON object. ``--history-split`` also reports a second run in
which half of the questions (chosen by a hash of their id, so the split is stable) are
given to their answer article as learned ``phrasings`` and the other half is evaluated:
what the matcher gains once solved cases feed back into the KB.

Default paths are the copy in ``tests/data/kb-eval/`` of the repository this script lives in
(see its README for the sources and licences), so a fresh clone anywhere finds them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Run as a script, bench/ comes first on sys.path, where bench/email.py would shadow the
# standard library's email package (which onnx imports): drop it, use the repo root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from posventa.kb.matcher import KbDocument  # noqa: E402
from posventa.kb.search import KbSearch  # noqa: E402

DATA = REPO / "tests" / "data" / "kb-eval"


def load_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def documents(articles: Iterable[dict]) -> list[KbDocument]:
    return [KbDocument(id=a["id"], title=a["title"], body=a["body"], lang=a.get("lang")) for a in articles]


def in_history_half(question: dict) -> bool:
    """Deterministic half of the questions, independent of file order and PYTHONHASHSEED."""
    return hashlib.sha256(question["id"].encode()).digest()[0] % 2 == 0


def evaluate(matcher: KbSearch, questions: Sequence[dict]) -> dict:
    """top-1/top-3/MRR (reciprocal rank within the top 10, else 0), pooled and per source."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    latencies = []
    for q in questions:
        start = time.perf_counter()
        matches = matcher.search(q["text"], limit=10)
        latencies.append((time.perf_counter() - start) * 1000.0)
        ranked = [m.id for m in matches]
        want = q["answer_article_id"]
        for key in ("all", q["source"]):
            row = totals[key]
            row[0] += 1
            row[1] += ranked[:1] == [want]
            row[2] += want in ranked[:3]
            row[3] += 1.0 / (ranked.index(want) + 1) if want in ranked else 0.0
    latencies.sort()

    def figures(row: list[float]) -> dict:
        n = row[0]
        return {"n": n, "top1": round(row[1] / n, 4), "top3": round(row[2] / n, 4), "mrr": round(row[3] / n, 4)}

    result = figures(totals.pop("all"))
    result["p95_ms"] = round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else 0.0
    result["by_source"] = {source: figures(row) for source, row in sorted(totals.items())}
    return result


def run(articles_path: Path, questions_path: Path, *, history_split: bool = False, semantic: bool = True) -> dict:
    articles = load_jsonl(articles_path)
    questions = load_jsonl(questions_path)
    docs = documents(articles)
    encoder = KbSearch.default_encoder() if semantic else None
    start = time.perf_counter()
    matcher = KbSearch.build(docs, encoder=encoder)
    build_ms = (time.perf_counter() - start) * 1000.0
    result = evaluate(matcher, questions)
    result["semantic"] = encoder is not None
    result["articles"] = len(docs)
    result["build_ms"] = round(build_ms, 1)
    if history_split:
        learned: dict[str, list[str]] = defaultdict(list)
        held_out = []
        for q in questions:
            if in_history_half(q):
                learned[q["answer_article_id"]].append(q["text"])
            else:
                held_out.append(q)
        with_history = KbSearch.build([replace(d, phrasings=tuple(learned.get(d.id, ()))) for d in docs],
                                      encoder=encoder)
        result["history_split"] = {
            "phrasings": sum(len(v) for v in learned.values()),
            "baseline_on_same_half": evaluate(matcher, held_out),
            "with_history": evaluate(with_history, held_out),
        }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=Path, default=DATA / "articles.jsonl")
    parser.add_argument("--questions", type=Path, default=DATA / "questions-dev.jsonl")
    parser.add_argument("--history-split", action="store_true", help="also evaluate with half the questions learned as phrasings")
    parser.add_argument("--lexical-only", action="store_true", help="without the semantic rerank (for comparison)")
    args = parser.parse_args(argv)
    for path in (args.articles, args.questions):
        if not path.is_file():
            parser.error(f"no such file: {path}")
    result = run(args.articles, args.questions, history_split=args.history_split, semantic=not args.lexical_only)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
