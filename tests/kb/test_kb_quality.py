"""The KB matcher on the labelled kb-eval dev set (../shared/data/kb-eval), pooled over all 566 articles.

Same code path as ``bench/kb_quality.py``.  Accuracy only: timing is the benchmarks' job.

The issue's targets are pooled top-1 ≥ 0.75 and top-3 ≥ 0.90, banking77 top-3 ≥ 0.85 and
no source below the token_set_ratio baseline.  The lexical matcher reaches top-1 0.752
and top-3 0.895 (banking77 0.843): ``test_issue_targets`` is a strict xfail recording that
gap, so it turns into a failure the day someone closes it (then drop the marker), while
``test_quality_floor`` guards what is reached today against regressions.
"""

from __future__ import annotations

import pytest

from bench.kb_quality import DATA, evaluate, load_jsonl
from kb.matcher import KbDocument, Matcher
from tests.support import require_or_skip

# Plain rapidfuzz token_set_ratio over title+body on the dev set (the issue's baseline).
BASELINE = {"banking77": (0.46, 0.69), "faquad": (0.75, 0.885), "xquad-es": (0.87, 0.94)}


@pytest.fixture(scope="module")
def dev_result() -> dict:
    articles, questions = DATA / "articles.jsonl", DATA / "questions-dev.jsonl"
    require_or_skip(articles.is_file() and questions.is_file(), f"kb-eval data not found in {DATA}")
    docs = [KbDocument(id=a["id"], title=a["title"], body=a["body"]) for a in load_jsonl(articles)]
    assert len(docs) == 566
    return evaluate(Matcher(docs), load_jsonl(questions))


def test_quality_floor(dev_result: dict) -> None:
    assert dev_result["n"] == 2585
    assert dev_result["top1"] >= 0.75
    assert dev_result["top3"] >= 0.89
    assert dev_result["mrr"] >= 0.82
    assert dev_result["by_source"]["banking77"]["top3"] >= 0.84


@pytest.mark.parametrize("source", sorted(BASELINE))
def test_no_source_below_baseline(dev_result: dict, source: str) -> None:
    top1, top3 = BASELINE[source]
    figures = dev_result["by_source"][source]
    assert figures["top1"] >= top1
    assert figures["top3"] >= top3


@pytest.mark.xfail(strict=True, reason="lexical ceiling: top-3 0.895 pooled, 0.843 banking77 (targets 0.90 / 0.85)")
def test_issue_targets(dev_result: dict) -> None:
    assert dev_result["top1"] >= 0.75
    assert dev_result["top3"] >= 0.90
    assert dev_result["by_source"]["banking77"]["top3"] >= 0.85
