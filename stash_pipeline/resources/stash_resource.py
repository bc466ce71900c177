"""Resources: the Stash API (URL and key from the environment) and the DuckDB mirror.

The API key is resolved from the environment at run time (``EnvVar``), so the run config shown in
the UI names the variable, never the key (docs/architecture.md §2 rule 8).
"""

import contextlib
from collections.abc import Callable, Iterator

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from stash_pipeline.mirror.db import connect_writer, disk_full, writer_config
from stash_pipeline.settings import Settings
from stash_pipeline.stash.client import StashClient


class StashResource(dg.ConfigurableResource):
    """Where Stash is and how patiently to talk to it."""

    url: str = Field(description="Stash base URL; the client posts to <url>/graphql.")
    api_key: str | None = Field(default=None, description="Stash API key (from STASH_API_KEY).")
    timeout: float = Settings.timeout
    retry_seconds: float = Field(
        default=Settings.retry_seconds,
        description="How long a failing Stash is waited for (retried) before the run fails.",
    )
    retries: int | None = Field(default=Settings.retries, description="Optional cap on retries.")
    page_size: int = Settings.page_size

    @contextlib.contextmanager
    def client(self) -> Iterator[StashClient]:
        with StashClient(
            self.url,
            api_key=self.api_key or None,
            timeout=self.timeout,
            retry_seconds=self.retry_seconds,
            retries=self.retries,
            page_size=self.page_size,
        ) as client:
            yield client

    @classmethod
    def from_settings(cls, settings: Settings) -> "StashResource":
        return cls(
            url=dg.EnvVar("STASH_URL") if _env_set("STASH_URL") else settings.stash_url,
            api_key=dg.EnvVar("STASH_API_KEY") if _env_set("STASH_API_KEY") else None,
            timeout=settings.timeout,
            retry_seconds=settings.retry_seconds,
            retries=settings.retries,
            page_size=settings.page_size,
        )


def _env_set(name: str) -> bool:
    import os

    return bool(os.environ.get(name, "").strip())


def mirror_database_resource(settings: Settings) -> DuckDBResource:
    from pathlib import Path

    Path(settings.db_path).parent.mkdir(parents=True, exist_ok=True)
    # DuckDB's default memory limit is 80% of RAM, and it keeps every block it has touched cached
    # up to that limit: a full sync's resident memory then grows with the library.  A fixed limit
    # keeps it flat (larger sorts and joins spill to <db>.tmp instead).
    return MirrorResource(
        database=settings.db_path,
        connection_config=writer_config(settings.duckdb_memory_limit),
        lock_wait_seconds=settings.lock_wait_seconds,
    )


class MirrorResource(DuckDBResource):
    """The DuckDB mirror: ``DuckDBResource`` (the IO-manager-free resource users know), plus how
    long a sync waits for another process holding the file."""

    lock_wait_seconds: float = Field(
        default=Settings.lock_wait_seconds,
        description="How long a sync waits for another process that has the mirror open, then fails.",
    )


@contextlib.contextmanager
def mirror_connection(
    mirror: DuckDBResource, log: Callable[[str], None] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A write connection to the mirror, closed on failure too.

    Not ``DuckDBResource.get_connection()``: it retries a locked file ten times with backoff
    (about a minute) without a word, and closes the connection only after a clean exit, so a step
    that raised left the file locked for the rest of the process.  ``mirror.db.connect_writer``
    names the process holding the file at once (to ``log``) and fails after the configured wait.
    """
    con = connect_writer(
        mirror.database,
        {"custom_user_agent": "dagster", **mirror.connection_config},
        wait_seconds=getattr(mirror, "lock_wait_seconds", Settings.lock_wait_seconds),
        log=log,
    )
    try:
        yield con
    except Exception as exc:
        full = disk_full(exc, mirror.database)
        if full is not None:
            raise full from exc
        raise
    finally:
        with contextlib.suppress(duckdb.Error):  # an invalidated database fails to close too
            con.close()
