"""The OpenAI client and the retry policy both OpenAI backends share.

The client's own retries are off (``max_retries=0``) so that one policy, here, decides: rate limits (429),
server errors (5xx), timeouts and connection errors are retried with exponential backoff and full jitter,
waiting what the server asks for in ``retry-after-ms`` / ``Retry-After`` when it says (capped, so a broken
header cannot park a worker). Anything else (400 bad request, 401 bad key, 403, 404 unknown model) fails at
once. Every failure surfaces as :class:`OpenAIRequestError`, whose message names the status, error code and
request id but never the key: OpenAI's own 401 message echoes part of the key, so it is not passed on.

``base_url`` comes from settings, so any OpenAI-compatible server (vLLM, Ollama, the test stand-in) works.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import openai
import tenacity

from ray_rag_dagster.settings import Settings

_log = logging.getLogger(__name__)

T = TypeVar("T")

REQUEST_TIMEOUT_S = 60.0
# Besides 429 and 5xx: 408 (request timeout) and 409 (lock conflict) are transient too (the client's own list).
_TRANSIENT_STATUSES = frozenset({408, 409, 429})


class OpenAIRequestError(RuntimeError):
    """An OpenAI call failed for good (not retriable, or retries spent). The message is safe to log."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt (so ``max_retries + 1`` requests at most)."""

    max_retries: int = 6
    backoff_base_s: float = 0.5  # first backoff is up to this; doubles per attempt (full jitter)
    backoff_max_s: float = 20.0
    retry_after_cap_s: float = 20.0  # a server-requested wait is honoured up to this


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_retries=settings.openai_max_retries)


def build_openai_client(settings: Settings) -> openai.OpenAI:
    if settings.openai_api_key is None:
        raise OpenAIRequestError(
            "no OpenAI API key: set RAY_RAG_OPENAI_API_KEY (or RAY_RAG_OPENAI_API_KEY_SECRET_ARN, resolved at start-up)"
        )
    return openai.OpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        max_retries=0,  # retries are ours (call_with_retries), so attempts are counted and logged in one place
        timeout=REQUEST_TIMEOUT_S,
    )


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code in _TRANSIENT_STATUSES or exc.status_code >= 500)


def server_requested_wait(exc: BaseException) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, then ``Retry-After`` as seconds or HTTP date)."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(email.utils.mktime_tz(parsed) - time.time(), 0.0)
    return None


class _WaitRetryAfterOrBackoff(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.backoff = tenacity.wait_random_exponential(multiplier=policy.backoff_base_s, max=policy.backoff_max_s)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        requested = server_requested_wait(outcome.exception()) if outcome is not None else None
        if requested is not None:
            return min(requested, self.policy.retry_after_cap_s)
        return self.backoff(retry_state)


def describe_failure(exc: BaseException) -> str:
    """Status, code and request id; the server's text only where it cannot hold key material."""
    if isinstance(exc, openai.APIStatusError):
        code = getattr(exc, "code", None) or getattr(exc, "type", None) or "error"
        request_id = f", request {exc.request_id}" if exc.request_id else ""
        if exc.status_code in (401, 403):
            reason = "the API key was rejected" if exc.status_code == 401 else "the key lacks access"
            return f"HTTP {exc.status_code} {code}: {reason}{request_id}"
        message = " ".join(str(getattr(exc, "message", "")).split())[:300]
        return f"HTTP {exc.status_code} {code}: {message}{request_id}"
    if isinstance(exc, openai.APIConnectionError):
        return f"{type(exc).__name__}: cannot reach the server"
    return type(exc).__name__


def call_with_retries(request: Callable[[], T], policy: RetryPolicy, *, what: str) -> T:
    """Run ``request`` under the shared policy; ``what`` (e.g. "embeddings text-embedding-3-small") names it."""

    def log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        _log.warning(
            "OpenAI %s attempt %d failed (%s); retrying in %.2fs",
            what,
            state.attempt_number,
            describe_failure(exc) if exc else "?",
            wait,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_transient),
        wait=_WaitRetryAfterOrBackoff(policy),
        stop=tenacity.stop_after_attempt(policy.max_retries + 1),
        before_sleep=log_retry,
        reraise=True,
    )
    try:
        return retrying(request)
    except (openai.APIStatusError, openai.APIConnectionError) as exc:
        attempts = retrying.statistics.get("attempt_number", 1)
        gave_up = f" after {attempts} attempts" if _is_transient(exc) else ""
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
        # ``from None``: the original exception's message may echo a masked key (401) and must not be logged.
        message = f"OpenAI {what} failed{gave_up}: {describe_failure(exc)}"
        raise OpenAIRequestError(message, status_code=status) from None
