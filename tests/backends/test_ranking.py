from __future__ import annotations

import pytest

from ray_rag_dagster.backends.ranking import (
    boost,
    fuse,
    heading_match,
    normalise_terms,
    phrase_match,
    search_text,
    without_words,
)


def test_fusion_is_score_aware() -> None:
    # Full text ranks "a" far ahead; the vector leg slightly prefers "b". Text weight 0.7 keeps "a" first.
    scores = fuse({"a": 35.0, "b": 14.0, "c": 1.0}, {"b": 0.9, "c": 0.5, "a": 0.4}, 0.7)
    assert max(scores, key=scores.get) == "a"
    assert fuse({}, {"x": 0.3}, 0.7) == {"x": pytest.approx(0.3)}
    assert fuse({"x": 2.0}, {}, 0.0) == {"x": 0.0}


def test_a_studys_name_is_taken_out_of_the_question() -> None:
    assert without_words("LY900018 IGBJ study phase", ["LY900018"]) == "IGBJ study phase"
    assert without_words("How long is the LZZT study?", ["LZZT"]) == "How long is the study?"
    assert without_words("Is HbA1c measured in LZZTx?", ["LZZT"]) == "Is HbA1c measured in LZZTx?"  # whole words
    assert without_words("BP30037", ["BP30037"]) == "BP30037"  # nothing else to search with


def test_irregular_plurals_are_written_as_their_singular() -> None:
    assert normalise_terms("Inclusion Criteria; two analyses") == "Inclusion criterion; two analysis"
    assert normalise_terms("criterion, criterias, bacterial") == "criterion, criterias, bacterial"  # whole words


def test_the_full_text_column_is_the_heading_path_then_the_text() -> None:
    assert search_text("6. Population > 6.2. Exclusion Criteria", "6.2. Exclusion Criteria\n[11] are") == (
        "6. Population > 6.2. Exclusion criterion\n6.2. Exclusion criterion\n[11] are"
    )


def test_heading_match_needs_the_heading_to_be_what_is_asked() -> None:
    label = "LY900018 exclusion criterion: HIV"
    assert heading_match(label, "6.2. Exclusion Criteria") == pytest.approx(0.5)  # both heading words, 2 of 4
    assert heading_match(label, "6.1. Inclusion Criteria") == pytest.approx(0.125)  # 1 of 2 × 1 of 4
    assert heading_match(label, "Revised Protocol Sections") == 0.0
    # a misspelt ending still agrees on its first letters
    assert heading_match("gastrointensinal disorders", "Gastrointestinal disorders") == 1.0
    # a long question shares a word with a one-word heading: worth little
    long_question = "Are able and willing to give signed informed consent before any study procedure"
    assert heading_match(long_question, "Consent") < 0.15
    assert heading_match("", "Safety") == heading_match("safety", "") == 0.0


def test_the_boost_reorders_chunks_by_heading() -> None:
    fused = {"amendment": 0.85, "criterion": 0.6}
    rows = {"amendment": {"heading_path": "Revised Protocol Sections", "text": "Each criterion has a number."},
            "criterion": {"heading_path": "6.2. Exclusion Criteria", "text": "[27] show evidence of HIV infection"}}
    boosted = boost(fused, rows, "LY900018 exclusion criterion: HIV")
    assert max(boosted, key=boosted.get) == "criterion"
    assert boosted["amendment"] == pytest.approx(0.85)


def test_a_quoted_passage_outranks_one_that_repeats_its_rarest_words() -> None:
    quote = "Change from Week 12 to follow-up for ESSDAI, ESSPRI and SF-36 scores in each treatment group."
    quoting = "Exploratory outcome measures: change from Week 12 to follow-up for ESSDAI, ESSPRI and SF-36 scores in each treatment group."
    repeating = "Efficacy: ESSDAI at each visit. ESSPRI at each visit. SF-36 and ESSDAI, ESSPRI totals."
    assert phrase_match(quote, quoting) == 1.0
    assert phrase_match(quote, repeating) < 0.3
    assert phrase_match("HIV", repeating) == 0.0  # one word: no pair, no phrase
    rows = {"repeating": {"heading_path": "Efficacy", "text": repeating},
            "quoting": {"heading_path": "Exploratory", "text": quoting}}
    boosted = boost({"repeating": 0.85, "quoting": 0.5}, rows, quote)
    assert max(boosted, key=boosted.get) == "quoting"
