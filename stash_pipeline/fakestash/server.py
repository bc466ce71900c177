"""The fake Stash over real HTTP: ``serve(fake)`` starts it on 127.0.0.1 in a background thread.

Endpoints
- ``POST /graphql``: JSON body ``{"query", "variables", "operationName"}``.  Per request: API-key
  check (below), ``fake.on_graphql_request()`` (fires scheduled mutations), the next armed fault
  (``faults.py``), then execution while holding ``fake.store.lock`` (one consistent read per request,
  like Stash's read transaction).  Execution errors: HTTP 200 ``{"errors": [...], "data": null}``;
  parse/validation errors: HTTP 422 (gqlgen).  ``Cache-Control: no-store`` like Stash.
- ``GET /healthz``: ``200 "."``, no auth (chi's Heartbeat runs before Stash's auth middleware).
- ``POST /control``: the test/demo backdoor (not part of Stash; no auth).  JSON body with ``action``:
    ``{"action": "mutate", "method": <Mutations.PUBLIC name>, "args": {...}}`` → ``{"result": ...}``
    ``{"action": "schedule", "after": N, "method": ..., "args": {...}}`` → runs the mutation just
        before the N-th /graphql request from now is answered → ``{"scheduled_for": request number}``
    ``{"action": "fault", "kind": ..., "times": 1, "match": null, "params": {...}}`` → ``{"armed": ...}``
    ``{"action": "clear_faults"}`` → ``{"cleared": true}``
    ``{"action": "truth"}`` → the truth export (``FakeStash.truth()``)
    ``{"action": "clock", "freeze": epoch|null, "advance": seconds, "unfreeze": true, "zone": "+11:00"}``
        (any subset; ``freeze: null`` freezes at the current time; ``zone`` is what the server writes
        in from now on, as ``--zone`` takes it) → ``{"now": epoch, "stamp": "...", "frozen": bool}``
    ``{"action": "stats"}`` → ``{"request_count": n, "counts": {type: rows}, "faults_pending": [...]}``
  Bad requests (unknown action or method, bad arguments) → HTTP 400 ``{"error": "..."}``.

API key (Stash's ``ApiKey`` header, or the ``?apikey=`` query parameter): with ``fake.api_key``
set, /graphql without the right key → 401 with ``WWW-Authenticate: FormBased``; with no key
configured, sending a non-empty key is also a 401 (Stash compares it with the empty config value).

Transport notes: ``ThreadingHTTPServer`` with HTTP/1.1 keep-alive.  ``TCP_NODELAY`` is set on
every accepted socket, and headers and body go out in one write: otherwise Nagle's algorithm plus
the client's delayed ACK stall every keep-alive response by ~40 ms.
"""

import contextlib
import email.utils
import gzip
import json
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from stash_pipeline.fakestash.executor import Executor
from stash_pipeline.fakestash.faults import Fault


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: Any, executor: Executor | None = None) -> None:
        self.fake = fake
        self.executor = executor or Executor(fake)
        self.on_outage: Any = None  # set by FakeStashServer: stop listening for a while
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # a client went away: not worth a traceback
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeStash/0.30.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests make thousands of requests
        return

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header from the fake's clock (Go's net/http sends one, in UTC, whatever the
        process's zone): the client reads the server's time from it."""
        return email.utils.formatdate(
            self.server.fake.clock.now() if timestamp is None else timestamp, usegmt=True
        )

    # ------------------------------------------------------------------ helpers
    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers_and_body(body)

    def end_headers_and_body(self, body: bytes) -> None:
        """One write for headers + body (see module docstring)."""
        self._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
        self._headers_buffer.append(body)  # type: ignore[attr-defined]
        self.flush_headers()

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, orjson.dumps(obj), headers=headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def _drop(self) -> None:
        """Close the connection without any answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(200, b".", "text/plain")
        elif path == "/graphql":
            self._json(
                422, {"errors": [{"message": "GET is not supported by the fake; use POST"}], "data": None}
            )
        else:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/graphql":
            self._graphql(parts.query)
        elif parts.path == "/control":
            self._control()
        else:
            self._read_body()
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _authorised(self, query_string: str) -> bool:
        configured = self.server.fake.api_key or ""
        sent = self.headers.get("ApiKey")
        if not sent:
            sent = (parse_qs(query_string).get("apikey") or [""])[0]
        if sent:
            return sent == configured  # a key sent to a server without one is refused too
        return not configured

    def _graphql(self, query_string: str) -> None:
        body = self._read_body()
        if not self._authorised(query_string):
            self._send(401, b"", "text/plain", headers={"WWW-Authenticate": "FormBased"})
            return
        try:
            request = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            self._json(
                400,
                {"errors": [{"message": "json request body could not be decoded"}], "data": None},
            )
            return
        query = request.get("query")
        fake = self.server.fake
        fake.on_graphql_request()
        fault = fake.faults.take(query if isinstance(query, str) else "")
        if fault is not None and self._pre_fault(fault):
            return
        try:
            status, result = self.server.executor.execute(
                query, request.get("variables"), request.get("operationName")
            )
        except Exception as err:  # never leave a client hanging on a bug of the fake
            traceback.print_exc(file=sys.stderr)
            status, result = (
                200,
                {"errors": [{"message": f"Internal system error. Error <{err!r}>"}], "data": None},
            )
        if fault is not None and fault.kind in ("truncate_list", "empty_list"):
            keep = 0 if fault.kind == "empty_list" else int(fault.params.get("keep", 1))
            _truncate_lists(result, keep)
        if fault is not None and fault.kind == "duplicate_items":
            _duplicate_first_items(result)
        payload = orjson.dumps(result)
        if fault is not None and fault.kind == "malformed_json":
            payload = payload[: max(1, len(payload) // 2)]
        self._send(status, payload)

    def _pre_fault(self, fault: Fault) -> bool:
        """Apply a fault that happens before execution; True when the request is answered."""
        kind = fault.kind
        if kind in ("http_500", "http_502", "http_503"):
            status = int(kind[5:])
            self._send(status, f"fake {status}\n".encode(), "text/plain")
            return True
        if kind == "http_429":
            retry = str(fault.params.get("retry_after", 0))
            self._send(429, b"too many requests\n", "text/plain", headers={"Retry-After": retry})
            return True
        if kind == "drop":
            self._drop()
            return True
        if kind == "outage":
            self._drop()
            if self.server.on_outage is not None:
                self.server.on_outage(float(fault.params.get("seconds", 60.0)))
            return True
        if kind == "slow":
            time.sleep(float(fault.params.get("seconds", 1.0)))
            return False
        if kind in ("graphql_error", "db_locked"):
            message = (
                "database is locked"
                if kind == "db_locked"
                else str(fault.params.get("message", "fake error"))
            )
            self._json(200, {"errors": [{"message": message, "path": []}], "data": None})
            return True
        return False  # malformed_json / truncate_list / empty_list / duplicate_items act after execution

    def _control(self) -> None:
        body = self._read_body()
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise ControlError("control body must be a JSON object")
            result = control(self.server.fake, request)
        except ControlError as err:
            self._json(400, {"error": str(err)})
            return
        except (TypeError, ValueError, KeyError) as err:
            self._json(400, {"error": f"{type(err).__name__}: {err}"})
            return
        self._send(200, orjson.dumps(result, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _truncate_lists(result: dict[str, Any], keep: int) -> None:
    """Cut every item list of every find* result to ``keep`` items, leaving ``count`` alone."""
    data = result.get("data")
    if not isinstance(data, dict):
        return
    for value in data.values():
        if isinstance(value, dict):
            for key, items in value.items():
                if isinstance(items, list):
                    value[key] = items[:keep]


def _duplicate_first_items(result: dict[str, Any]) -> None:
    """Repeat the first item of every find* item list right after itself, leaving ``count`` alone."""
    data = result.get("data")
    if not isinstance(data, dict):
        return
    for value in data.values():
        if isinstance(value, dict):
            for key, items in value.items():
                if isinstance(items, list) and items:
                    value[key] = [items[0], *items]


class ControlError(Exception):
    """A /control request that cannot be honoured (HTTP 400)."""


def _mutation(fake: Any, method: Any) -> Any:
    public = getattr(type(fake.mutations), "PUBLIC", frozenset())
    if not isinstance(method, str) or method not in public:
        known = ", ".join(sorted(public)) or "(none)"
        raise ControlError(f"unknown mutation method {method!r}; expected one of: {known}")
    return getattr(fake.mutations, method)


def control(fake: Any, request: dict[str, Any]) -> Any:
    """Handle one /control request (see module docstring); raises ControlError for bad ones."""
    action = request.get("action")
    if action == "mutate":
        fn = _mutation(fake, request.get("method"))
        args = request.get("args") or {}
        if not isinstance(args, dict):
            raise ControlError("args must be a JSON object")
        return {"result": fn(**args)}
    if action == "schedule":
        fn = _mutation(fake, request.get("method"))
        args = request.get("args") or {}
        after = request.get("after", 1)
        if not isinstance(after, int) or after < 1:
            raise ControlError("after must be an integer >= 1")
        fake.after_requests(after, lambda _fake: fn(**args))
        return {"scheduled_for": fake.request_count + after}
    if action == "fault":
        params = request.get("params") or {}
        try:
            fault = fake.faults.add(
                request.get("kind"), times=int(request.get("times", 1)), match=request.get("match"), **params
            )
        except ValueError as err:
            raise ControlError(str(err)) from None
        return {"armed": fault.describe()}
    if action == "clear_faults":
        fake.faults.clear()
        return {"cleared": True}
    if action == "truth":
        return fake.truth()
    if action == "clock":
        clock = fake.clock
        if request.get("unfreeze"):
            clock.unfreeze()
        if "freeze" in request:
            clock.freeze(request["freeze"])
        if request.get("advance"):
            clock.advance(float(request["advance"]))
        if request.get("zone"):
            try:
                clock.set_zone(str(request["zone"]))
            except ValueError as err:
                raise ControlError(str(err)) from None
        return {"now": clock.now(), "stamp": clock.stamp(), "frozen": clock.frozen_at is not None}
    if action == "stats":
        with fake.store.lock:
            counts = fake.store.counts()
        return {
            "request_count": fake.request_count,
            "counts": counts,
            "faults_pending": fake.faults.pending(),
        }
    known = "mutate, schedule, fault, clear_faults, truth, clock, stats"
    raise ControlError(f"unknown action {action!r}; expected one of: {known}")


class FakeStashServer:
    """A running fake Stash; ``url`` is the base URL (the client posts to ``url + "/graphql"``)."""

    def __init__(self, fake: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake = fake
        self.host = host
        self._closed = threading.Event()
        self.outages: list[float] = []  # seconds of each outage served (the "outage" fault)
        self._listen(port)
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"

    def _listen(self, port: int, executor: Executor | None = None) -> None:
        self._httpd = _HTTPServer((self.host, port), self.fake, executor)
        self._httpd.on_outage = self._outage
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"fakestash:{port}",
            daemon=True,
        )
        self._thread.start()

    def _outage(self, seconds: float) -> None:
        """Stop listening (connections are refused) for ``seconds``, then listen again on the same
        port with the same data: a Stash restart, as a client sees it."""

        def down_then_up() -> None:
            old = self._httpd
            old.shutdown()
            old.server_close()
            if not self._closed.wait(seconds):
                self._listen(self.port, old.executor)
                self.outages.append(seconds)

        threading.Thread(target=down_then_up, name=f"fakestash-outage:{self.port}", daemon=True).start()

    @property
    def graphql_url(self) -> str:
        return self.url + "/graphql"

    @property
    def executor(self) -> Executor:
        return self._httpd.executor

    def close(self) -> None:
        self._closed.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeStashServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FakeStashServer({self.url})"


def serve(fake: Any, host: str = "127.0.0.1", port: int = 0) -> FakeStashServer:
    """Start serving ``fake`` in a daemon thread; port 0 picks a free port."""
    return FakeStashServer(fake, host, port)
