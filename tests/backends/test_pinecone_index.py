"""The Pinecone backend with the real ``pinecone`` client against the local REST stand-in."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pinecone import PineconeApiException
from pydantic import SecretStr

from ray_rag_dagster.backends.pinecone_index import PineconeIndex, PineconeIndexError, RetryPolicy
from ray_rag_dagster.backends.pinecone_records import METADATA_BYTES_BUDGET, UPSERT_BYTES_BUDGET, record_metadata
from ray_rag_dagster.backends.vector_index import IndexRecord
from ray_rag_dagster.ids import chunk_id, content_hash
from ray_rag_dagster.settings import Settings
from tests.standins.pinecone_server import (
    MAX_METADATA_BYTES,
    MAX_REQUEST_BYTES,
    MAX_VECTORS_PER_UPSERT,
    PineconeStandIn,
    pinecone_server,
)

API_KEY = "pcsk_test_4f9a1c2e7b"
DOC_A, DOC_B = "protocol-a-aaaaaaaa", "protocol-b-bbbbbbbb"
NAMESPACE = "protocols"
FAST_RETRIES = RetryPolicy(max_attempts=6, backoff_base_s=0.01, backoff_max_s=0.05, ready_timeout_s=10,
                           ready_poll_max_s=0.05)


def records(document_id: str, version: str, texts: list[str], dimension: int = 8, seed: int = 0) -> list[IndexRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for index, text in enumerate(texts):
        vector = rng.normal(size=dimension).astype(np.float32)
        out.append(
            IndexRecord(
                id=chunk_id(document_id, content_hash(text)), document_id=document_id, processing_version=version,
                source_key=f"input/{document_id}.pdf", chunk_index=index, page_start=index // 3 + 1,
                page_end=index // 3 + 2, heading_path="Protocol > Eligibility", text=text,
                content_hash=content_hash(text),
                entities={"people": ["Dr. Jane Roe"], "organizations": [], "medications": ["metformin"]},
                key_phrases=["eligibility", "HbA1c"], redactions={"email": 1, "phone": 2}, embed_model="test-model",
                vector=vector / np.linalg.norm(vector),
            )
        )
    return out


@pytest.fixture
def stand_in() -> Iterator[PineconeStandIn]:
    with pinecone_server(API_KEY, describes_until_ready=2) as server:
        yield server


def backend(server: PineconeStandIn, api_key: str = API_KEY) -> PineconeIndex:
    return PineconeIndex(api_key=SecretStr(api_key), index_name="ray-rag", namespace=NAMESPACE, cloud="aws",
                         region="eu-west-1", controller_host=server.base_url, retry=FAST_RETRIES)


def test_creates_serverless_cosine_index_of_the_records_dimension_and_waits_until_ready(
    stand_in: PineconeStandIn,
) -> None:
    index = backend(stand_in)
    assert index.count() == 0 and index.search("anything", np.ones(8, dtype=np.float32), 3) == []
    assert index.replace_document(DOC_A, records(DOC_A, "v1", ["Participants aged 18 to 75 years."])) == 1
    created = stand_in.indexes["ray-rag"]
    assert (created.dimension, created.metric, created.cloud, created.region) == (8, "cosine", "aws", "eu-west-1")
    # Created not ready: the backend described it until it was, and only then wrote.
    describes = stand_in.requests_to("/indexes/ray-rag")
    assert [request.status for request in describes].count(404) == 3  # count(), search(), the first write
    assert len(describes) >= 3 + 2 + 1
    assert stand_in.requests_to("/vectors/upsert", status=503) == []
    # Records of another model (another dimension) are refused with a reason, not sent.
    other = backend(stand_in)
    with pytest.raises(PineconeIndexError, match="dimension 8 and metric cosine; these records need dimension 384"):
        other.replace_document(DOC_B, records(DOC_B, "v1", ["Other."], dimension=384))


def test_2500_records_go_in_requests_within_limits_and_an_old_version_goes_once_the_new_is_completed(
    stand_in: PineconeStandIn,
) -> None:
    index = backend(stand_in)
    v1 = [f"Short chunk number {number}." for number in range(2500)]
    assert index.replace_document(DOC_A, records(DOC_A, "v1", v1)) == 2500
    upserts = stand_in.requests_to("/vectors/upsert")
    assert [request.vector_count for request in upserts] == [1000, 1000, 500]
    assert all(request.status == 200 and request.body_bytes <= MAX_REQUEST_BYTES for request in upserts)
    assert index.count(DOC_A) == 2500 and index.count() == 2500
    # The same load again: the same ids, overwritten in place.
    before = set(stand_in.vectors("ray-rag", NAMESPACE))
    assert index.replace_document(DOC_A, records(DOC_A, "v1", v1)) == 2500
    assert set(stand_in.vectors("ray-rag", NAMESPACE)) == before and index.count() == 2500
    # A new version is written beside the old one (ids carry the version) ...
    assert index.replace_document(DOC_B, records(DOC_B, "v1", ["Another document."])) == 1
    v2 = [v1[0], v1[1], "A chunk new in version 2."]
    assert index.replace_document(DOC_A, records(DOC_A, "v2", v2)) == 3
    assert index.count(DOC_A) == 2503
    # ... and once it is completed, the 2,500 of v1 go, in deletes of at most 1000 ids.
    assert index.remove_other_versions(DOC_A, "v2") == 2500
    stored = stand_in.vectors("ray-rag", NAMESPACE)
    of_a = [vector.metadata for vector in stored.values() if vector.metadata["document_id"] == DOC_A]
    assert sorted(metadata["text"] for metadata in of_a) == sorted(v2)
    assert {metadata["processing_version"] for metadata in of_a} == {"v2"}
    assert [request.vector_count for request in stand_in.requests_to("/vectors/delete")] == [1000, 1000, 500]
    assert index.count(DOC_A) == 3 and index.count() == 4
    assert index.delete_document(DOC_B) == 1 and index.count() == 3


def test_a_reload_failing_its_second_batch_leaves_the_old_version_served_whole(stand_in: PineconeStandIn) -> None:
    served = {DOC_A: "v1"}  # what the status store would say is COMPLETED
    index = PineconeIndex(api_key=SecretStr(API_KEY), index_name="ray-rag", namespace=NAMESPACE,
                          controller_host=stand_in.base_url, retry=FAST_RETRIES, served_versions=lambda: served)
    v1 = [f"Version one chunk {number}." for number in range(1500)]
    v2 = [f"Version two chunk {number}." for number in range(1500)]
    old, new = records(DOC_A, "v1", v1, seed=1), records(DOC_A, "v2", v2, seed=2)
    assert index.replace_document(DOC_A, old) == 1500
    # The reload's first batch (1000 vectors) goes in; the second is refused.
    stand_in.fail_next(400, path_suffix="/vectors/upsert", after=1)
    with pytest.raises(PineconeApiException):
        index.replace_document(DOC_A, new)
    stand_in.clear_faults()
    assert [request.vector_count for request in stand_in.requests_to("/vectors/upsert", status=200)][-1] == 1000
    # The partial v2 was taken out again; v1 is whole, and search serves only v1.
    texts = {vector.metadata["text"] for vector in stand_in.vectors("ray-rag", NAMESPACE).values()}
    assert texts == set(v1)
    for probe in (new[10], new[1200], old[10]):
        assert all(hit.metadata["processing_version"] == "v1" for hit in index.search("", probe.vector, 10))
    # Even a partial v2 left behind (the clean-up itself failed) is never served while v1 is the completed one.
    stand_in.fail_next(400, path_suffix="/vectors/upsert", after=1)
    stand_in.fail_next(400, path_suffix="/vectors/list")
    with pytest.raises(PineconeApiException):
        index.replace_document(DOC_A, new)
    stand_in.clear_faults()
    assert index.count(DOC_A) == 2500
    assert all(hit.text in v1 for hit in index.search("", new[10].vector, 20))
    # The reload succeeds; v2 is served once completed; then v1's vectors go.
    assert index.replace_document(DOC_A, new) == 1500
    assert index.search("", new[10].vector, 1)[0].text in v1
    served[DOC_A] = "v2"
    assert index.search("", new[10].vector, 1)[0].text == v2[10]
    assert index.remove_other_versions(DOC_A, "v2") == 1500 and index.count(DOC_A) == 1500


def test_large_records_are_batched_by_encoded_size(stand_in: PineconeStandIn) -> None:
    index = backend(stand_in)
    paragraph = "Eligible participants have HbA1c between 7.0% and 10.5% and eGFR ≥ 45 mL/min. " * 19  # ~1.5 kB
    texts = [f"{number}: {paragraph}" for number in range(2500)]
    assert index.replace_document(DOC_A, records(DOC_A, "v1", texts, dimension=384)) == 2500
    upserts = stand_in.requests_to("/vectors/upsert")
    assert all(request.status == 200 and request.body_bytes <= MAX_REQUEST_BYTES for request in upserts)
    assert all(request.vector_count < MAX_VECTORS_PER_UPSERT for request in upserts)
    # Batches are cut by size, and full: each but the last is within one vector (< 20 kB here) of the budget.
    assert len(upserts) > 8
    assert all(request.body_bytes > UPSERT_BYTES_BUDGET - 20_000 for request in upserts[:-1])
    assert sum(request.vector_count for request in upserts) == 2500 and index.count() == 2500


def test_oversized_text_is_truncated_utf8_safe_with_a_flag(stand_in: PineconeStandIn) -> None:
    index = backend(stand_in)
    huge = 'Table row "ß" → 🧪 value\n' * 3000  # ~80 kB of multi-byte text with JSON escapes
    loaded = records(DOC_A, "v1", [huge, "A normal chunk."])
    assert index.replace_document(DOC_A, loaded) == 2
    stored = {
        vector.metadata["chunk_index"]: vector.metadata for vector in stand_in.vectors("ray-rag", NAMESPACE).values()
    }
    truncated, normal = stored[0], stored[1]
    assert truncated["text_truncated"] is True and normal["text_truncated"] is False
    assert huge.startswith(truncated["text"]) and len(truncated["text"]) > 10_000
    size = len(json.dumps(truncated, separators=(",", ":"), ensure_ascii=False).encode())
    assert METADATA_BYTES_BUDGET - 100 < size <= MAX_METADATA_BYTES
    assert normal["text"] == "A normal chunk."
    # Nothing in it but 4-byte characters: the cut still falls between characters.
    emoji = records(DOC_B, "v1", ["🧪" * 20_000])[0]
    metadata = record_metadata(emoji)
    assert metadata["text_truncated"] is True and set(metadata["text"]) == {"🧪"}
    # Lists too big even for an empty text: dropped and flagged, the upsert still goes through.
    crowded = records(DOC_B, "v1", ["Short."])[0]
    crowded.key_phrases = [f"phrase {number} " * 20 for number in range(400)]
    metadata = record_metadata(crowded)
    assert metadata["metadata_truncated"] is True and "key_phrases" not in metadata and metadata["text"] == ""
    assert index.replace_document(DOC_B, [crowded]) == 1


def test_the_stand_in_enforces_pinecone_limits(stand_in: PineconeStandIn) -> None:
    """What the batching tests lean on: a request over a limit is refused as Pinecone refuses it."""
    from pinecone import ApiError, Pinecone, UnauthorizedError

    client = Pinecone(api_key=API_KEY, host=stand_in.base_url)
    model = client.indexes.create(name="limits", schema={"fields": {"_values": {"type": "dense_vector",
                                  "dimension": 4, "metric": "cosine"}}}, timeout=-1)
    while not client.indexes.describe("limits").status.ready:  # the stand-in's index is ready after 2 describes
        pass
    data = client.index(host=model.host)
    refused = {
        "1001 vectors": [{"id": f"v{number}", "values": [1.0, 0, 0, 0]} for number in range(1001)],
        "a 2 MiB body": [{"id": f"v{number}", "values": [1.0, 0, 0, 0], "metadata": {"text": "x" * 30_000}}
                         for number in range(80)],
        "41 kB of metadata": [{"id": "big", "values": [1.0, 0, 0, 0], "metadata": {"text": "x" * 41_000}}],
        "the wrong dimension": [{"id": "short", "values": [1.0, 0, 0]}],
    }
    for reason, vectors in refused.items():
        with pytest.raises(ApiError) as failure:
            data.upsert(vectors=vectors, namespace="n")
        assert failure.value.status_code == (413 if reason == "a 2 MiB body" else 400), reason
    # The client refuses nested or null metadata itself; the stand-in does too, for any other client.
    for metadata in ({"entities": {"people": ["b"]}}, {"page": None}, {"pages": [1, 2]}):
        answer = httpx.post(f"{model.host}/vectors/upsert", headers={"Api-Key": API_KEY},
                            json={"vectors": [{"id": "m", "values": [1.0, 0, 0, 0], "metadata": metadata}]})
        assert answer.status_code == 400, metadata
    assert stand_in.vectors("limits", "n") == {}
    with pytest.raises(UnauthorizedError):
        Pinecone(api_key="wrong", host=stand_in.base_url).index(host=model.host).describe_index_stats()


def test_search_returns_the_nearest_record_with_its_metadata(stand_in: PineconeStandIn) -> None:
    index = backend(stand_in)
    texts = [f"Background paragraph {number} about study conduct." for number in range(30)]
    loaded = records(DOC_A, "v1", texts, seed=7)
    index.replace_document(DOC_A, loaded)
    target = loaded[17]
    near = target.vector + np.random.default_rng(1).normal(scale=0.05, size=8).astype(np.float32)
    hits = index.search("ignored by the dense index", near, 5)
    assert len(hits) == 5 and hits[0].id == target.id and hits[0].score > 0.95
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    best = hits[0]
    assert (best.document_id, best.source_key, best.text) == (DOC_A, target.source_key, target.text)
    assert (best.page_start, best.page_end) == (target.page_start, target.page_end)
    assert best.heading_path == target.heading_path
    assert best.metadata["entities"] == {"people": ["Dr. Jane Roe"], "organizations": [], "medications": ["metformin"]}
    assert best.metadata["redactions"] == {"email": 1, "phone": 2}
    assert best.metadata["key_phrases"] == ["eligibility", "HbA1c"]
    assert (best.metadata["chunk_index"], best.metadata["processing_version"]) == (17, "v1")
    assert best.metadata["embed_model"] == "test-model" and best.metadata["text_truncated"] is False


def test_a_burst_of_429_and_503_is_ridden_out(stand_in: PineconeStandIn) -> None:
    index = backend(stand_in)
    index.replace_document(DOC_A, records(DOC_A, "v1", ["First chunk."]))
    # More throttling than the client's own four attempts per request: the backend's policy outlasts it.
    stand_in.fail_next(429, times=10, path_suffix="/vectors/upsert", retry_after=0)
    stand_in.fail_next(503, times=5, path_suffix="/vectors/list")
    assert index.replace_document(DOC_A, records(DOC_A, "v2", ["First chunk.", "Second chunk."])) == 2
    assert stand_in.pending_faults() == 0
    assert len(stand_in.requests_to("/vectors/upsert", status=429)) == 10
    assert len(stand_in.requests_to("/vectors/list", status=503)) == 5
    assert index.remove_other_versions(DOC_A, "v2") == 1 and index.count(DOC_A) == 2


def test_a_rejected_key_fails_fast_without_leaking_it(
    stand_in: PineconeStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_key = "pcsk_WRONG_0123456789abcdef"
    index = backend(stand_in, api_key=wrong_key)
    with caplog.at_level(logging.DEBUG), pytest.raises(PineconeIndexError) as failure:
        index.replace_document(DOC_A, records(DOC_A, "v1", ["Text."]))
    assert "401" in str(failure.value) and "RAY_RAG_PINECONE_API_KEY" in str(failure.value)
    assert len(stand_in.requests) == 1  # no retry on 401
    rendered = "".join(traceback.format_exception(failure.value)) + caplog.text + repr(index.__dict__)
    assert wrong_key not in rendered and wrong_key[-12:] not in rendered


def test_built_from_settings_and_the_data_plane_host_override(stand_in: PineconeStandIn, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, vector_index="pinecone", pinecone_api_key=SecretStr(API_KEY),
                        pinecone_index="from-settings", pinecone_namespace=NAMESPACE,
                        pinecone_controller_host=stand_in.base_url)
    index = PineconeIndex.from_settings(settings, retry=FAST_RETRIES)
    assert index.replace_document(DOC_A, records(DOC_A, "v1", ["One.", "Two."])) == 2
    expected_ids = {f"{DOC_A}#v1#{record.id}" for record in records(DOC_A, "v1", ["One.", "Two."])}
    assert set(stand_in.vectors("from-settings", NAMESPACE)) == expected_ids
    # With the data-plane host given, reads go straight to it: no describe.
    direct = PineconeIndex.from_settings(
        settings.model_copy(update={"pinecone_host": f"{stand_in.base_url}/data/from-settings"}), retry=FAST_RETRIES
    )
    describes = len(stand_in.requests_to("/indexes/from-settings"))
    assert direct.count(DOC_A) == 2 and len(stand_in.requests_to("/indexes/from-settings")) == describes
    with pytest.raises(PineconeIndexError, match="no Pinecone API key"):
        PineconeIndex.from_settings(settings.model_copy(update={"pinecone_api_key": None}))
