"""The KB search on the labelled kb-eval dev set (tests/data/kb-eval, copied with its sources and licences), pooled over all 566 articles.

Same code path as ``bench/kb_quality.py`` and ``serve``: the lexical matcher plus the
semantic rerank with the bundled sentence model.  Accuracy only: timing is the
benchmarks' job.

The issue's targets: pooled top-1 ≥ 0.75 and top-3 ≥ 0.90, banking77 top-3 ≥ 0.85, and no
source below the token_set_ratio baseline.  The lexical steps alone stop at top-3 0.895
(banking77 0.843); ``test_lexical_alone_is_still_a_floor`` keeps them honest too, since
they are what customers get while articles are still being encoded.
"""

from __future__ import annotations

import pytest

from bench.kb_quality import DATA, evaluate, load_jsonl
from posventa.kb.embedding import EncoderUnavailable, SentenceEncoder
from posventa.kb.matcher import KbDocument
from posventa.kb.search import KbSearch
from tests.support import require_or_skip

# Plain rapidfuzz token_set_ratio over title+body on the dev set (the issue's baseline).
BASELINE = {"banking77": (0.46, 0.69), "faquad": (0.75, 0.885), "xquad-es": (0.87, 0.94)}


def _dev() -> tuple[list[KbDocument], list[dict]]:
    articles, questions = DATA / "articles.jsonl", DATA / "questions-dev.jsonl"
    require_or_skip(articles.is_file() and questions.is_file(), f"kb-eval data not found in {DATA}")
    docs = [KbDocument(id=a["id"], title=a["title"], body=a["body"]) for a in load_jsonl(articles)]
    assert len(docs) == 566
    return docs, load_jsonl(questions)


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    try:
        return SentenceEncoder.bundled()
    except EncoderUnavailable as exc:  # ./scripts/test installs it; a bare `pip install -e .` does not
        require_or_skip(False, f"sentence model not installed: {exc}")
        raise


@pytest.fixture(scope="module")
def dev_result(encoder: SentenceEncoder) -> dict:
    docs, questions = _dev()
    search = KbSearch.build(docs, encoder=encoder)
    assert search.semantic is not None and not search.semantic.pending(1)
    return evaluate(search, questions)


def test_issue_targets(dev_result: dict) -> None:
    assert dev_result["n"] == 2585
    assert dev_result["top1"] >= 0.75
    assert dev_result["top3"] >= 0.90
    assert dev_result["by_source"]["banking77"]["top3"] >= 0.85


def test_margin_over_targets(dev_result: dict) -> None:
    """Near what dev reaches today (0.795 / 0.916, banking77 top-3 0.882, MRR 0.861), so a
    regression shows long before the held-out half would fall under a target."""
    assert dev_result["top1"] >= 0.785
    assert dev_result["top3"] >= 0.91
    assert dev_result["mrr"] >= 0.85
    assert dev_result["by_source"]["banking77"]["top3"] >= 0.87


@pytest.mark.parametrize("source", sorted(BASELINE))
def test_no_source_below_baseline(dev_result: dict, source: str) -> None:
    top1, top3 = BASELINE[source]
    figures = dev_result["by_source"][source]
    assert figures["top1"] >= top1
    assert figures["top3"] >= top3


def test_lexical_alone_is_still_a_floor() -> None:
    docs, questions = _dev()
    result = evaluate(KbSearch.build(docs), questions)
    assert result["top1"] >= 0.75
    assert result["top3"] >= 0.89
    assert result["by_source"]["banking77"]["top3"] >= 0.84
