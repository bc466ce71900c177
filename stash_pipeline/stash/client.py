"""``StashClient``: talks to Stash's GraphQL API exactly right (STASH_API.md; DESIGN §2).

What it guarantees, and why:
- **One keep-alive connection** (``httpx.Client``): a full sync is thousands of requests.
- **Auth**: the ``ApiKey`` header is sent only when a key is set (Stash answers 401 to *any* key when
  it has none configured).  The key is never put in the URL, a log line, a repr or an exception.
- **Retries** (tenacity, exponential backoff with jitter, honouring ``Retry-After``) on what is
  transient: connect errors, timeouts, dropped connections, HTTP 429/5xx, malformed JSON in a 200, and
  GraphQL errors saying "database is locked" (SQLite busy).  Never on 401 (``StashAuthError`` at
  once), other 4xx or other GraphQL errors (``StashGraphQLError`` at once): retrying cannot fix them.
- **Paging that cannot silently lose rows**: every query sorts by id and sets ``per_page``; scenes,
  images and galleries are keyset-paged (``id > last``), the other four offset-paged and verified by an
  id sweep; anything that cannot be verified raises ``StashConsistencyError`` (see ``iter_pages`` and
  ``sweep_ids`` for the exact rules).
"""

import logging
import re
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from typing import Any, TypeVar

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from stash_pipeline.model import EntitySpec, Relation, spec_for
from stash_pipeline.settings import Settings
from stash_pipeline.stash import queries
from stash_pipeline.stash.arrow_pages import decode_page, last_entity_id
from stash_pipeline.stash.errors import (
    StashAuthError,
    StashConsistencyError,
    StashError,
    StashGraphQLError,
    StashNotFoundError,
    StashNotReadyError,
    StashProtocolError,
    StashUnavailableError,
)

logger = logging.getLogger("stash_pipeline.stash")

JSON = dict[str, Any]
Filter = Mapping[str, Any] | None
# A page's entities: decoded into Arrow when every value has its declared type, else JSON objects.
Items = list[JSON] | pa.StructArray
T = TypeVar("T")

_NOT_FOUND_RE = re.compile(r"([A-Za-z_][A-Za-z_ ]*?) with id (\d+) not found")
_DB_LOCKED = "database is locked"


@dataclass(frozen=True)
class Page:
    """One page of raw entities, as Stash sent them (ids are strings).

    ``rows`` holds them as decoded: an Arrow struct array with every field of its declared type
    (``arrow_pages``), or JSON objects when Arrow refused the answer (a value off its type: the
    shaper's row-by-row path deals with it).  ``items`` gives JSON objects either way.
    ``count`` is the server's total for the filter when this page's request selected it (the first
    page of a keyset read, every page of an offset read), else ``None``.
    """

    rows: Items
    number: int
    count: int | None = None

    @property
    def arrow(self) -> pa.StructArray | None:
        return self.rows if isinstance(self.rows, pa.StructArray) else None

    @cached_property
    def items(self) -> list[JSON]:
        return self.rows.to_pylist() if isinstance(self.rows, pa.StructArray) else self.rows

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class StashHealth:
    """What ``health()`` learned: record it per run (version drift explains odd data)."""

    version: str | None
    hash: str
    build_time: str
    status: str
    database_schema: int | None
    app_schema: int


class ReadStopped(Exception):
    """The consumer of a paged read asked it to stop (``keep_going`` answered no): no request is
    sent after that."""


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


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, body read (see ``StashClient._send``)."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


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


def _and_id(filter: Filter, modifier: str, value: int) -> dict[str, Any]:
    """The caller's filter AND an ``id`` criterion (criteria on one level are ANDed; if the filter
    already has its own ``id`` criterion, nest it under ``AND`` instead of overwriting it)."""
    criterion = {"modifier": modifier, "value": value}
    if not filter:
        return {"id": criterion}
    if "id" not in filter:
        return {**filter, "id": criterion}
    return {"id": criterion, "AND": dict(filter)}


def _keep(items: Items, keep: list[bool]) -> Items:
    """The items whose flag is set."""
    if isinstance(items, pa.StructArray):
        return items.filter(pa.array(keep))
    return [item for item, flag in zip(items, keep, strict=True) if flag]


def _drop(ahead: "tuple[int, Future[Reply]] | None") -> None:
    """Forget a request sent early: not sent yet, it never will be; in flight, it is let finish
    (so requests stay one at a time) and its reply or error ignored."""
    if ahead is not None and not ahead[1].cancel():
        ahead[1].exception()


def _accept_ids(ids: list[int], last: int, read: array, ids_only: bool, op: str) -> tuple[int, int]:
    """Check one keyset page's ids and append them to ``read``; return (its last id, its unique ids).

    They must be strictly ascending after ``last``.  The same row twice in one answer (a bad JOIN)
    makes a sweep untrustworthy, but a page of entities is kept: the shaper keeps one copy
    (DESIGN §2 rules 5 and 7).
    """
    if ids and ids[0] > last and all(a < b for a, b in pairwise(ids)):
        read.extend(ids)  # the usual page: one pass, no set
        return ids[-1], len(ids)
    previous = last
    seen: set[int] = set()
    for entity_id in ids:  # otherwise id by id, to say exactly what is wrong
        if entity_id in seen:
            if ids_only:
                raise StashConsistencyError(
                    f"{op}: id {entity_id} appears twice in one answer; refusing to trust the sweep"
                )
            logger.warning("%s: id %d appears twice in one page; keeping one copy", op, entity_id)
            continue
        if entity_id <= previous:
            raise StashConsistencyError(
                f"{op}: ids not strictly ascending after id {last} ({entity_id} after "
                f"{previous}): the server ignored the id criterion or the sort"
            )
        previous = entity_id
        seen.add(entity_id)
        read.append(entity_id)
    return previous, len(seen)


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class StashClient:
    """A synchronous client for one Stash server.  Use as a context manager, or call ``close()``.

    ``retries`` is the number of *re*-tries after the first attempt (so ``retries=5`` means at most
    6 requests).  Backoff: ``backoff_initial * 2**n`` plus up to ``backoff_jitter`` seconds of jitter,
    capped at ``backoff_max``; ``sleep`` is the function that waits (tests pass a recorder).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        page_size: int = 1000,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
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
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = base
        self.graphql_url = f"{base}/graphql"
        self.timeout = timeout
        self.retries = retries
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
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)
        self.requests_sent = 0  # HTTP requests attempted (retries included): run metadata, tests
        self._count_lock = threading.Lock()
        self._early: ThreadPoolExecutor | None = None  # sends the next keyset page early

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "StashClient":
        """Build a client from ``stash_pipeline.settings.Settings`` (keyword overrides win)."""
        kwargs: dict[str, Any] = {
            "url": settings.stash_url,
            "api_key": settings.api_key,
            "timeout": settings.timeout,
            "retries": settings.retries,
            "page_size": settings.page_size,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._early is not None:
            self._early.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> "StashClient":
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
                return Reply(response.status_code, response.headers, body)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timeout after {self.timeout}s ({type(exc).__name__})") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Transient(f"connection error ({type(exc).__name__}: {self._redact(str(exc))})") from exc

    def _with_retries(self, attempt: Callable[[], T], what: str) -> T:
        retryer = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(state, what),
            reraise=True,
        )
        try:
            return retryer(attempt)
        except _Transient as exc:
            attempts = self.retries + 1
            message = f"Stash {what} failed after {attempts} attempt(s) at {self.url}: {exc.reason}"
            if exc.final is StashUnavailableError:
                raise StashUnavailableError(message, attempts=attempts, reason=exc.reason) from exc
            raise exc.final(message) from exc

    def _log_retry(self, state: RetryCallState, what: str) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        reason = exc.reason if isinstance(exc, _Transient) else repr(exc)
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "Stash %s failed (%s); retry %d of %d in %.2fs",
            what,
            reason,
            state.attempt_number,
            self.retries,
            wait,
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

    def _read_page(
        self,
        spec: EntitySpec,
        document: str,
        variables: JSON,
        *,
        ids_only: bool = False,
        sent: "Future[Reply] | None" = None,
        on_reply: Callable[[Reply], None] | None = None,
        keep_going: Callable[[], bool] | None = None,
    ) -> tuple[Items, Any]:
        """One page of entities (full, or ids only) and its answer's ``count`` (``None`` if not
        selected).

        The answer is decoded straight into Arrow when every value has its declared type, else
        parsed as JSON objects (see ``arrow_pages``); both checked as every answer is.  ``sent``:
        this very request, already sent early (``_send_early``); its reply is the first attempt.
        ``on_reply`` sees each reply before it is decoded.  ``keep_going``: asked before sending."""
        op = queries.operation_name(document)
        body = _payload(document, variables, op)

        def attempt() -> Any:
            nonlocal sent
            if sent is not None:
                early, sent = sent, None
                reply = early.result()  # a transport error raised here is retried as usual
            else:
                if keep_going is not None and not keep_going():
                    raise ReadStopped(f"{op}: stopped by its consumer")
                reply = self._post(body)
            if on_reply is not None:
                on_reply(reply)
            return self._answer(reply, op, lambda content: decode_page(content, spec, ids_only))

        answer = self._with_retries(attempt, op or "query")
        if isinstance(answer, tuple):
            count, rows = answer
            return rows, count
        result = self._result(answer, spec.query, document)
        return self._items(result, spec, document), result.get("count")

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

    def health(self) -> StashHealth:
        """``/healthz``, then ``version`` and ``systemStatus``; raises ``StashNotReadyError`` unless
        the status is OK (e.g. NEEDS_MIGRATION: reading a half-migrated database is pointless)."""
        self.healthz()
        data = self.execute(queries.HEALTH)
        try:
            version = data["version"]
            system = data["systemStatus"]
            health = StashHealth(
                version=version.get("version"),
                hash=version["hash"],
                build_time=version["build_time"],
                status=system["status"],
                database_schema=system.get("databaseSchema"),
                app_schema=system["appSchema"],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise StashProtocolError(f"Health: unexpected answer shape ({exc!r})") from None
        if health.status != "OK":
            hint = {
                "NEEDS_MIGRATION": (
                    f"its database schema {health.database_schema} is older than the app schema "
                    f"{health.app_schema}; run the migration in the Stash UI"
                ),
                "SETUP": "it has not been set up yet; finish the setup in the Stash UI",
            }.get(health.status, "it is not ready")
            raise StashNotReadyError(
                f"Stash at {self.url} reports systemStatus {health.status}: {hint}.", health.status
            )
        return health

    def stats(self) -> dict[str, int]:
        """Global counts of the seven types from ``stats`` (keyed by plural type name)."""
        data = self.execute(queries.STATS)
        stats = data.get("stats")
        if not isinstance(stats, dict):
            raise StashProtocolError("Stats: the answer has no stats object")
        return {name: self._int(stats.get(key), f"stats.{key}") for name, key in queries.STATS_KEYS.items()}

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

    # ------------------------------------------------------------------ counts
    def count(self, spec: EntitySpec, filter: Filter = None) -> int:
        """Number of entities matching ``filter`` (``per_page: 0``: no rows transferred)."""
        document = queries.count_query(spec)
        data = self.execute(document, {"filter": filter})
        return self._int(self._result(data, spec.query, document).get("count"), f"{spec.query}.count")

    def count_many(self, filters: Mapping[str, Filter]) -> dict[str, int]:
        """Counts of several types in ONE request (one read transaction), keyed by plural name.

        ``filters`` maps a type name (plural or singular) to a filter or ``None``.  The answer has,
        per type, ``<name>``: the count matching its filter (the total when the filter is ``None``)
        and ``<name>_total``: the unfiltered total.
        """
        normalized: dict[str, Filter] = {spec_for(name).name: f for name, f in filters.items()}
        if not normalized:
            return {}
        filtered = [name for name, f in normalized.items() if f is not None]
        document = queries.count_many_query(filtered, list(normalized))
        variables = {queries.count_variable(name): normalized[name] for name in filtered}
        data = self.execute(document, variables)
        out: dict[str, int] = {}
        for name in normalized:
            changed_alias, total_alias = queries.count_aliases(name)
            total = self._int(self._result(data, total_alias, "CountMany").get("count"), total_alias)
            out[name] = (
                self._int(self._result(data, changed_alias, "CountMany").get("count"), changed_alias)
                if name in filtered
                else total
            )
            out[f"{name}_total"] = total
        return out

    def count_probes(self, probes: Mapping[str, tuple[str, Filter]]) -> dict[str, int]:
        """Counts for ``{alias: (type name, filter or None)}`` in ONE request, keyed by alias."""
        if not probes:
            return {}
        entries = tuple((alias, spec_for(name).name, f is not None) for alias, (name, f) in probes.items())
        document = queries.count_probes_query(entries)
        variables = {alias: f for alias, (_name, f) in probes.items() if f is not None}
        data = self.execute(document, variables)
        return {
            alias: self._int(self._result(data, alias, "CountProbes").get("count"), alias) for alias in probes
        }

    def latest_updated_at(self, spec: EntitySpec, filter: Filter = None) -> str | None:
        """The newest ``updated_at`` string of the rows of a type matching ``filter``, verbatim
        (``None`` when none match).

        Noted before a long paged read, it bounds a catch-up pass for rows edited behind the read.
        """
        document = queries.latest_updated_at_query(spec)
        data = self.execute(document, {"filter": dict(filter) if filter else None})
        items = self._items(self._result(data, spec.query, document), spec, document)
        if not items:
            return None
        value = items[0].get("updated_at")
        if not isinstance(value, str):
            raise StashProtocolError(f"{document.split('{')[0].strip()}: updated_at is not a string")
        return value

    def _send_early(self, document: str, variables: JSON) -> "Future[Reply]":
        """Send a request on a worker thread; its reply is collected by ``_read_page(sent=...)``."""
        if self._early is None:
            self._early = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stash-early")
        return self._early.submit(self._post, _payload(document, variables, queries.operation_name(document)))

    def _tail_probe(self, spec: EntitySpec, filter: Filter, last_id: int) -> tuple[int, int]:
        """(rows matching ``filter``, those of them with id > ``last_id``), one read transaction."""
        document = queries.tail_probe_query(spec)
        data = self.execute(document, {"filter": filter, "tail": _and_id(filter, "GREATER_THAN", last_id)})
        total = self._int(self._result(data, "total", document).get("count"), "total.count")
        tail = self._int(self._result(data, "tail", document).get("count"), "tail.count")
        return total, tail

    # ------------------------------------------------------------------ paged reads
    def iter_pages(
        self,
        spec: EntitySpec,
        filter: Filter = None,
        page_size: int | None = None,
        after_id: int | None = None,
        keep_going: Callable[[], bool] | None = None,
    ) -> Iterator[Page]:
        """Every entity matching ``filter``, in pages of ``page_size``, each entity exactly once.

        Keyset types (scenes, images, galleries): ``id > last`` ANDed into the filter, page 1, sorted
        by id; only the first page selects ``count``.  A short page is checked to really be the end
        (see ``_keyset_read``).  Rows created during the read appear (higher ids); rows deleted
        before they were reached do not; nothing present throughout is skipped.

        Offset types (performers, studios, tags, groups: Stash offers no id criterion): pages 1..n
        sorted by id.  One page is one read transaction, so a single page with ``len == count`` is a
        consistent snapshot.  With more pages, a delete between two requests shifts later rows
        back and one would be skipped; so at the end one id-only request (same filter, all rows)
        lists what exists now, and ids not yet yielded are fetched with ``ids:`` and yielded in a
        final page.  If that sweep is itself inconsistent, ``StashConsistencyError``.

        An empty first page while its count is > 0 raises ``StashConsistencyError`` either way.

        ``after_id`` (keyset types only) resumes an interrupted read: only ids above it are read,
        and the first page's count covers only those.  ``keep_going`` is asked before every page
        request; once it answers no, ``ReadStopped`` is raised instead of sending one.
        """
        size = page_size or self.page_size
        if size < 1:
            raise ValueError("page_size must be >= 1")
        if after_id is not None and not spec.keyset:
            raise ValueError(f"{spec.name} has no id criterion in Stash: a read cannot resume after an id")
        if spec.keyset:
            pages = self._keyset_read(
                spec,
                filter,
                size,
                ids_only=False,
                recover=True,
                after_id=after_id or 0,
                keep_going=keep_going,
            )
            for number, (items, count) in enumerate(pages, start=1):
                yield Page(items, number, count)
        else:
            yield from self._offset_pages(spec, filter, size, keep_going)

    def _keyset_read(
        self,
        spec: EntitySpec,
        filter: Filter,
        size: int,
        *,
        ids_only: bool,
        recover: bool,
        after_id: int = 0,
        keep_going: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[Items, int | None]]:
        """Keyset paging with a verified end.  Yields (items, count of the first page or None).

        The rule, for reads spanning more than one page (a single page whose length equals the count
        from the same request is exact):
        1. After a short page, one request counts, in one read transaction, the rows matching the
           filter (``total``) and those with ``id > last`` (``tail``).
        2. ``tail > 0``: the short page was not the end (rows created since, or a truncated answer):
           keep paging from ``last``.  An empty page right after a positive tail, twice in a row,
           means the server will not hand those rows over: ``StashConsistencyError``.
        3. ``tail == 0``: rows with id <= last that match now number ``total``.  Every row present
           throughout was read, so ``total`` <= rows read unless rows were skipped, or rows came to
           match the filter during the read (an ``updated_at`` window).  Either way the remedy is the
           same: one consistent request lists the ids <= last that match now; the unread ones are
           fetched (``recover``) or added (sweeps).  If that request is inconsistent itself:
           ``StashConsistencyError``.
        Deletes during the read can hide a skip in step 3 (a row read and then deleted offsets a
        row skipped); that needs a skip *and* a delete in the same read, and the next sweep sees it.
        """
        op = f"{spec.name} keyset read"
        # What this read covers: the filter, above ``after_id`` when resuming.
        scope = _and_id(filter, "GREATER_THAN", after_id) if after_id else filter
        first_doc = (queries.ids_query if ids_only else queries.page_query)(spec, True)
        next_doc = (queries.ids_query if ids_only else queries.page_query)(spec, False)
        read = array("q")  # ids read, ascending by construction (8 bytes each)
        last = after_id
        first = True
        empty_streak = 0
        total_count: int | None = None
        # The next page's request, sent while this one is decoded: (its ``after`` id, its reply).
        ahead: tuple[int, Future[Reply]] | None = None

        def send_next(reply: Reply) -> None:
            """While the page just received is decoded, ask for the one after it, when there is
            surely one (more rows left than a page holds).  Its ``after`` id is read off the raw
            answer; the decoded page must end with that very id for the reply to be used."""
            nonlocal ahead
            if ahead is not None or reply.status_code != 200 or total_count is None:
                return
            if keep_going is not None and not keep_going():
                return
            if total_count - len(read) <= size:
                return
            guess = last_entity_id(reply.content)
            if guess is not None:
                variables = {"filter": _and_id(filter, "GREATER_THAN", guess), "page": 1, "per_page": size}
                ahead = (guess, self._send_early(next_doc, variables))

        try:
            while True:
                document = first_doc if first else next_doc
                variables = {"filter": _and_id(filter, "GREATER_THAN", last), "page": 1, "per_page": size}
                sent = None
                if ahead is not None:
                    after, early = ahead
                    ahead = None
                    if after == last and not first:
                        sent = early
                    else:
                        _drop((after, early))
                items, raw_count = self._read_page(
                    spec,
                    document,
                    variables,
                    ids_only=ids_only,
                    sent=sent,
                    on_reply=None if ids_only else send_next,
                    keep_going=keep_going,
                )
                count = self._int(raw_count, f"{spec.query}.count") if first else None
                if first:
                    total_count = count
                if first and not len(items) and count:
                    raise StashConsistencyError(
                        f"{op}: the first page is empty but Stash reports {count} matching rows"
                    )
                previous, unique = _accept_ids(self._ids_of(items, document), last, read, ids_only, op)
                if len(items):
                    empty_streak = 0
                    yield items, count
                    last = previous
                else:
                    empty_streak += 1
                if first and unique == count:
                    return  # one request, one read transaction: everything, exactly
                first = False
                if len(items) >= size:
                    continue
                ahead = _drop(ahead)  # a short page after all: what comes next is decided anew
                total, tail = self._tail_probe(spec, scope, last)
                if tail > 0:
                    if empty_streak >= 2:
                        raise StashConsistencyError(
                            f"{op}: Stash reports {tail} rows with id > {last} but returns none of them"
                        )
                    logger.info("%s: %d more rows after id %d; continuing", op, tail, last)
                    continue
                if total > len(read):
                    logger.warning(
                        "%s: %d rows with id <= %d match now but %d were read; re-listing them",
                        op,
                        total,
                        last,
                        len(read),
                    )
                    extra = self._unread_ids(spec, scope, last, read)
                    if extra:
                        if recover:
                            entities, _missing = self.fetch_by_ids(spec, extra)
                            if entities:
                                yield entities, None
                        else:
                            yield [{"id": str(i)} for i in extra], None
                return
        finally:
            _drop(ahead)

    def _unread_ids(self, spec: EntitySpec, filter: Filter, last: int, read: array) -> list[int]:
        """Ids <= ``last`` matching ``filter`` now that are not in ``read`` (sorted ascending)."""
        ids = self._snapshot_ids(spec, _and_id(filter, "LESS_THAN", last + 1))
        return [i for i in ids if not _contains(read, i)]

    def _snapshot_ids(self, spec: EntitySpec, filter: Filter) -> list[int]:
        """All matching ids in ONE request (``per_page: -1``: one read transaction), verified:
        unique and as many as the count from the same answer, else ``StashConsistencyError``."""
        document = queries.ids_query(spec, True)
        data = self.execute(document, {"filter": filter, "page": 1, "per_page": -1})
        result = self._result(data, spec.query, document)
        count = self._int(result.get("count"), f"{spec.query}.count")
        ids = [self._id(item, document) for item in self._items(result, spec, document)]
        unique = set(ids)
        if len(unique) != len(ids) or len(unique) != count:
            raise StashConsistencyError(
                f"{spec.name} id sweep: {len(ids)} ids ({len(unique)} unique) but Stash reports "
                f"count {count} in the same answer; refusing to trust it"
            )
        return sorted(unique)

    def _offset_pages(
        self, spec: EntitySpec, filter: Filter, size: int, keep_going: Callable[[], bool] | None = None
    ) -> Iterator[Page]:
        op = f"{spec.name} offset read"
        document = queries.page_query(spec, True)
        seen: set[int] = set()
        number = 0
        page = 1
        while True:
            items, raw_count = self._read_page(
                spec, document, {"filter": filter, "page": page, "per_page": size}, keep_going=keep_going
            )
            count = self._int(raw_count, f"{spec.query}.count")
            if page == 1 and not len(items) and count:
                raise StashConsistencyError(
                    f"{op}: the first page is empty but Stash reports {count} matching rows"
                )
            keep: list[bool] = []
            for entity_id in self._ids_of(items, document):
                keep.append(entity_id not in seen)
                seen.add(entity_id)
            fresh = items if all(keep) else _keep(items, keep)
            if len(fresh):
                number += 1
                yield Page(fresh, number, count)
            if page == 1 and len(items) == count and len(seen) == count:
                return  # a single request: a consistent snapshot
            if len(items) < size or page * size >= count:
                break
            page += 1
        # More than one page (or an inconsistent single page): verify against one id sweep.
        missing = [i for i in self._snapshot_ids(spec, filter) if i not in seen]
        if missing:
            logger.warning(
                "%s: %d rows were not on any page (shifted by deletes?); fetching", op, len(missing)
            )
            entities, _gone = self.fetch_by_ids(spec, missing)
            if entities:
                yield Page(entities, number + 1, None)

    def sweep_ids(self, spec: EntitySpec, filter: Filter = None, page_size: int = 50000) -> list[int]:
        """All ids matching ``filter``, sorted ascending, verified (the basis of delete detection).

        Offset types: one ``per_page: -1`` request (one read transaction); unique ids must equal the
        count in the same answer.  Keyset types: keyset pages of ``page_size`` ids with the verified
        end of ``_keyset_read`` (a single page must match its own count; a multi-page sweep must
        reach a point where no row beyond the last id exists and every row <= the last id that
        exists now was read or is re-listed).  A short or unverifiable sweep raises
        ``StashConsistencyError``: callers must never mass-delete on it.
        """
        ids: list[int] = []
        for page in self.iter_id_pages(spec, filter, page_size):
            ids.extend(page)
        unique = sorted(set(ids))
        if len(unique) != len(ids):
            raise StashConsistencyError(f"{spec.name} id sweep returned duplicate ids")
        return unique

    def iter_id_pages(
        self, spec: EntitySpec, filter: Filter = None, page_size: int = 50000
    ) -> Iterator[list[int]]:
        """The verified sweep of ``sweep_ids``, one page of ids at a time (memory: one page).

        Each page is strictly ascending and above every id of the pages before it, except a final
        re-listed page (ids below the last one that were not on any page: see ``_keyset_read``).
        Offset types: one page, sorted.  The sweep is verified only once the iterator is exhausted:
        callers must not delete anything before that.
        """
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        if not spec.keyset:
            yield self._snapshot_ids(spec, filter)
            return
        for items, _count in self._keyset_read(spec, filter, page_size, ids_only=True, recover=False):
            yield self._ids_of(items, spec.name)

    def fetch_by_ids(self, spec: EntitySpec, ids: Iterable[int | str]) -> tuple[list[JSON], list[int]]:
        """Full entities for ``ids`` (deduplicated; Stash rejects duplicates), in chunks.

        One missing id fails a whole ``ids:`` query ("<type> with id N not found"), so N is dropped
        and the rest asked again.  Returns (entities in input order, missing ids sorted).
        """
        wanted = list(dict.fromkeys(int(i) for i in ids))
        document = queries.by_ids_query(spec)
        found: list[JSON] = []
        missing: list[int] = []
        for chunk in _chunks(wanted, self.ids_chunk_size):
            pending = list(chunk)
            while pending:
                try:
                    data = self.execute(document, {"ids": [str(i) for i in pending]})
                except StashNotFoundError as exc:
                    if exc.entity_id not in pending:
                        raise StashProtocolError(
                            f"{spec.name} by ids: Stash says id {exc.entity_id} is missing, "
                            "but it was not asked for"
                        ) from exc
                    pending.remove(exc.entity_id)
                    missing.append(exc.entity_id)
                    continue
                items = self._items(self._result(data, spec.query, document), spec, document)
                got = [self._id(item, document) for item in items]
                if len(set(got)) != len(got) or not set(got) <= set(pending):
                    raise StashProtocolError(f"{spec.name} by ids: the answer does not match the ids asked")
                found.extend(items)
                # Not an error Stash would make, but never let an id vanish silently.
                missing.extend(sorted(set(pending) - set(got)))
                break
        return found, sorted(missing)

    def member_pairs(
        self, owner: EntitySpec, relation: Relation, ids: Iterable[int]
    ) -> list[tuple[int, int]]:
        """(owner id, target id) of ``relation`` for every ``owner`` that lists one of ``ids``, one
        request per chunk (a consistent snapshot, verified against its count).  Membership edits
        bump only the side that cannot list it (``MembersFrom``: addGalleryImages bumps the
        gallery), so a bumped one's members are re-read this way."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        document = queries.members_query(owner, relation)
        op = queries.operation_name(document)
        pairs: list[tuple[int, int]] = []
        for chunk in _chunks(wanted, self.ids_chunk_size):
            data = self.execute(document, {"ids": [str(i) for i in chunk]})
            result = self._result(data, owner.query, document)
            count = self._int(result.get("count"), f"{owner.query}.count")
            items = result.get(owner.result_key)
            if not isinstance(items, list):
                raise StashProtocolError(f"{op}: {owner.result_key} is not a list")
            members = set(chunk)
            owner_ids: set[int] = set()
            for item in items:
                owner_id = self._id(item, document)
                owner_ids.add(owner_id)
                targets = item.get(relation.field)
                if not isinstance(targets, list):
                    raise StashProtocolError(
                        f"{op}: {owner.singular} {owner_id} has no {relation.field} list"
                    )
                for target in targets:
                    target_id = self._id(target, document)
                    if target_id in members:
                        pairs.append((owner_id, target_id))
            if len(owner_ids) != len(items) or len(owner_ids) != count:
                raise StashConsistencyError(
                    f"{owner.name} of {len(chunk)} {relation.target_type}: {len(items)} {owner.name} "
                    f"({len(owner_ids)} unique) but count {count}"
                )
        return sorted(set(pairs))

    def image_ids_of_gallery(self, gallery_id: int) -> list[int]:
        """Ids of the images in a gallery (sorted), in one request (a consistent snapshot),
        verified against the count from the same answer."""
        document = queries.IMAGES_OF_GALLERY
        data = self.execute(document, {"gallery_id": str(gallery_id)})
        result = self._result(data, "findImages", document)
        count = self._int(result.get("count"), "findImages.count")
        items = result.get("images")
        if not isinstance(items, list):
            raise StashProtocolError("ImagesOfGallery: images is not a list")
        ids = {self._id(item, document) for item in items}
        if len(ids) != len(items) or len(ids) != count:
            raise StashConsistencyError(
                f"gallery {gallery_id}: {len(items)} image ids ({len(ids)} unique) but count {count}"
            )
        return sorted(ids)


def _payload(document: str, variables: Mapping[str, Any] | None, op: str | None) -> bytes:
    payload: JSON = {"query": document}
    if variables:
        payload["variables"] = variables
    if op:
        payload["operationName"] = op
    return orjson.dumps(payload, default=_json_default)


def _contains(sorted_ids: array, value: int) -> bool:
    i = bisect_left(sorted_ids, value)
    return i < len(sorted_ids) and sorted_ids[i] == value


__all__ = ["Filter", "Page", "ReadStopped", "StashClient", "StashHealth"]
