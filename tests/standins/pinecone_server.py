"""A local Pinecone stand-in: a threaded HTTP server speaking the parts of Pinecone's REST API (version
2026-07, what the ``pinecone`` 10.x client sends) that the vector-index backend uses, so the real client runs
against it.

Control plane: ``GET/POST /indexes``, ``GET/DELETE /indexes/{name}``. Data plane, one per index under
``/data/{name}`` on the same port (``describe`` returns that URL as the index ``host``): ``POST /vectors/upsert``,
``POST /query``, ``GET /vectors/list``, ``POST /vectors/delete``, ``POST /describe_index_stats``,
``GET /vectors/fetch``.

The real per-request limits are enforced, so a client's batching is tested rather than assumed: at most 1000
vectors per upsert (400), request bodies of at most 2 MiB (413, as Pinecone answers), metadata of at most
40 KiB per vector and only strings, numbers, booleans or lists of strings as values (400), the index dimension
(400) and the ``Api-Key`` header (401). Every request is recorded; faults (429/5xx) can be queued.

What it does not model: serverless eventual consistency (writes are visible at once here), read/write units,
sparse vectors, metadata filters beyond ``$eq``/``$in`` on top-level fields, delete by filter.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

MAX_VECTORS_PER_UPSERT = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_IDS_PER_DELETE = 1000
MAX_LIST_LIMIT = 100
DEFAULT_NAMESPACE = "__default__"


class ApiFailure(Exception):
    """An error answer in Pinecone's JSON error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class StoredVector:
    values: list[float]
    metadata: dict[str, Any]


@dataclass
class StoredIndex:
    name: str
    dimension: int
    metric: str
    cloud: str
    region: str
    describes_until_ready: int
    namespaces: dict[str, dict[str, StoredVector]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.describes_until_ready <= 0


@dataclass
class RecordedRequest:
    method: str
    path: str
    status: int
    body_bytes: int
    vector_count: int = 0  # vectors in an upsert body, ids in a delete body


@dataclass
class QueuedFault:
    status: int
    path_suffix: str | None
    retry_after: float | None
    passes: int = 0  # matching requests still to answer normally before this fault applies


def _failure_response(failure: ApiFailure, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"code": failure.code, "message": failure.message}, "status": failure.status}
    return Response(json.dumps(body), status=failure.status, mimetype="application/json", headers=headers)


def _metadata_problem(metadata: Any) -> str | None:
    """Why Pinecone would refuse this metadata, or None."""
    if not isinstance(metadata, dict):
        return "metadata must be an object"
    for key, value in metadata.items():
        if isinstance(value, bool | int | float | str):
            continue
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            continue
        return (
            f"Metadata value for field '{key}' must be a string, number, boolean or list of strings, "
            f"got {type(value).__name__}"
        )
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        return f"Metadata size is {size} bytes, which exceeds the limit of {MAX_METADATA_BYTES} bytes per vector"
    return None


def _matches_filter(metadata: dict[str, Any], metadata_filter: dict[str, Any]) -> bool:
    for key, condition in metadata_filter.items():
        operator, operand = next(iter(condition.items())) if isinstance(condition, dict) else ("$eq", condition)
        value = metadata.get(key)
        values = value if isinstance(value, list) else [value]
        if operator == "$eq":
            if operand not in values:
                return False
        elif operator == "$in":
            if not any(item in operand for item in values):
                return False
        else:
            raise ApiFailure(400, "INVALID_ARGUMENT", f"filter operator {operator} is not supported by the stand-in")
    return True


def _cosine(left: list[float], right: list[float]) -> float:
    dot = sum(a * b for a, b in zip(left, right, strict=True))
    norms = math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right))
    return dot / norms if norms else 0.0


class PineconeStandIn:
    """State and handlers; :func:`pinecone_server` serves it on a free port."""

    def __init__(self, api_key: str, describes_until_ready: int = 1) -> None:
        self.api_key = api_key
        self.describes_until_ready = describes_until_ready
        self.base_url = ""  # set once the server is bound
        self.indexes: dict[str, StoredIndex] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: deque[QueuedFault] = deque()
        self._lock = threading.Lock()
        self._routes = Map(
            [
                Rule("/indexes", methods=["GET"], endpoint="list_indexes"),
                Rule("/indexes", methods=["POST"], endpoint="create_index"),
                Rule("/indexes/<name>", methods=["GET"], endpoint="describe_index"),
                Rule("/indexes/<name>", methods=["DELETE"], endpoint="delete_index"),
                Rule("/data/<name>/vectors/upsert", methods=["POST"], endpoint="upsert"),
                Rule("/data/<name>/query", methods=["POST"], endpoint="query"),
                Rule("/data/<name>/vectors/list", methods=["GET"], endpoint="list_vectors"),
                Rule("/data/<name>/vectors/delete", methods=["POST"], endpoint="delete_vectors"),
                Rule("/data/<name>/vectors/fetch", methods=["GET"], endpoint="fetch"),
                Rule("/data/<name>/describe_index_stats", methods=["POST"], endpoint="describe_index_stats"),
            ]
        )

    # --- test controls and assertions ---------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, path_suffix: str | None = None,
                  retry_after: float | None = None, after: int = 0) -> None:
        """Answer the next ``times`` requests (whose path ends with ``path_suffix``, if given) with ``status``,
        once ``after`` such requests went through normally (``after=1`` on upserts fails a load's second batch)."""
        with self._lock:
            self._faults.extend(QueuedFault(status, path_suffix, retry_after) for _ in range(times))
            if self._faults and after:
                self._faults[-times].passes = after

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def vectors(self, index: str, namespace: str) -> dict[str, StoredVector]:
        with self._lock:
            return dict(self.indexes[index].namespaces.get(namespace or DEFAULT_NAMESPACE, {}))

    def requests_to(self, path_suffix: str, status: int | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                request for request in self.requests
                if request.path.endswith(path_suffix) and (status is None or request.status == status)
            ]

    # --- WSGI ---------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        response, counted = self._respond(request, body)
        with self._lock:
            self.requests.append(
                RecordedRequest(request.method, request.path, response.status_code, len(body), counted)
            )
        return response(environ, start_response)

    def _respond(self, request: Request, body: bytes) -> tuple[Response, int]:
        counted = 0
        try:
            if request.headers.get("Api-Key") != self.api_key:
                raise ApiFailure(401, "UNAUTHENTICATED", "Invalid API Key")
            fault = self._take_fault(request.path)
            if fault is not None:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                code = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT"}.get(fault.status, "UNAVAILABLE")
                return _failure_response(ApiFailure(fault.status, code, "injected fault"), headers), counted
            if len(body) > MAX_REQUEST_BYTES:
                raise ApiFailure(
                    413, "OUT_OF_RANGE",
                    f"Request size {len(body)} bytes exceeds the maximum supported size of {MAX_REQUEST_BYTES} bytes",
                )
            payload = json.loads(body) if body else {}
            if request.path.endswith("/vectors/upsert"):
                counted = len(payload.get("vectors", []))
            elif request.path.endswith("/vectors/delete"):
                counted = len(payload.get("ids") or [])
            endpoint, arguments = self._routes.bind_to_environ(request.environ).match()
            with self._lock:
                status, answer = getattr(self, f"_{endpoint}")(request, payload, **arguments)
            return Response(json.dumps(answer), status=status, mimetype="application/json"), counted
        except ApiFailure as failure:
            return _failure_response(failure), counted
        except NotFound:
            unknown = ApiFailure(404, "NOT_FOUND", f"No route for {request.method} {request.path}")
            return _failure_response(unknown), counted
        except HTTPException as error:
            return _failure_response(ApiFailure(error.code or 400, "INVALID_ARGUMENT", str(error))), counted
        except (ValueError, KeyError, TypeError) as error:
            return _failure_response(ApiFailure(400, "INVALID_ARGUMENT", f"malformed request: {error}")), counted

    def _take_fault(self, path: str) -> QueuedFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_suffix is None or path.endswith(fault.path_suffix):
                    if fault.passes:
                        fault.passes -= 1
                        return None
                    self._faults.remove(fault)
                    return fault
        return None

    # --- control plane ------------------------------------------------------------------------------

    def _index(self, name: str) -> StoredIndex:
        if name not in self.indexes:
            raise ApiFailure(404, "NOT_FOUND", f"Resource {name} not found")
        return self.indexes[name]

    def _model(self, index: StoredIndex) -> dict[str, Any]:
        return {
            "name": index.name,
            "host": f"{self.base_url}/data/{index.name}",
            "status": {"ready": index.ready, "state": "Ready" if index.ready else "Initializing"},
            "schema": {"fields": {"_values": {"type": "dense_vector", "dimension": index.dimension,
                                              "metric": index.metric}}},
            "deployment": {"deployment_type": "managed", "cloud": index.cloud, "region": index.region},
            "deletion_protection": "disabled",
            "tags": None,
        }

    def _list_indexes(self, request: Request, payload: Any) -> tuple[int, Any]:
        return 200, {"indexes": [self._model(index) for index in self.indexes.values()]}

    def _create_index(self, request: Request, payload: Any) -> tuple[int, Any]:
        name = payload["name"]
        if name in self.indexes:
            raise ApiFailure(409, "ALREADY_EXISTS", f"Resource {name} already exists")
        dense = [spec for spec in payload["schema"]["fields"].values() if spec.get("type") == "dense_vector"]
        if len(dense) != 1:
            raise ApiFailure(400, "INVALID_ARGUMENT", "the stand-in serves one dense_vector field per index")
        deployment = payload.get("deployment") or {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
        if deployment.get("deployment_type") != "managed":
            raise ApiFailure(400, "INVALID_ARGUMENT", "the stand-in serves managed (serverless) indexes only")
        metric = dense[0].get("metric", "cosine")
        if metric not in ("cosine", "dotproduct", "euclidean"):
            raise ApiFailure(400, "INVALID_ARGUMENT", f"unknown metric {metric}")
        index = StoredIndex(name, int(dense[0]["dimension"]), metric, deployment["cloud"], deployment["region"],
                            self.describes_until_ready)
        self.indexes[name] = index
        return 201, self._model(index)

    def _describe_index(self, request: Request, payload: Any, name: str) -> tuple[int, Any]:
        index = self._index(name)
        model = self._model(index)  # the state before this describe: creation takes a while
        index.describes_until_ready -= 1
        return 200, model

    def _delete_index(self, request: Request, payload: Any, name: str) -> tuple[int, Any]:
        self._index(name)
        del self.indexes[name]
        return 202, {}

    # --- data plane ---------------------------------------------------------------------------------

    def _ready_index(self, name: str) -> StoredIndex:
        index = self._index(name)
        if not index.ready:
            raise ApiFailure(503, "UNAVAILABLE", f"Index {name} is not ready")
        return index

    def _upsert(self, request: Request, payload: Any, name: str) -> tuple[int, Any]:
        index = self._ready_index(name)
        vectors = payload["vectors"]
        if len(vectors) > MAX_VECTORS_PER_UPSERT:
            raise ApiFailure(
                400, "INVALID_ARGUMENT",
                f"Upsert of {len(vectors)} vectors exceeds the limit of {MAX_VECTORS_PER_UPSERT} per request",
            )
        checked: dict[str, StoredVector] = {}
        for vector in vectors:
            values = [float(value) for value in vector["values"]]
            if len(values) != index.dimension:
                raise ApiFailure(
                    400, "INVALID_ARGUMENT",
                    f"Vector dimension {len(values)} does not match the dimension of the index {index.dimension}",
                )
            metadata = vector.get("metadata") or {}
            problem = _metadata_problem(metadata)
            if problem:
                raise ApiFailure(400, "INVALID_ARGUMENT", problem)
            checked[vector["id"]] = StoredVector(values, metadata)
        # All or nothing, as a rejected request stores nothing.
        index.namespaces.setdefault(payload.get("namespace") or DEFAULT_NAMESPACE, {}).update(checked)
        return 200, {"upsertedCount": len(checked)}

    def _query(self, request: Request, payload: Any, name: str) -> tuple[int, Any]:
        index = self._ready_index(name)
        namespace = payload.get("namespace") or DEFAULT_NAMESPACE
        stored = index.namespaces.get(namespace, {})
        if "id" in payload:
            query_vector = stored[payload["id"]].values
        else:
            query_vector = [float(value) for value in payload["vector"]]
        if len(query_vector) != index.dimension:
            raise ApiFailure(
                400, "INVALID_ARGUMENT",
                f"Query vector dimension {len(query_vector)} does not match the index dimension {index.dimension}",
            )
        metadata_filter = payload.get("filter") or {}
        scored = [
            (_cosine(query_vector, vector.values), vector_id, vector)
            for vector_id, vector in stored.items()
            if _matches_filter(vector.metadata, metadata_filter)
        ]
        scored.sort(key=lambda item: item[0], reverse=True)
        matches = []
        for score, vector_id, vector in scored[: int(payload["topK"])]:
            match: dict[str, Any] = {"id": vector_id, "score": score}
            if payload.get("includeValues"):
                match["values"] = vector.values
            if payload.get("includeMetadata"):
                match["metadata"] = vector.metadata
            matches.append(match)
        return 200, {"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}}

    def _list_vectors(self, request: Request, payload: Any, name: str) -> tuple[int, Any]:
        index = self._ready_index(name)
        namespace = request.args.get("namespace") or DEFAULT_NAMESPACE
        prefix = request.args.get("prefix", "")
        limit = int(request.args.get("limit", MAX_LIST_LIMIT))
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ApiFailure(400, "INVALID_ARGUMENT", f"limit must be between 1 and {MAX_LIST_LIMIT}")
        token = request.args.get("paginationToken")
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else ""
        ids = sorted(
            vector_id for vector_id in index.namespaces.get(namespace, {})
            if vector_id.startswith(prefix) and vector_id > after
        )
        page = ids[:limit]
        answer: dict[str, Any] = {"vectors": [{"id": vector_id} for vector_id in page], "namespace": namespace,
                                  "usage": {"readUnits": 1}}
        if len(ids) > limit:
            answer["pagination"] = {"next": base64.urlsafe_b64encode(page[-1].encode()).decode()}
        return 200, answer

    def _delete_vectors(self, request: Request, payload: Any, name: str) -> tuple[int, Any]:
        index = self._ready_index(name)
        namespace = payload.get("namespace") or DEFAULT_NAMESPACE
        if payload.get("filter"):
            raise ApiFailure(400, "INVALID_ARGUMENT", "delete by metadata filter is not supported by the stand-in")
        if payload.get("deleteAll"):
            index.namespaces.pop(namespace, None)
            return 200, {}
        ids = payload.get("ids") or []
        if len(ids) > MAX_IDS_PER_DELETE:
            raise ApiFailure(400, "INVALID_ARGUMENT",
                             f"Delete of {len(ids)} ids exceeds the limit of {MAX_IDS_PER_DELETE} per request")
        stored = index.namespaces.get(namespace, {})
        for vector_id in ids:
            stored.pop(vector_id, None)
        return 200, {}

    def _fetch(self, request: Request, payload: Any, name: str) -> tuple[int, Any]:
        index = self._ready_index(name)
        namespace = request.args.get("namespace") or DEFAULT_NAMESPACE
        stored = index.namespaces.get(namespace, {})
        found = {
            vector_id: {"id": vector_id, "values": stored[vector_id].values, "metadata": stored[vector_id].metadata}
            for vector_id in request.args.getlist("ids") if vector_id in stored
        }
        return 200, {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}}

    def _describe_index_stats(self, request: Request, payload: Any, name: str) -> tuple[int, Any]:
        index = self._ready_index(name)
        namespaces = {ns: {"vectorCount": len(vectors)} for ns, vectors in index.namespaces.items() if vectors}
        return 200, {
            "namespaces": namespaces,
            "dimension": index.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(summary["vectorCount"] for summary in namespaces.values()),
            "metric": index.metric,
            "vectorType": "dense",
        }


@contextmanager
def pinecone_server(api_key: str, describes_until_ready: int = 1) -> Iterator[PineconeStandIn]:
    """Serve a :class:`PineconeStandIn` on a free loopback port (threaded); stop it by handle on exit."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    stand_in = PineconeStandIn(api_key, describes_until_ready)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, stand_in, threaded=True)
    stand_in.base_url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, name="pinecone-stand-in", daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
