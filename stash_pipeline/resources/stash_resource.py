"""Resources: the Stash API (URL and key from the environment) and the DuckDB mirror.

The API key is resolved from the environment at run time (``EnvVar``), so the run config shown in
the UI names the variable, never the key (docs/architecture.md §2 rule 8).
"""

import contextlib
from collections.abc import Iterator

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from stash_pipeline.mirror.db import writer_config
from stash_pipeline.settings import Settings
from stash_pipeline.stash.client import StashClient


class StashResource(dg.ConfigurableResource):
    """Where Stash is and how patiently to talk to it."""

    url: str = Field(description="Stash base URL; the client posts to <url>/graphql.")
    api_key: str | None = Field(default=None, description="Stash API key (from STASH_API_KEY).")
    timeout: float = Settings.timeout
    retries: int = Settings.retries
    page_size: int = Settings.page_size

    @contextlib.contextmanager
    def client(self) -> Iterator[StashClient]:
        with StashClient(
            self.url,
            api_key=self.api_key or None,
            timeout=self.timeout,
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
    return DuckDBResource(
        database=settings.db_path, connection_config=writer_config(settings.duckdb_memory_limit)
    )


@contextlib.contextmanager
def mirror_connection(mirror: DuckDBResource) -> Iterator[duckdb.DuckDBPyConnection]:
    """``mirror.get_connection()``, closed on failure too: ``DuckDBResource`` closes it only after a
    clean exit, so a step that raised (a refused delete, an unreachable Stash) left its write
    connection open, held by the traceback, and the file locked for the rest of the process."""
    with mirror.get_connection() as con:
        try:
            yield con
        finally:
            con.close()
