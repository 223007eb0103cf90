"""End to end on the production backends: S3, DynamoDB and Secrets Manager on moto's server, OpenAI and
Pinecone on local stand-ins speaking their REST APIs, so the real boto3, openai and pinecone clients talk
over HTTP — from the Dagster process and from the Ray workers alike.

The journey is the seed's: upload PDFs to ``s3://<bucket>/input/`` → the sensor adds partitions and
requests batch runs → the five assets run on the session's shared local Ray → status COMPLETED in
DynamoDB, vectors in Pinecone. The Ray workers find moto's credentials in the environment the session gave
the cluster (tests/conftest.py); everything else (endpoints, keys) travels in the settings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import dagster as dg
import pytest
import ray

from ray_rag_dagster.backends import build_status_store
from ray_rag_dagster.backends.vector_index import SearchHit
from ray_rag_dagster.backends.dynamodb_status_store import DynamoDBStatusStore
from ray_rag_dagster.costs import usd
from ray_rag_dagster.dagster_home import prepare_dagster_home
from ray_rag_dagster.defs import build_definitions
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.defs.sensors import inbox_sensor
from ray_rag_dagster.ids import document_id_for
from ray_rag_dagster.samples import SEEDED_PII, write_samples
from ray_rag_dagster.search import search_index
from ray_rag_dagster.settings import load_settings
from ray_rag_dagster.stages.enrich import ENRICH_BATCH
from tests.standins.aws import moto_server
from tests.standins.openai_server import OpenAIStandIn, openai_server, rate_limited, server_error
from tests.standins.pinecone_server import PineconeStandIn, pinecone_server

from .conftest import PDFS

pytestmark = pytest.mark.slow

OPENAI_KEY = "sk-live-4f9c2e7a1b3d5f60718293a4b5c6d7e8"
PINECONE_KEY = "pcsk_9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
BUCKET = "ray-rag-e2e"
PREFIX = "e2e"
INDEX = "protocols"
REAL_PDFS = [PDFS / "docling" / "normal_4pages.pdf", PDFS / "docling" / "2305.03393v1-pg9.pdf"]


@dataclass
class Stack:
    home: Path
    endpoint: str
    openai: OpenAIStandIn
    pinecone: PineconeStandIn
    s3: object
    instance: dg.DagsterInstance
    cursor: str | None = None

    def upload(self, path: Path, key: str | None = None) -> str:
        key = key or f"input/{path.name}"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        return key

    def partitions(self, request: dg.RunRequest) -> list[str]:
        """The partitions a run request covers (one, or a range of the partitions in their order)."""
        if request.partition_key is not None:
            return [request.partition_key]
        key_range = request.partition_key_range
        assert key_range is not None, request
        ordered = self.instance.get_dynamic_partitions(documents.name)
        return ordered[ordered.index(key_range.start) : ordered.index(key_range.end) + 1]

    def tick_and_run(self) -> dict[str, dg.ExecuteInProcessResult]:
        """One sensor tick, then each requested (batch) run, as the daemon and the run launcher would; the
        result of each document's run, by document id."""
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                          resources={"pipeline": RagPipeline(home=str(self.home))})
        result = inbox_sensor(context)
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(documents.name, list(request.partition_keys))
        job = build_definitions(load_settings()).resolve_job_def("ingest_documents")
        runs = {}
        for request in result.run_requests:
            run = job.execute_in_process(
                instance=self.instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
            )
            runs.update(dict.fromkeys(self.partitions(request), run))
        return runs


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("aws-home")
    with moto_server() as endpoint, openai_server(OPENAI_KEY) as openai, pinecone_server(PINECONE_KEY) as pinecone, \
            pytest.MonkeyPatch.context() as env:
        secrets = boto3.client("secretsmanager", endpoint_url=endpoint)
        openai_arn = secrets.create_secret(Name="ray-rag/openai", SecretString=OPENAI_KEY)["ARN"]
        pinecone_arn = secrets.create_secret(Name="ray-rag/pinecone", SecretString=json.dumps({"api_key": PINECONE_KEY}))["ARN"]
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        DynamoDBStatusStore(PREFIX, endpoint_url=endpoint).ensure_tables()
        configuration = {
            "HOME": str(home), "OBJECT_STORE": "s3", "S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL": endpoint,
            "STATUS_STORE": "dynamodb", "DYNAMODB_TABLE_PREFIX": PREFIX,
            "EMBEDDER": "openai", "ENRICHER": "openai", "OPENAI_BASE_URL": openai.base_url,
            "OPENAI_API_KEY_SECRET_ARN": openai_arn,
            "VECTOR_INDEX": "pinecone", "PINECONE_API_KEY_SECRET_ARN": pinecone_arn,
            "PINECONE_CONTROLLER_HOST": pinecone.base_url, "PINECONE_INDEX": INDEX,
        }
        for name, value in configuration.items():
            env.setenv(f"RAY_RAG_{name}", value)
        for name in ("RAY_RAG_OPENAI_API_KEY", "RAY_RAG_PINECONE_API_KEY"):
            env.delenv(name, raising=False)
        env.setenv("DAGSTER_HOME", str(home / "dagster"))
        prepare_dagster_home(load_settings())
        stack = Stack(home, endpoint, openai, pinecone, s3, dg.DagsterInstance.get())
        # A burst of rate limits with Retry-After and some server errors, to be ridden out.
        openai.queue_faults("/v1/embeddings", rate_limited(retry_after=1), rate_limited(retry_after_ms=300),
                            server_error(500), server_error(503))
        openai.queue_faults("/v1/chat/completions", rate_limited(retry_after=1), server_error(502))
        for path in REAL_PDFS:
            stack.upload(path)
        stack.runs = stack.tick_and_run()
        yield stack


def real_ids() -> list[str]:
    return [document_id_for(f"input/{path.name}") for path in REAL_PDFS]


def test_runs_succeed_after_riding_out_faults(stack: Stack) -> None:
    assert sorted(stack.runs) == sorted(real_ids())
    assert all(result.success for result in stack.runs.values())
    assert stack.openai.request_count("/v1/embeddings", status=429) == 2
    assert stack.openai.request_count("/v1/embeddings", status=500) + stack.openai.request_count("/v1/embeddings", status=503) == 2


def test_outputs_under_each_s3_prefix(stack: Stack) -> None:
    keys = [item["Key"] for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for item in page.get("Contents", [])]
    for document_id in real_ids():
        for prefix in ("extracted", "chunks", "enriched", "embeddings"):
            assert any(key.startswith(f"{prefix}/{document_id}/") for key in keys), (prefix, document_id)


def test_dynamodb_control_audit_and_metrics(stack: Stack) -> None:
    status = build_status_store(load_settings())
    rows = {row.document_id: row for row in status.documents()}
    total_chunks = 0
    for document_id in real_ids():
        row = rows[document_id]
        assert (row.status, row.current_stage) == ("COMPLETED", "load")
        assert row.counts["vectors"] == row.counts["chunks"] > 0 and row.counts["pages"] >= 1
        assert row.counts["tokens"] > 0 and row.counts["cost_usd"] > 0
        total_chunks += row.counts["chunks"]
        transitions = [(event["from_status"], event["to_status"], event["stage"]) for event in status.audit(document_id)]
        assert transitions[0][1] == "PENDING" and transitions[-1][1] == "COMPLETED"
        assert [stage for _, _, stage in transitions if stage][:5] == ["extract", "chunk", "enrich", "embed", "load"]
        ttl = boto3.resource("dynamodb", endpoint_url=stack.endpoint).Table(f"{PREFIX}-audit").query(
            KeyConditionExpression="document_id = :d", ExpressionAttributeValues={":d": document_id})["Items"][0]["ttl"]
        assert int(ttl) > 170 * 86400
    [day] = status.metrics()
    assert day["documents_completed"] >= 2 and day["chunks"] >= total_chunks


def test_vectors_in_pinecone_with_documented_metadata(stack: Stack) -> None:
    stored = stack.pinecone.vectors(INDEX, "default")
    status = build_status_store(load_settings())
    for document_id in real_ids():
        mine = {key: vector for key, vector in stored.items() if key.startswith(f"{document_id}#")}
        assert len(mine) == status.get(document_id).counts["chunks"]
        metadata = next(iter(mine.values())).metadata
        for field in ("document_id", "processing_version", "source_key", "chunk_index", "page_start", "page_end",
                      "heading_path", "text", "content_hash", "embed_model"):
            assert field in metadata, field
        # key phrases are left out of a chunk that has none (a short chunk may have none)
        assert any("key_phrases" in vector.metadata for vector in mine.values())
        assert metadata["embed_model"] == "text-embedding-3-small"
        assert len(next(iter(mine.values())).values) == 1536


def test_cost_metadata_equals_stand_in_tokens_times_prices(stack: Stack) -> None:
    prices = load_settings().prices
    embed_cost = enrich_cost = 0.0
    for document_id in real_ids():
        for asset, total in (("embeddings", "embed"), ("enriched_chunks", "enrich")):
            [materialization] = [
                event for event in stack.runs[document_id].asset_materializations_for_node("ingest")
                if event.asset_key == dg.AssetKey(asset) and event.partition == document_id
            ]
            value = materialization.metadata["estimated_usd"].value
            if total == "embed":
                embed_cost += value
            else:
                enrich_cost += value
    billed = stack.openai.tokens_billed
    assert embed_cost == pytest.approx(usd(prices, "text-embedding-3-small", billed[("text-embedding-3-small", "input")]))
    assert enrich_cost == pytest.approx(usd(prices, "gpt-4o-mini", billed[("gpt-4o-mini", "input")],
                                            billed[("gpt-4o-mini", "output")]))


def test_claimed_elsewhere_is_skipped_without_error(stack: Stack, tmp_path: Path) -> None:
    """A second orchestrator holds the lease: DynamoDB's conditional check refuses our claim; we skip."""
    [protocol, _] = write_samples(tmp_path)
    key = stack.upload(protocol, "input/claimed-elsewhere.pdf")
    document_id = document_id_for(key)
    etag = stack.s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
    status = build_status_store(load_settings())
    status.register(document_id, etag[:16], key)
    assert status.claim(document_id, etag[:16], "other-deployment-run", 600, reprocess=False).granted
    context = dg.build_sensor_context(instance=stack.instance, cursor=stack.cursor,
                                      resources={"pipeline": RagPipeline(home=str(stack.home))})
    sensor_result = inbox_sensor(context)
    assert sensor_result.run_requests == []  # the sensor already sees it taken
    for request in sensor_result.dynamic_partitions_requests:
        stack.instance.add_dynamic_partitions(documents.name, list(request.partition_keys))
    stack.cursor = sensor_result.cursor
    # A re-sent run for it anyway (e.g. from a second deployment's sensor): succeeds, materializes nothing.
    job = build_definitions(load_settings()).resolve_job_def("ingest_documents")
    result = job.execute_in_process(instance=stack.instance, partition_key=document_id,
                                    tags={"ray_rag/trigger": "sensor"}, raise_on_error=False)
    assert result.success
    assert result.get_asset_materialization_events() == []
    row = status.get(document_id)
    assert (row.status, row.owner) == ("IN_PROGRESS", "other-deployment-run")


def test_permanent_401_fails_fast_with_clear_status(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_RAG_OPENAI_API_KEY", "sk-revoked-0000000000000000000000")
    [protocol, _] = write_samples(tmp_path)
    key = stack.upload(protocol)
    before = stack.openai.request_count("/v1/chat/completions", status=401)
    runs = stack.tick_and_run()
    result = runs[document_id_for(key)]
    assert not result.success
    row = build_status_store(load_settings()).get(document_id_for(key))
    assert row.status == "FAILED" and row.current_stage == "enrich"
    assert "401" in row.error and protocol.name in row.error
    assert "sk-revoked" not in row.error
    # Fails fast: a permanent error is not retried; only requests of the first batch already in flight go.
    assert stack.openai.request_count("/v1/chat/completions", status=401) - before <= ENRICH_BATCH


def test_no_secret_in_anything_a_run_writes(stack: Stack) -> None:
    # The state folder (Dagster storage and compute logs included) and this Ray session's logs.
    places = [stack.home, Path(ray._private.worker._global_node.get_session_dir_path())]
    leaks = []
    for root in places:
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                data = path.read_bytes()
                leaks += [f"{path}: {key[:6]}…" for key in (OPENAI_KEY, PINECONE_KEY) if key.encode() in data]
    status = build_status_store(load_settings())
    dump = json.dumps([row.__dict__ for row in status.documents()], default=str)
    dump += json.dumps([status.audit(document_id) for document_id in real_ids()], default=str)
    leaks += [f"status store: {key[:6]}…" for key in (OPENAI_KEY, PINECONE_KEY) if key in dump]
    for run in stack.runs.values():
        for event in stack.instance.all_logs(run.run_id):
            text = str(event)
            leaks += [f"event log: {key[:6]}…" for key in (OPENAI_KEY, PINECONE_KEY) if key in text]
    assert leaks == []


def test_pii_never_sent_to_openai(stack: Stack) -> None:
    bodies = " ".join(stack.openai.bodies())
    assert all(secret not in bodies for secret in SEEDED_PII)


def test_key_deleted_between_listing_and_run(stack: Stack, tmp_path: Path) -> None:
    [protocol, _] = write_samples(tmp_path)
    key = stack.upload(protocol, "input/withdrawn.pdf")
    context = dg.build_sensor_context(instance=stack.instance, cursor=stack.cursor,
                                      resources={"pipeline": RagPipeline(home=str(stack.home))})
    sensor_result = inbox_sensor(context)
    [request] = [r for r in sensor_result.run_requests if r.partition_key == document_id_for(key)]
    for partitions in sensor_result.dynamic_partitions_requests:
        stack.instance.add_dynamic_partitions(documents.name, list(partitions.partition_keys))
    stack.s3.delete_object(Bucket=BUCKET, Key=key)  # gone before the run starts
    job = build_definitions(load_settings()).resolve_job_def("ingest_documents")
    result = job.execute_in_process(instance=stack.instance, partition_key=request.partition_key,
                                    tags=request.tags, raise_on_error=False)
    assert result.success and result.get_asset_materialization_events() == []
    assert build_status_store(load_settings()).get(document_id_for(key)).status == "DELETED"


def test_a_reload_refused_by_pinecone_fails_and_the_old_version_stays_served(stack: Stack, tmp_path: Path) -> None:
    [protocol, _] = write_samples(tmp_path)
    key = stack.upload(protocol, "input/reloaded.pdf")
    document_id = document_id_for(key)
    assert stack.tick_and_run()[document_id].success
    settings, status = load_settings(), build_status_store(load_settings())
    v1 = status.get(document_id).processing_version

    def served() -> list[SearchHit]:
        hits = search_index(settings, "study objectives and eligibility of participants", 50)
        return [hit for hit in hits if hit.document_id == document_id]

    before = served()
    assert before and {hit.metadata["processing_version"] for hit in before} == {v1}
    # Version 2 under the same key; Pinecone refuses its upsert.
    stack.upload(REAL_PDFS[1], key)
    stack.pinecone.fail_next(400, path_suffix="/vectors/upsert")
    result = stack.tick_and_run()[document_id]
    assert not result.success
    row = status.get(document_id)
    assert (row.status, row.current_stage) == ("FAILED", "load") and row.processing_version != v1
    assert row.error.startswith("reloaded.pdf: load failed") and "400" in row.error
    assert status.completed_versions()[document_id] == v1
    assert [(hit.id, hit.text) for hit in served()] == [(hit.id, hit.text) for hit in before]
