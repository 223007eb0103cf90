"""A local stand-in for the parts of OpenAI's REST API the pipeline uses, so the real ``openai`` client runs
against a real HTTP server in tests (Ray workers and docling's ``requests`` session included).

Endpoints: ``POST /v1/embeddings`` and ``POST /v1/chat/completions`` (JSON-schema structured output and
vision messages), with Bearer-key checks answered in OpenAI's error shape. Tests queue faults per endpoint
(429 with ``Retry-After`` / ``retry-after-ms``, 5xx, malformed chat replies), read every recorded request
body, and read the tokens billed per model to check cost arithmetic.

What it does not do like the real service: vectors are a hash of the text (no semantics); token counts
come from a word/punctuation approximation, not tiktoken; chat "answers" are built by rules from the
input (echo plus regex entities); images are billed a flat amount; no streaming, no rate-limit headers
other than the faults queued.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_INPUT = 8191
MAX_TOKENS_PER_REQUEST = 300_000
IMAGE_TOKENS = 255  # what one 512x512 "low detail"-ish image costs in this stand-in

EMBEDDINGS_PATH = "/v1/embeddings"
CHAT_PATH = "/v1/chat/completions"

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PERSON = re.compile(r"\b(?:Dr|Prof|Mr|Mrs|Ms)\.?\s+([A-Z][a-z]+(?:\s+[A-Z]\.)?(?:\s+[A-Z][a-z]+)?)")
_ORGANIZATION = re.compile(
    r"\b((?:[A-Z][A-Za-z]+\s+){1,4}(?:Inc\.?|Ltd\.?|LLC|University|Hospital|Institute|Pharmaceuticals))"
)
_MEDICATIONS = ("metformin", "insulin", "aspirin", "ibuprofen", "atorvastatin", "lisinopril", "examplumab")


def count_tokens(text: str) -> int:
    """Words and punctuation marks: close to cl100k/o200k counts for English prose."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class Fault:
    """One queued reply that replaces the next normal answer of an endpoint."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None  # OpenAI error object for non-200 statuses
    content: str | None = None  # chat only: the assistant message content of a 200 reply (e.g. broken JSON)


def rate_limited(retry_after: float | None = 1, retry_after_ms: int | None = None) -> Fault:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    return Fault(
        status=429,
        headers=headers,
        error={
            "message": "Rate limit reached for requests. Please try again later.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    )


def server_error(status: int = 500) -> Fault:
    return Fault(
        status=status,
        error={
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    )


def malformed_reply(content: str = '{"redacted_text": "unterminated') -> Fault:
    return Fault(content=content)


@dataclass
class RecordedRequest:
    path: str
    body: dict[str, Any]
    status: int


class OpenAIStandIn:
    """The server and its state; start/stop by handle. ``base_url`` ends in ``/v1`` like OpenAI's."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.tokens_billed: Counter[tuple[str, str]] = Counter()  # (model, "input" | "output") -> tokens
        self._faults: dict[str, deque[Fault]] = {EMBEDDINGS_PATH: deque(), CHAT_PATH: deque()}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() returns within a poll
            name="openai-standin",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ---- test controls

    def queue_faults(self, path: str, *faults: Fault) -> None:
        with self._lock:
            self._faults[path].extend(faults)

    def request_count(self, path: str, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path and (status is None or r.status == status))

    def bodies(self, path: str | None = None) -> list[str]:
        """Every recorded request body as JSON text (for "this never left the machine" assertions)."""
        with self._lock:
            return [json.dumps(r.body) for r in self.requests if path is None or r.path == path]

    # ---- request handling (called from server threads)

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _record(self, path: str, body: dict[str, Any], status: int) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(path, body, status))

    def _bill(self, model: str, input_tokens: int, output_tokens: int = 0) -> None:
        with self._lock:
            self.tokens_billed[(model, "input")] += input_tokens
            self.tokens_billed[(model, "output")] += output_tokens

    def handle(self, path: str, authorization: str | None, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        if path not in self._faults:
            return 404, {}, _error(f"Unknown request URL: POST {path}.", "invalid_request_error", "unknown_url")
        presented = (authorization or "").removeprefix("Bearer ").strip()
        if presented != self.api_key:
            self._record(path, body, 401)
            # The real service echoes a masked form of the key it was given.
            masked = f"{presented[:3]}{'*' * max(len(presented) - 7, 0)}{presented[-4:]}" if presented else ""
            return (
                401,
                {},
                _error(
                    f"Incorrect API key provided: {masked}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
            )
        fault = self._next_fault(path)
        if fault is not None and fault.status != 200:
            self._record(path, body, fault.status)
            return fault.status, fault.headers, {"error": fault.error}
        status, payload = self._embeddings(body) if path == EMBEDDINGS_PATH else self._chat(body, fault)
        self._record(path, body, status)
        return status, {}, payload

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, Any]:
        model = str(body.get("model"))
        if model not in EMBEDDING_DIMENSIONS:
            return 404, _error(
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            return 400, _error(
                "'input' must be a non-empty string or array of non-empty strings.", "invalid_request_error", None
            )
        if len(texts) > MAX_INPUTS_PER_REQUEST:
            return 400, _error(
                f"'input' : maximum {MAX_INPUTS_PER_REQUEST} inputs per request.", "invalid_request_error", None
            )
        counts = [count_tokens(t) for t in texts]
        if max(counts) > MAX_TOKENS_PER_INPUT:
            return 400, _error(
                f"This model's maximum context length is {MAX_TOKENS_PER_INPUT} tokens, however you "
                f"requested {max(counts)} tokens.",
                "invalid_request_error",
                None,
            )
        if sum(counts) > MAX_TOKENS_PER_REQUEST:
            return 400, _error(
                f"Requested {sum(counts)} tokens, max {MAX_TOKENS_PER_REQUEST} tokens per request.",
                "max_tokens_per_request",
                None,
            )
        dimension = int(body.get("dimensions") or EMBEDDING_DIMENSIONS[model])
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = hash_vector(text, EMBEDDING_DIMENSIONS[model])[:dimension]
            vector /= np.linalg.norm(vector)
            embedding: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode() if as_base64 else vector.tolist()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        data.reverse()  # the API documents ``index`` as the key to order by; make clients rely on it
        total = sum(counts)
        self._bill(model, total)
        return 200, {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }

    def _chat(self, body: dict[str, Any], fault: Fault | None) -> tuple[int, Any]:
        model = str(body.get("model"))
        messages = body.get("messages") or []
        texts, images = [], []
        for message in messages:
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else (content or [])
            for part in parts:
                if part.get("type") == "text":
                    texts.append(part["text"])
                elif part.get("type") == "image_url":
                    images.append(part["image_url"]["url"])
        if fault is not None and fault.content is not None:
            content = fault.content
        elif images:
            content = describe_image(images[0])
        elif (body.get("response_format") or {}).get("type") == "json_schema":
            schema = body["response_format"]["json_schema"]["schema"]
            user_text = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
            content = json.dumps(structured_answer(schema, user_text if isinstance(user_text, str) else ""))
        else:
            content = "OK"
        prompt_tokens = sum(count_tokens(t) for t in texts) + 4 * len(messages) + IMAGE_TOKENS * len(images)
        completion_tokens = count_tokens(content)
        self._bill(model, prompt_tokens, completion_tokens)
        return 200, {
            "id": f"chatcmpl-{hashlib.sha1(json.dumps(body).encode()).hexdigest()[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def hash_vector(text: str, dimension: int) -> np.ndarray:
    """A deterministic unit vector per text: equal texts embed equally, different texts almost orthogonally."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimension)
    return vector / np.linalg.norm(vector)


def structured_answer(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Fill every property of a flat JSON schema from ``text`` by rules (what a model would answer)."""
    long_words = Counter(word.lower() for word in re.findall(r"[A-Za-z]{6,}", text))
    rules = {
        "redacted_text": text,
        "people": _dedupe(_PERSON.findall(text)),
        "organizations": _dedupe([m.strip() for m in _ORGANIZATION.findall(text)]),
        "medications": [m for m in _MEDICATIONS if m in text.lower()],
        "key_phrases": [word for word, _ in long_words.most_common(3)],
    }
    answer: dict[str, Any] = {}
    for name, spec in schema.get("properties", {}).items():
        answer[name] = rules.get(name, [] if spec.get("type") == "array" else "")
    return answer


def describe_image(data_url: str) -> str:
    from PIL import Image

    raw = base64.b64decode(data_url.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as image:
        width, height = image.size
        red, green, blue = (int(c) for c in np.asarray(image.convert("RGB")).reshape(-1, 3).mean(axis=0))
    dominant = max((red, "red"), (green, "green"), (blue, "blue"))[1]
    return f"A {width}x{height} pixel image, mostly {dominant}."


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _error(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _handler_for(standin: OpenAIStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx and requests expect

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                status, headers, payload = (
                    400,
                    {},
                    _error("We could not parse the JSON body of your request.", "invalid_request_error", None),
                )
            else:
                status, headers, payload = standin.handle(self.path, self.headers.get("Authorization"), body)
            encoded = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.send_header("x-request-id", f"req_{hashlib.sha1(encoded).hexdigest()[:16]}")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def openai_server(api_key: str = "sk-test-standin-0123456789abcdef") -> Iterator[OpenAIStandIn]:
    """Start the stand-in on a free port; yield its handle; stop it."""
    standin = OpenAIStandIn(api_key).start()
    try:
        yield standin
    finally:
        standin.stop()
