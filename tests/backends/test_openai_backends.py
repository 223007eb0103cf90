"""The OpenAI embedder, enricher and picture descriptions, with the real ``openai`` client (and docling's
``requests`` session) against the local OpenAI stand-in: batching, order, billing, retries, fail-fast auth,
structured output with fallback, and PII that never leaves the machine."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from pydantic import SecretStr

from ray_rag_dagster.backends.embedder import OpenAIEmbedder
from ray_rag_dagster.backends.enrich import REDACTED, LLMEnrichment, OpenAIEnricher, apply_model_redactions
from ray_rag_dagster.backends.openai_client import OpenAIRequestError, RetryPolicy
from ray_rag_dagster.costs import usd
from ray_rag_dagster.samples import SEEDED_PII, write_samples
from ray_rag_dagster.settings import Settings
from tests.standins.openai_server import (
    CHAT_PATH,
    EMBEDDINGS_PATH,
    Fault,
    OpenAIStandIn,
    hash_vector,
    malformed_reply,
    openai_server,
    rate_limited,
    server_error,
)

EMBED_MODEL = "text-embedding-3-small"
ENRICH_MODEL = "gpt-4o-mini"
FAST = RetryPolicy(max_retries=6, backoff_base_s=0.05, backoff_max_s=0.2)

CONTACT = (
    "## Study Contacts\n"
    "Principal Investigator: Dr. Jane Doe, Examplar Pharmaceuticals Inc.\n"
    "Email jane.doe@example-trials.org or phone (617) 555-0147; SSN 078-05-1120.\n"
    "Participants continue metformin at a stable dose."
)


@pytest.fixture
def standin() -> Iterator[OpenAIStandIn]:
    with openai_server() as server:
        yield server


def settings_for(standin: OpenAIStandIn, tmp_path: Path, api_key: str | None = None) -> Settings:
    return Settings(
        home=tmp_path,
        openai_api_key=SecretStr(api_key or standin.api_key),
        openai_base_url=standin.base_url,
    )


# --- embeddings -----------------------------------------------------------------------------------


def test_embeddings_are_batched_ordered_normalised_and_billed(standin: OpenAIStandIn, tmp_path: Path) -> None:
    texts = [f"Chunk {i}: participants received {i * 5} mg of examplumab weekly." for i in range(100)]
    embedder = OpenAIEmbedder(settings_for(standin, tmp_path), max_inputs_per_request=32, retry=FAST)

    result = embedder.embed_documents(texts)

    assert standin.request_count(EMBEDDINGS_PATH) == 4  # 32 + 32 + 32 + 4
    assert result.vectors.shape == (100, 1536) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    # The stand-in answers in reverse order; each row must still be its own text's vector.
    expected = np.stack([hash_vector(text, 1536) for text in texts]).astype(np.float32)
    np.testing.assert_allclose(result.vectors, expected, atol=1e-5)
    assert result.tokens == standin.tokens_billed[(EMBED_MODEL, "input")] > 0
    assert result.windows == 100
    assert (embedder.name, embedder.dimension) == (EMBED_MODEL, 1536)
    np.testing.assert_allclose(embedder.embed_query(texts[7]), expected[7], atol=1e-5)
    assert usd(Settings().prices, EMBED_MODEL, result.tokens) == pytest.approx(result.tokens * 0.02 / 1e6)


def test_embedding_requests_stay_within_input_and_token_limits(standin: OpenAIStandIn, tmp_path: Path) -> None:
    settings = settings_for(standin, tmp_path)
    # The stand-in rejects more than 2048 inputs per request with a 400, as OpenAI does.
    result = OpenAIEmbedder(settings, retry=FAST).embed_documents([f"t{i}" for i in range(2100)])
    assert result.vectors.shape[0] == 2100
    assert standin.request_count(EMBEDDINGS_PATH, status=200) == 2

    budget = 10_000
    before = standin.request_count(EMBEDDINGS_PATH)
    OpenAIEmbedder(settings, max_tokens_per_request=budget, retry=FAST).embed_documents(["word " * 400] * 30)
    bodies = [json.loads(body) for body in standin.bodies(EMBEDDINGS_PATH)[before:]]
    assert len(bodies) == 6  # 2000 bytes each: 5 per request
    assert all(sum(len(text.encode()) for text in body["input"]) <= budget for body in bodies)


def test_a_text_over_the_input_limit_is_windowed_and_pooled_not_cut(standin: OpenAIStandIn, tmp_path: Path) -> None:
    # 12,000 one-letter words: more than the 8191 tokens the stand-in (like OpenAI) accepts in one input.
    long_text = " ".join(["x"] * 6000 + ["y"] * 6000)
    result = OpenAIEmbedder(settings_for(standin, tmp_path), retry=FAST).embed_documents([long_text, "short"])

    (body,) = [json.loads(b) for b in standin.bodies(EMBEDDINGS_PATH)]
    windows = body["input"][:-1]
    assert result.windows == len(body["input"]) == 4 and body["input"][-1] == "short"
    assert all(len(window.encode()) <= 8191 for window in windows)
    assert " ".join(windows).split() == long_text.split()  # every word was embedded
    pooled = np.sum([hash_vector(window, 1536) for window in windows], axis=0)
    np.testing.assert_allclose(result.vectors[0], pooled / np.linalg.norm(pooled), atol=1e-5)


def test_rate_limits_and_server_errors_are_ridden_out(
    standin: OpenAIStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    standin.queue_faults(
        EMBEDDINGS_PATH,
        rate_limited(retry_after=1),
        rate_limited(retry_after=None, retry_after_ms=300),
        server_error(500),
        server_error(503),
    )
    caplog.set_level(logging.WARNING, "ray_rag_dagster.backends.openai_client")
    started = time.monotonic()
    result = OpenAIEmbedder(settings_for(standin, tmp_path), retry=FAST).embed_documents(["a", "b"])
    elapsed = time.monotonic() - started

    assert result.vectors.shape == (2, 1536)
    assert standin.request_count(EMBEDDINGS_PATH) == 5
    assert elapsed >= 1.3  # the server-requested 1 s and 300 ms were waited
    assert elapsed < 4.0  # and the 5xx backoffs were short
    assert result.tokens == standin.tokens_billed[(EMBED_MODEL, "input")]  # failed requests bill nothing
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 4
    assert standin.api_key not in caplog.text


def test_retries_are_bounded(standin: OpenAIStandIn, tmp_path: Path) -> None:
    standin.queue_faults(EMBEDDINGS_PATH, *[server_error(502)] * 5)
    policy = RetryPolicy(max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05)
    with pytest.raises(OpenAIRequestError, match=r"failed after 3 attempts: HTTP 502") as caught:
        OpenAIEmbedder(settings_for(standin, tmp_path), retry=policy).embed_documents(["a"])
    assert caught.value.status_code == 502
    assert standin.request_count(EMBEDDINGS_PATH) == 3


def test_an_unreachable_server_is_retried_then_reported(tmp_path: Path) -> None:
    with openai_server() as stopped:
        settings = settings_for(stopped, tmp_path)  # the port is closed once the server stops
    policy = RetryPolicy(max_retries=1, backoff_base_s=0.01, backoff_max_s=0.05)
    with pytest.raises(OpenAIRequestError, match=r"after 2 attempts: APIConnectionError: cannot reach the server"):
        OpenAIEmbedder(settings, retry=policy).embed_documents(["a"])


def test_a_bad_key_fails_fast_without_echoing_it(standin: OpenAIStandIn, tmp_path: Path) -> None:
    wrong_key = "sk-wrong-0123456789-SECRETTAIL"
    settings = settings_for(standin, tmp_path, api_key=wrong_key)
    started = time.monotonic()
    with pytest.raises(OpenAIRequestError) as caught:
        OpenAIEmbedder(settings, retry=FAST).embed_documents(["a"])
    assert time.monotonic() - started < 1.0
    assert standin.request_count(EMBEDDINGS_PATH) == 1
    message = str(caught.value)
    assert "HTTP 401" in message and "rejected" in message
    assert wrong_key not in message and "TAIL" not in message  # not even the masked form OpenAI sends back
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    with pytest.raises(OpenAIRequestError, match="HTTP 401"):  # the enricher does not fall back on auth errors
        OpenAIEnricher(settings, retry=FAST).enrich(["text"])
    assert standin.request_count(CHAT_PATH) == 1


# --- enrichment -----------------------------------------------------------------------------------


def test_enricher_returns_validated_structured_output(standin: OpenAIStandIn, tmp_path: Path) -> None:
    (result,) = OpenAIEnricher(settings_for(standin, tmp_path), retry=FAST).enrich([CONTACT])

    assert result.enricher == "openai" and result.model == ENRICH_MODEL
    assert result.entities["people"] == ["Jane Doe"]
    assert result.entities["organizations"] == ["Examplar Pharmaceuticals Inc."]
    assert result.entities["medications"] == ["metformin"]
    assert result.key_phrases
    assert result.redactions == {"email": 1, "phone": 1, "ssn": 1}
    assert not any(pii in result.redacted_text for pii in SEEDED_PII)
    assert result.redacted_text.startswith("## Study Contacts\nPrincipal Investigator: Dr. Jane Doe")
    assert (result.input_tokens, result.output_tokens) == (
        standin.tokens_billed[(ENRICH_MODEL, "input")],
        standin.tokens_billed[(ENRICH_MODEL, "output")],
    )
    assert result.input_tokens > 0 and result.output_tokens > 0
    (body,) = [json.loads(b) for b in standin.bodies(CHAT_PATH)]
    schema = body["response_format"]["json_schema"]
    assert body["response_format"]["type"] == "json_schema" and schema["strict"] is True
    assert set(schema["schema"]["required"]) == set(LLMEnrichment.model_fields)
    assert schema["schema"]["additionalProperties"] is False


def test_no_seeded_pii_reaches_the_service(standin: OpenAIStandIn, tmp_path: Path) -> None:
    (protocol, _scanned) = write_samples(tmp_path / "samples")
    pdf = pdfium.PdfDocument(str(protocol))
    pages = [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    paragraphs = [p for page in pages for p in page.split("\r\n\r\n") if p.strip()]
    assert any(pii in "\n".join(paragraphs) for pii in SEEDED_PII)  # the PII is there to leak

    results = OpenAIEnricher(settings_for(standin, tmp_path), retry=FAST).enrich(paragraphs)

    sent = standin.bodies()
    assert len(sent) == len(paragraphs)
    for pii in SEEDED_PII:
        assert not any(pii in body for body in sent), pii
        assert not any(pii in r.redacted_text for r in results), pii
    assert sum(sum(r.redactions.values()) for r in results) >= len(SEEDED_PII)


def test_malformed_replies_are_retried_then_fall_back_to_local(standin: OpenAIStandIn, tmp_path: Path) -> None:
    enricher = OpenAIEnricher(settings_for(standin, tmp_path), retry=FAST)

    standin.queue_faults(CHAT_PATH, malformed_reply())
    (recovered,) = enricher.enrich([CONTACT])
    assert recovered.enricher == "openai"
    assert standin.request_count(CHAT_PATH) == 2

    schema_violation = json.dumps({"redacted_text": CONTACT, "people": "Jane Doe"})
    standin.queue_faults(CHAT_PATH, malformed_reply(), Fault(content=schema_violation), malformed_reply())
    (fallback,) = enricher.enrich([CONTACT])
    assert standin.request_count(CHAT_PATH) == 5
    assert fallback.enricher == "local-fallback" and fallback.model == ENRICH_MODEL
    assert "Jane Doe" in fallback.entities["people"]  # the local rules did the work
    assert not any(pii in fallback.redacted_text for pii in SEEDED_PII)
    assert fallback.input_tokens > 0  # the three failed attempts were billed, so they are reported


def test_a_reply_that_rewrites_the_text_is_rejected(standin: OpenAIStandIn, tmp_path: Path) -> None:
    rewritten = json.dumps(
        {
            "redacted_text": "Contacts: see the study team.",
            "people": [],
            "organizations": [],
            "medications": [],
            "key_phrases": [],
        }
    )
    standin.queue_faults(CHAT_PATH, *[Fault(content=rewritten)] * 3)
    (result,) = OpenAIEnricher(settings_for(standin, tmp_path), retry=FAST).enrich([CONTACT])
    assert result.enricher == "local-fallback"
    assert result.redacted_text.startswith("## Study Contacts")


def test_extra_redactions_by_the_model_keep_the_original_layout(standin: OpenAIStandIn, tmp_path: Path) -> None:
    text = "| Site | Address |\n|---|---|\n| Boston | 12 Elm Street, Apt 4 |\n\nDosing starts on day 1."
    # The model flattens whitespace and redacts the street address the rules do not know.
    reply = "| Site | Address | |---|---| | Boston | [REDACTED] | Dosing starts on day 1."
    assert apply_model_redactions(text, reply) == (
        "| Site | Address |\n|---|---|\n| Boston | [REDACTED] |\n\nDosing starts on day 1.",
        1,
    )
    answer = {
        "redacted_text": reply,
        "people": [],
        "organizations": [],
        "medications": [],
        "key_phrases": ["dosing", "jane.doe@example-trials.org"],
    }
    standin.queue_faults(CHAT_PATH, Fault(content=json.dumps(answer)))
    (result,) = OpenAIEnricher(settings_for(standin, tmp_path), retry=FAST).enrich([text])
    assert result.enricher == "openai"
    assert result.redacted_text.count(REDACTED) == 1 and "| Boston | [REDACTED] |\n\n" in result.redacted_text
    assert result.redactions == {"llm": 1}
    assert result.key_phrases == ["dosing"]  # a phrase carrying PII is dropped


def test_enrichment_of_many_chunks_keeps_order(standin: OpenAIStandIn, tmp_path: Path) -> None:
    names = ["Ada", "Ben", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivo", "Jon", "Kai", "Lea"]
    texts = [f"Dr. {name} Smith reviewed visit {i}." for i, name in enumerate(names)]
    results = OpenAIEnricher(settings_for(standin, tmp_path), retry=FAST, concurrency=4).enrich(texts)
    assert [r.redacted_text for r in results] == texts
    assert [r.entities["people"] for r in results] == [[f"{name} Smith"] for name in names]
    assert sum(r.input_tokens for r in results) == standin.tokens_billed[(ENRICH_MODEL, "input")]


# --- picture descriptions -------------------------------------------------------------------------


def _pdf_with_chart() -> bytes:
    from PIL import Image, ImageDraw
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    chart = Image.new("RGB", (800, 500), "white")
    draw = ImageDraw.Draw(chart)
    for i, height in enumerate((120, 260, 380, 200)):
        draw.rectangle((80 + i * 170, 460 - height, 200 + i * 170, 460), fill=(200, 30, 30))
    draw.line((60, 460, 760, 460), fill="black", width=4)
    draw.line((60, 40, 60, 460), fill="black", width=4)
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=(595, 842))
    pdf.setFont("Helvetica-Bold", 16)
    pdf.drawString(72, 780, "3 Enrollment")
    pdf.setFont("Helvetica", 11)
    pdf.drawString(72, 750, "Participants were enrolled at four sites during the first year of the study.")
    pdf.drawImage(ImageReader(chart), 97, 400, width=400, height=250)
    pdf.setFont("Helvetica", 10)
    pdf.drawString(97, 385, "Figure 1: Participants enrolled per site.")
    pdf.drawString(72, 340, "Enrollment closed when the planned sample size was reached at all sites.")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def test_picture_description_is_written_under_the_caption(standin: OpenAIStandIn) -> None:
    from ray_rag_dagster.stages.docling_convert import ExtractOptions, extract_pdf

    options = ExtractOptions(
        describe_pictures=True,
        vision_model="gpt-4o",
        vision_base_url=standin.base_url,
        vision_api_key=SecretStr(standin.api_key),
    )
    assert standin.api_key not in repr(options)

    result = extract_pdf(_pdf_with_chart(), "chart.pdf", options)

    markdown = result.pages[0].markdown
    assert "Figure 1: Participants enrolled per site.\n\n> Description: A " in markdown
    assert "mostly red." in markdown
    (body,) = [json.loads(b) for b in standin.bodies(CHAT_PATH)]
    assert body["model"] == "gpt-4o"
    assert body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert result.described_pictures == 1
    assert (result.vision_input_tokens, result.vision_output_tokens) == (
        standin.tokens_billed[("gpt-4o", "input")],
        standin.tokens_billed[("gpt-4o", "output")],
    )
