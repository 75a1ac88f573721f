"""kb.normalize and kb.matcher: normalisation, incremental index maintenance, ordering."""

from __future__ import annotations

import pytest

from posventa.kb.matcher import QUERY_MAX_CHARS, KbDocument, Match, Matcher
from posventa.kb.normalize import char_grams, fold, passages, stem, terms, words

# -- normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Ação Única", "acao unica"),
        ("Preço da CONEXÃO", "preco da conexao"),
        ("¿Dónde está mi tarjeta?", "donde esta mi tarjeta"),
        ("Año, niño; señal!", "ano nino senal"),
        ("café—crème…", "cafe creme"),
        ("Straße Œuvre", "strasse oeuvre"),
        ("top-up / re-order: #42", "top up re order 42"),
        ("   ", ""),
    ],
)
def test_fold_lowercases_strips_accents_and_punctuation(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_stop_words_are_dropped_in_all_three_languages() -> None:
    assert words("What is the balance of my account?") == ["balance", "account"]
    assert words("¿Cuál es el saldo de mi cuenta?") == ["saldo", "cuenta"]
    assert words("Qual é o saldo da minha conta?") == ["saldo", "conta"]


def test_negations_are_kept() -> None:
    """'refund not showing up' and 'request a refund' are different articles."""
    assert "not" in words("my refund is not showing up")
    assert "nao" in words("o reembolso não aparece")


def test_light_stemming_conflates_inflections() -> None:
    assert stem("cards") == stem("card")
    assert stem("topping") == stem("top")
    assert stem("tarjetas") == stem("tarjeta")
    assert stem(fold("informações")) == stem(fold("informação"))
    assert stem("2009") == "2009"  # numbers untouched
    assert stem("pin") == "pin"  # short words untouched


def test_terms_are_accent_insensitive() -> None:
    assert terms("Não recebi o cartão") == terms("nao recebi o cartao")


def test_char_grams_mark_word_boundaries() -> None:
    grams = char_grams("card")
    assert {" ca", "car", "ard", "rd ", " card", "card "} <= grams
    assert char_grams("a") == frozenset({" a "})


def test_passages_split_lines_list_markers_and_sentences() -> None:
    body = "Common questions:\n- Where is my card?\n- It never came.\n\nFirst part. Second part!"
    assert list(passages(body)) == [
        "Common questions:",
        "Where is my card?",
        "It never came.",
        "First part.",
        "Second part!",
    ]


# -- the matcher ------------------------------------------------------------------------

ARTICLES = [
    KbDocument(id="card-arrival", title="Card arrival", body="When will my new card arrive?\nMy card has not arrived yet."),
    KbDocument(id="pin-blocked", title="PIN blocked", body="I entered the wrong PIN three times and it is blocked."),
    KbDocument(
        id="conexao",
        title="Conexão com a internet",
        body="O aparelho não conecta à internet. Verifique a configuração do roteador.",
        lang="pt",
    ),
    KbDocument(
        id="factura",
        title="Factura electrónica",
        body="¿Cómo descargo la factura electrónica? Ingrese a su cuenta y elija facturación.",
        lang="es",
    ),
]


def ids(matches: list[Match]) -> list[str]:
    return [m.id for m in matches]


def test_finds_the_article_across_languages_accents_and_typos() -> None:
    matcher = Matcher(ARTICLES)
    assert len(matcher) == 4
    assert ids(matcher.search("my card didnt arrive", limit=1)) == ["card-arrival"]
    assert ids(matcher.search("aparelho sem conexao", limit=1)) == ["conexao"]
    assert ids(matcher.search("como descargar factura electronica", limit=1)) == ["factura"]
    assert ids(matcher.search("pin blokced", limit=1)) == ["pin-blocked"]  # typo


def test_scores_are_0_to_100_and_best_first() -> None:
    matches = Matcher(ARTICLES).search("the wrong pin is blocked", limit=4)
    assert matches[0].id == "pin-blocked"
    assert all(0.0 <= m.score <= 100.0 for m in matches)
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert matches[0].score >= 90.0  # every query term is in the article


def test_unrelated_text_scores_nothing_or_low() -> None:
    matcher = Matcher(ARTICLES)
    assert matcher.search("zzzz qqqq") == []
    assert matcher.search("the of and ¿? ...") == []  # only stop words and punctuation
    assert matcher.search("") == []


def test_limit_is_respected() -> None:
    matcher = Matcher(ARTICLES)
    assert len(matcher.search("card pin internet factura", limit=2)) == 2
    assert matcher.search("card", limit=0) == []


def test_ties_are_broken_by_id() -> None:
    twins = [KbDocument(id=i, title="Reset password", body="How to reset my password") for i in ("b", "c", "a")]
    matches = Matcher(twins).search("reset password", limit=3)
    assert ids(matches) == ["a", "b", "c"]
    assert len({m.score for m in matches}) == 1


def test_upsert_replaces_an_article() -> None:
    matcher = Matcher(ARTICLES)
    matcher.upsert(KbDocument(id="pin-blocked", title="Change PIN", body="How to change the PIN at an ATM."))
    assert len(matcher) == 4
    assert matcher.search("blocked", limit=3) == []  # the old text is gone
    assert ids(matcher.search("change pin atm", limit=1)) == ["pin-blocked"]


def test_remove_forgets_an_article_and_ignores_unknown_ids() -> None:
    matcher = Matcher(ARTICLES)
    matcher.remove("card-arrival")
    matcher.remove("card-arrival")
    matcher.remove("never-existed")
    assert len(matcher) == 3
    assert "card-arrival" not in ids(matcher.search("card arrival", limit=3))
    for doc in ARTICLES:
        matcher.remove(doc.id)
    assert len(matcher) == 0
    assert matcher.search("card") == []


def test_incremental_index_ranks_like_a_fresh_one() -> None:
    extra = KbDocument(id="card-lost", title="Lost card", body="I lost my card, please block it.")
    incremental = Matcher()
    for doc in [*ARTICLES, extra]:
        incremental.upsert(doc)
    incremental.remove("factura")
    incremental.upsert(KbDocument(id="conexao", title="Wi-Fi", body="O wi-fi cai o tempo todo."))
    fresh = Matcher(
        [d for d in ARTICLES if d.id not in ("factura", "conexao")]
        + [extra, KbDocument(id="conexao", title="Wi-Fi", body="O wi-fi cai o tempo todo.")]
    )
    for query in ("lost my card", "card arrive", "wifi caindo", "pin blocked", "factura"):
        assert ids(incremental.search(query, limit=3)) == ids(fresh.search(query, limit=3)), query


def test_phrasings_learned_from_cases_make_an_article_findable() -> None:
    query = "the plastic never showed up in my mailbox"
    assert ids(Matcher(ARTICLES).search(query, limit=1)) != ["card-arrival"]
    learned = KbDocument(
        id="card-arrival",
        title="Card arrival",
        body=ARTICLES[0].body,
        phrasings=("plastic never showed up in the mailbox",),
    )
    assert ids(Matcher([learned, *ARTICLES[1:]]).search(query, limit=1)) == ["card-arrival"]


def test_hostile_query_is_cut_and_still_answers() -> None:
    matcher = Matcher(ARTICLES)
    flood = "pin blocked " + "x" * (QUERY_MAX_CHARS * 50)
    assert ids(matcher.search(flood, limit=1)) == ["pin-blocked"]
    many_words = " ".join(f"w{i}" for i in range(20_000))
    assert matcher.search(many_words) == []


def test_huge_article_is_indexed_within_caps() -> None:
    matcher = Matcher([KbDocument(id="big", title="Big " * 1000, body="filler words here. " * 100_000)])
    assert ids(matcher.search("filler", limit=1)) == ["big"]


def test_document_needs_an_id() -> None:
    with pytest.raises(ValueError, match="id"):
        KbDocument(id="", title="t", body="b")
