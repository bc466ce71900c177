"""Settings from the environment (and an optional ``.env`` file in the working directory).

One frozen object read once, so every component sees the same values; the environment wins over
``.env`` so a deployment can override a checked-in file.  The API key is never shown: ``repr`` and
``str`` print ``'***'`` in its place (docs/architecture.md §2 rule 8).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from stash_pipeline.mirror.db import ROW_GROUP_ROWS

DEFAULT_STASH_URL = "http://127.0.0.1:9999"
DEFAULT_DB_PATH = "data/stash.duckdb"


def parse_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a simple ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, optional ``export`` and
    matching quotes.  No interpolation: keeping it simple keeps it predictable."""
    values: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:  # trailing comment on an unquoted value
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _system_timezone() -> str:
    """The machine's IANA zone name (from /etc/localtime), so "03:00" means server time; UTC if unknown."""
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return "UTC"
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else "UTC"


def load_env_file(path: str | os.PathLike[str] = ".env") -> list[str]:
    """Copy a ``.env`` file's values into ``os.environ`` where not already set (the environment
    wins), so code that reads variables directly (Dagster's ``EnvVar``) sees them too.  Returns the
    names it set; a missing file sets nothing."""
    if not Path(path).is_file():
        return []
    added = []
    for key, value in parse_env_file(path).items():
        if key not in os.environ:
            os.environ[key] = value
            added.append(key)
    return added


@dataclass(frozen=True)
class Settings:
    """Everything configurable by environment; defaults suit a local Stash on port 9999.

    The one place every knob's default is written: the client, the resources and the sync options
    take theirs from here."""

    stash_url: str = DEFAULT_STASH_URL
    api_key: str | None = None
    db_path: str = DEFAULT_DB_PATH
    page_size: int = 1000
    timeout: float = 30.0
    # A Stash that fails (refused connections, 5xx, timeouts) is retried for this long, then the
    # sync fails; STASH_RETRIES also caps the number of retries (none by default).
    retry_seconds: float = 300.0
    retries: int | None = None
    overlap_seconds: int = 3600
    partition_start: date = date(2019, 1, 1)
    partition_by: str = "year"  # or "month" (assets.partitions)
    max_delete_fraction: float = 0.05
    duckdb_memory_limit: str = "256MB"
    lock_wait_seconds: float = 300.0  # another process holding the mirror file is waited for
    # Rows shaped and merged together (a sixth of a DuckDB row group), and rows per commit (a whole
    # row group, written compressed straight to the file): see ``mirror.sync.SyncOptions``.
    merge_rows: int = ROW_GROUP_ROWS // 6
    commit_rows: int = ROW_GROUP_ROWS
    sensor_interval_seconds: int = 300
    # Up to this many rows of a type above its stamp bound, the sensor lists their stamps on every
    # tick (about 50 bytes a row); above it, it counts (see ``automation.sensors``).
    sensor_stamp_rows: int = 20000
    full_sync_cron: str = "0 3 * * *"
    incremental_cron: str = "*/30 * * * *"
    schedule_timezone: str = "UTC"

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "None"
        return (
            f"Settings(stash_url={self.stash_url!r}, api_key={key}, db_path={self.db_path!r}, "
            f"page_size={self.page_size}, timeout={self.timeout}, retry_seconds={self.retry_seconds}, retries={self.retries}, "
            f"overlap_seconds={self.overlap_seconds}, "
            f"partition_start={self.partition_start.isoformat()!r}, partition_by={self.partition_by!r}, "
            f"max_delete_fraction={self.max_delete_fraction}, "
            f"sensor_interval_seconds={self.sensor_interval_seconds}, full_sync_cron={self.full_sync_cron!r}, "
            f"incremental_cron={self.incremental_cron!r}, schedule_timezone={self.schedule_timezone!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = ".env",
    ) -> "Settings":
        """Read settings from ``environ`` (default ``os.environ``) over ``env_file`` if it exists.

        Raises ``ValueError`` naming the variable when a value cannot be parsed.
        """
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update(parse_env_file(env_file))
        values.update(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = values.get(name)
            return value.strip() if value is not None and value.strip() != "" else None

        def number(name: str, default: float, kind: type, low: float, high: float | None = None):
            text = get(name)
            if text is None:
                return default
            try:
                value = kind(text)
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a valid {kind.__name__}") from None
            if value < low or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f">= {low}"
                raise ValueError(f"{name}={text!r} must be {bound}")
            return value

        start_text = get("STASH_PARTITION_START")
        try:
            start = date.fromisoformat(start_text) if start_text else cls.partition_start
        except ValueError:
            raise ValueError(f"STASH_PARTITION_START={start_text!r} is not a YYYY-MM-DD date") from None

        partition_by = (get("STASH_PARTITIONS") or cls.partition_by).lower()
        if partition_by not in ("year", "month"):
            raise ValueError(f"STASH_PARTITIONS={partition_by!r} must be year or month")

        url = (get("STASH_URL") or DEFAULT_STASH_URL).rstrip("/")
        # The key belongs in STASH_API_KEY: a key in the URL would leak into error messages.
        if "apikey=" in url.lower():
            raise ValueError("STASH_URL must not carry the API key; set STASH_API_KEY instead")

        return cls(
            stash_url=url,
            api_key=get("STASH_API_KEY"),
            db_path=get("STASH_PIPELINE_DB") or DEFAULT_DB_PATH,
            page_size=number("STASH_PAGE_SIZE", cls.page_size, int, 1),
            timeout=number("STASH_TIMEOUT", cls.timeout, float, 0.001),
            retry_seconds=number("STASH_RETRY_SECONDS", cls.retry_seconds, float, 0),
            retries=number("STASH_RETRIES", cls.retries, int, 0),
            overlap_seconds=number("STASH_OVERLAP_SECONDS", cls.overlap_seconds, int, 0),
            partition_start=start,
            partition_by=partition_by,
            max_delete_fraction=number("STASH_MAX_DELETE_FRACTION", cls.max_delete_fraction, float, 0, 1),
            duckdb_memory_limit=get("STASH_DUCKDB_MEMORY_LIMIT") or cls.duckdb_memory_limit,
            lock_wait_seconds=number("STASH_LOCK_WAIT_SECONDS", cls.lock_wait_seconds, float, 0),
            merge_rows=number("STASH_MERGE_ROWS", cls.merge_rows, int, 1),
            commit_rows=number("STASH_COMMIT_ROWS", cls.commit_rows, int, 1),
            sensor_interval_seconds=number("STASH_SENSOR_INTERVAL", cls.sensor_interval_seconds, int, 10),
            sensor_stamp_rows=number("STASH_SENSOR_STAMP_ROWS", cls.sensor_stamp_rows, int, 0),
            full_sync_cron=get("STASH_FULL_SYNC_CRON") or cls.full_sync_cron,
            incremental_cron=get("STASH_INCREMENTAL_CRON") or cls.incremental_cron,
            schedule_timezone=get("STASH_SCHEDULE_TIMEZONE") or get("TZ") or _system_timezone(),
        )


__all__ = ["DEFAULT_DB_PATH", "DEFAULT_STASH_URL", "Settings", "load_env_file", "parse_env_file"]
