from ray_rag_dagster.cli import snippet


def test_snippet_shows_the_part_that_matched() -> None:
    text = "Schedule of activities. " * 40 + "6. Contact Information: phone [REDACTED], email [REDACTED]. " + "Filler. " * 40
    shown = snippet(text, "contact information phone email", width=200)
    assert "Contact Information" in shown and shown.startswith("… ") and shown.endswith(" …")
    assert len(shown) <= 204
    assert snippet("short text", "anything") == "short text"
