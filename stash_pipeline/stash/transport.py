"""Transport: one Stash server over HTTP, exactly right (docs/stash-behaviour.md §1).

- **One keep-alive connection** (``httpx.Client``): a full sync is thousands of requests.
- **Auth**: the ``ApiKey`` header is sent only when a key is set (Stash answers 401 to *any* key when
  it has none configured).  The key is never put in the URL, a log line, a repr or an exception.
- **Retries** (tenacity, exponential backoff with jitter, honouring ``Retry-After``) on what is
  transient: connect errors, timeouts, dropped connections, HTTP 429/5xx, malformed JSON in a 200, and
  GraphQL errors saying "database is locked" (SQLite busy).  Never on 401 (``StashAuthError`` at
  once), other 4xx or other GraphQL errors (``StashGraphQLError`` at once): retrying cannot fix them.
- **The server's clock**: every answer's HTTP ``Date`` header (UTC, whatever zone the server runs in)
  is kept as ``server_time``: an incremental run bounds its stamp check with it
  (docs/architecture.md §6).
- **Answer checks**: ``_result``, ``_items``, ``_id`` and ``_int`` turn a malformed answer into a
  ``StashProtocolError`` naming what was wrong.
"""

import functools
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Self, TypeVar

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential_jitter

from stash_pipeline.model import EntitySpec
from stash_pipeline.settings import Settings
from stash_pipeline.stash import queries
from stash_pipeline.stash.errors import (
    StashAuthError,
    StashError,
    StashGraphQLError,
    StashNotFoundError,
    StashProtocolError,
    StashUnavailableError,
)

logger = logging.getLogger("stash_pipeline.stash")

JSON = dict[str, Any]
# A page's entities: decoded into Arrow when every value has its declared type, else JSON objects.
Items = list[JSON] | pa.StructArray

T = TypeVar("T")

_NOT_FOUND_RE = re.compile(r"([A-Za-z_][A-Za-z_ ]*?) with id (\d+) not found")

_DB_LOCKED = "database is locked"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: httpx builds (and loads the CA bundle into) a new one for every
    client, 20 ms each, and a run opens a client per step and per live check."""
    return httpx.create_ssl_context()


class _Transient(Exception):
    """Internal: a failure worth retrying.  ``final`` is the error raised once retries run out."""

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        final: type[StashError] = StashUnavailableError,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.final = final


class _Backoff(wait_base):
    """Exponential backoff with jitter, but never shorter than a server's ``Retry-After`` (capped)."""

    def __init__(self, initial: float, maximum: float, jitter: float) -> None:
        self.maximum = maximum
        self._exp = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self._exp(retry_state)
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after:
            wait = max(wait, min(exc.retry_after, self.maximum))
        return wait


class _StopAfterWaiting(stop_base):
    """Stop once ``seconds`` were waited: the backoff sleeps (``idle_for``, right with a test's
    recording sleep too) or the wall time since the first attempt (timeouts), the longer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, retry_state: RetryCallState) -> bool:
        waited = max(retry_state.idle_for, retry_state.seconds_since_start or 0.0)
        return waited >= self.seconds


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, body read (see ``StashClient._send``)."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def server_time(self) -> datetime | None:
        """The server's clock when it answered (the ``Date`` header, whole seconds, UTC), or
        ``None`` when absent or unreadable."""
        value = self.headers.get("date")
        if not value:
            return None
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _retry_after(response: Reply) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: not worth parsing, the backoff applies
        return None


def _json_default(value: Any) -> Any:
    """Variables may hold any Mapping or a set/tuple; orjson only knows dicts and lists."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} as a GraphQL variable")


def _payload(document: str, variables: Mapping[str, Any] | None, op: str | None) -> bytes:
    payload: JSON = {"query": document}
    if variables:
        payload["variables"] = variables
    if op:
        payload["operationName"] = op
    return orjson.dumps(payload, default=_json_default)


class Transport:
    """HTTP, auth, retries and answer checks for one Stash server.

    Transient failures (refused connections, timeouts, 5xx, 429, a locked database) are retried
    for ``retry_seconds`` from the first attempt: a Stash restarting for a minute or two is waited
    for, with a log line per retry, then the request fails with a message saying for how long it
    tried.  ``retries``, when given, also caps the number of *re*-tries (``retries=5``: at most 6
    requests).  Backoff: ``backoff_initial * 2**n`` plus up to ``backoff_jitter`` seconds of
    jitter, capped at ``backoff_max``; ``sleep`` is the function that waits (tests pass a recorder).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = Settings.timeout,
        retries: int | None = Settings.retries,
        page_size: int = Settings.page_size,
        *,
        retry_seconds: float = Settings.retry_seconds,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        backoff_jitter: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        ids_chunk_size: int = 1000,
    ) -> None:
        base = url.strip().rstrip("/")
        if base.endswith("/graphql"):
            base = base[: -len("/graphql")]
        if "apikey=" in base.lower():
            # Refuse rather than echo: httpx errors include the URL.
            raise ValueError("the Stash URL must not carry the API key; pass api_key instead")
        if page_size < 1 or ids_chunk_size < 1:
            raise ValueError("page_size and ids_chunk_size must be >= 1")
        if retries is not None and retries < 0:
            raise ValueError("retries must be >= 0")
        if retry_seconds < 0:
            raise ValueError("retry_seconds must be >= 0")
        self.url = base
        self.graphql_url = f"{base}/graphql"
        self.timeout = timeout
        self.retries = retries
        self.retry_seconds = retry_seconds
        self.page_size = page_size
        self.ids_chunk_size = ids_chunk_size
        self._api_key = api_key or None
        # Per-request headers (not client defaults) so no header dump of the client shows the key.
        self._post_headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            self._post_headers["ApiKey"] = self._api_key
        self._sleep = sleep
        self._wait = _Backoff(
            backoff_initial, backoff_max, backoff_initial if backoff_jitter is None else backoff_jitter
        )
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False, verify=_tls_context()
        )
        self.requests_sent = 0  # HTTP requests attempted (retries included): run metadata, tests
        self.server_time: datetime | None = None  # the Date of the latest answer
        self._count_lock = threading.Lock()
        self._early: ThreadPoolExecutor | None = None  # sends the next keyset page early

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._early is not None:
            self._early.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return f"StashClient(url={self.url!r}, api_key={key})"

    # ------------------------------------------------------------------ transport
    def _redact(self, text: str) -> str:
        """Remove the key from text we did not write (server messages, transport errors)."""
        if self._api_key and self._api_key in text:
            return text.replace(self._api_key, "***")
        return text

    def _auth_error(self) -> StashAuthError:
        if self._api_key:
            return StashAuthError(
                f"Stash at {self.url} rejected the API key (HTTP 401). Check STASH_API_KEY; if the "
                "server has no API key configured, unset STASH_API_KEY (Stash refuses any key it "
                "does not expect)."
            )
        return StashAuthError(
            f"Stash at {self.url} requires an API key (HTTP 401) and none is set: set STASH_API_KEY."
        )

    def _send(self, method: str, url: str, content: bytes | None, headers: Mapping[str, str]) -> "Reply":
        """One HTTP exchange; transport failures become ``_Transient``.

        The body is read from the stream into a plain ``Reply``: an ``httpx.Response`` and its
        stream reference each other, so a response that cached its body kept the body (a whole
        page) alive until the cyclic garbage collector ran, and during a sync it runs rarely
        (``mirror.gc_pauses``): memory grew by one page per page read.
        """
        with self._count_lock:
            self.requests_sent += 1
        try:
            with self._http.stream(method, url, content=content, headers=headers) as response:
                body = b"".join(response.iter_bytes())
                reply = Reply(response.status_code, response.headers, body)
                self.server_time = reply.server_time or self.server_time
                return reply
        except httpx.TimeoutException as exc:
            raise _Transient(f"timeout after {self.timeout}s ({type(exc).__name__})") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Transient(f"connection error ({type(exc).__name__}: {self._redact(str(exc))})") from exc

    def _with_retries(self, attempt: Callable[[], T], what: str) -> T:
        stop: stop_base = _StopAfterWaiting(self.retry_seconds)
        if self.retries is not None:
            stop = stop | stop_after_attempt(self.retries + 1)
        started = time.monotonic()
        retryer = Retrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(state, what),
            reraise=True,
        )
        try:
            return retryer(attempt)
        except _Transient as exc:
            attempts = retryer.statistics.get("attempt_number", 1)
            elapsed = time.monotonic() - started
            message = (
                f"Stash {what} failed after {attempts} attempt(s) in {elapsed:.0f} s at {self.url}: "
                f"{exc.reason}"
            )
            if attempts > 1:
                message += (
                    f" (a failing Stash is waited for up to {self.retry_seconds:.0f} s: STASH_RETRY_SECONDS)"
                )
            if exc.final is StashUnavailableError:
                raise StashUnavailableError(message, attempts=attempts, reason=exc.reason) from exc
            raise exc.final(message) from exc

    def _log_retry(self, state: RetryCallState, what: str) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        reason = exc.reason if isinstance(exc, _Transient) else repr(exc)
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "Stash %s failed (%s); waiting for it: retry %d in %.1f s (%.0f of up to %.0f s waited)",
            what,
            reason,
            state.attempt_number,
            wait,
            state.seconds_since_start or 0.0,
            self.retry_seconds,
        )

    def _post(self, payload: bytes) -> Reply:
        return self._send("POST", self.graphql_url, payload, self._post_headers)

    def _graphql_attempt(self, payload: bytes, op: str | None) -> JSON:
        return self._answer(self._post(payload), op)

    def _answer(
        self, response: Reply, op: str | None, decode: Callable[[bytes], T | None] | None = None
    ) -> JSON | T:
        """The answer's ``data`` object, or what ``decode`` makes of a 200's body when it takes it
        (``None``: the body is parsed as JSON and checked as usual)."""
        status = response.status_code
        if status == 401:
            raise self._auth_error()
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}", retry_after=_retry_after(response))
        if decode is not None and status == 200:
            decoded = decode(response.content)
            if decoded is not None:
                return decoded
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            if status == 200:
                raise _Transient("malformed JSON in a 200 response", final=StashProtocolError) from None
            snippet = self._redact(response.text[:200])
            raise StashProtocolError(
                f"HTTP {status} from {self.graphql_url} ({op or 'query'}): {snippet!r}; "
                "is STASH_URL the base URL of a Stash server?"
            ) from None
        if not isinstance(body, dict):
            raise StashProtocolError(f"{op or 'query'}: the response is JSON but not an object")
        errors = body.get("errors")
        if errors:
            self._raise_graphql_errors(errors, op)
        if status != 200:
            raise StashProtocolError(f"unexpected HTTP {status} from {self.graphql_url} ({op or 'query'})")
        data = body.get("data")
        if not isinstance(data, dict):
            raise StashProtocolError(f"{op or 'query'}: the response has no data object")
        return data

    def _raise_graphql_errors(self, errors: Any, op: str | None) -> None:
        items = errors if isinstance(errors, list) else [errors]
        messages = [self._redact(str(e.get("message", e)) if isinstance(e, dict) else str(e)) for e in items]
        if any(_DB_LOCKED in m.lower() for m in messages):
            raise _Transient(f"GraphQL error: {_DB_LOCKED}")
        for message in messages:
            match = _NOT_FOUND_RE.search(message)
            if match:
                raise StashNotFoundError(match.group(1).strip(), int(match.group(2)), messages, op)
        raise StashGraphQLError(messages, op)

    # ------------------------------------------------------------------ basic calls
    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
    ) -> JSON:
        """Send one GraphQL document (with retries) and return its ``data`` object."""
        op = operation_name or queries.operation_name(document)
        body = _payload(document, variables, op)
        return self._with_retries(lambda: self._graphql_attempt(body, op), op or "query")

    def healthz(self) -> None:
        """``GET /healthz`` (no auth needed): is anything listening, and is it Stash-shaped?"""

        def attempt() -> None:
            response = self._send("GET", f"{self.url}/healthz", None, {})
            if response.status_code == 429 or response.status_code >= 500:
                raise _Transient(f"HTTP {response.status_code}", retry_after=_retry_after(response))
            if response.status_code != 200:
                raise StashProtocolError(
                    f"GET {self.url}/healthz answered HTTP {response.status_code}; "
                    "is STASH_URL the base URL of a Stash server (v0.27 or later)?"
                )

        self._with_retries(attempt, "healthz")

    # ------------------------------------------------------------------ answer parsing
    @staticmethod
    def _int(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise StashProtocolError(f"{what}: expected an integer, got {type(value).__name__}")
        return value

    @staticmethod
    def _result(data: JSON, key: str, op: str) -> JSON:
        result = data.get(key)
        if not isinstance(result, dict):
            raise StashProtocolError(f"{op}: the answer has no {key} object")
        return result

    @staticmethod
    def _items(result: JSON, spec: EntitySpec, op: str) -> list[JSON]:
        items = result.get(spec.result_key)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise StashProtocolError(f"{op}: {spec.result_key} is not a list of objects")
        return items

    @staticmethod
    def _id(item: JSON, op: str) -> int:
        try:
            return int(item["id"])
        except (KeyError, TypeError, ValueError):
            raise StashProtocolError(f"{op}: an item has no integer id ({item.get('id')!r})") from None

    @classmethod
    def _ids_of(cls, items: Items, op: str) -> list[int]:
        if isinstance(items, pa.StructArray):
            try:  # Arrow's own cast: a page of 50,000 ids costs one call, not 50,000
                return pc.cast(items.field("id"), pa.int64()).to_pylist()
            except pa.ArrowInvalid:
                return [cls._id({"id": value}, op) for value in items.field("id").to_pylist()]
        return [cls._id(item, op) for item in items]
