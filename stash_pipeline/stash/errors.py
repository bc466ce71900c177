"""Typed errors of the Stash client, so callers can tell "retry later" from "fix your config" from
"do not trust this answer".

Hierarchy::

    StashError
    ├── StashAuthError          401: key rejected or missing (never retried, never contains the key)
    ├── StashGraphQLError       the server answered with GraphQL errors (not retried)
    │   └── StashNotFoundError  an ``ids:`` query named an id that does not exist
    ├── StashUnavailableError   retries exhausted on transient failures (connect, timeout, 5xx, 429,
    │                           "database is locked")
    ├── StashProtocolError      malformed JSON or an answer of the wrong shape / unexpected status
    ├── StashConsistencyError   a paged read that could not be verified (never mass-delete on it)
    └── StashNotReadyError      the server is up but not usable (systemStatus != OK)

No message built here ever includes the API key: the client redacts any text it did not write
itself before it reaches an exception (docs/architecture.md §2 rule 8).
"""

from collections.abc import Sequence


class StashError(Exception):
    """Base class of every error the Stash client raises."""


class StashAuthError(StashError):
    """HTTP 401: the API key was rejected or is missing.  Failing fast: retrying cannot help."""


class StashGraphQLError(StashError):
    """The server answered with GraphQL ``errors``; carries all messages and the operation name."""

    def __init__(self, messages: Sequence[str], operation_name: str | None = None) -> None:
        self.messages: list[str] = list(messages)
        self.operation_name = operation_name
        op = f" in {operation_name}" if operation_name else ""
        super().__init__(f"Stash GraphQL error{op}: " + "; ".join(self.messages))


class StashNotFoundError(StashGraphQLError):
    """An ``ids:`` query failed because one id does not exist ("<type> with id N not found").

    Stash fails the *whole* query on one missing id (docs/stash-behaviour.md §2), so the caller drops
    ``entity_id`` and asks again.
    """

    def __init__(
        self,
        entity_type: str,
        entity_id: int,
        messages: Sequence[str],
        operation_name: str | None = None,
    ) -> None:
        self.entity_type = entity_type
        self.entity_id = entity_id
        super().__init__(messages, operation_name)


class StashUnavailableError(StashError):
    """Transient failures persisted through every retry (connection, timeout, 5xx, 429, db lock)."""

    def __init__(self, message: str, attempts: int = 0, reason: str = "") -> None:
        self.attempts = attempts
        self.reason = reason
        super().__init__(message)


class StashProtocolError(StashError):
    """The server's answer is not what the GraphQL protocol or our query promised."""


class StashConsistencyError(StashError):
    """A paged read could not be verified: acting on it (e.g. deleting what looks missing) is unsafe."""


class StashNotReadyError(StashError):
    """The server answers but is not usable: ``systemStatus.status`` is SETUP or NEEDS_MIGRATION."""

    def __init__(self, message: str, status: str) -> None:
        self.status = status
        super().__init__(message)


__all__ = [
    "StashAuthError",
    "StashConsistencyError",
    "StashError",
    "StashGraphQLError",
    "StashNotFoundError",
    "StashNotReadyError",
    "StashProtocolError",
    "StashUnavailableError",
]
