"""The persistent Dagster instance (``DAGSTER_HOME``) that holds the sync history.

Without ``DAGSTER_HOME`` Dagster keeps its storage in a temporary directory deleted on exit, which
would throw the run history (our sync history) away; so the CLI and ``make demo`` default it to
``./.dagster_home`` and put the project's ``dagster.yaml`` there (one DuckDB writer at a time).
"""

import os
from pathlib import Path

import dagster as dg

DEFAULT_HOME = ".dagster_home"

INSTANCE_YAML = """\
# Written by stash-pipeline (same content as the repository's dagster.yaml).
# Storage: Dagster's default, SQLite files under $DAGSTER_HOME (a relative base_dir would
# follow the working directory instead).

# One DuckDB writer at a time: every writing step is in the pool "duckdb_writer", and every pool has
# one slot.  Runs are queued (not rejected) while another sync holds the file.
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 1

run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator

telemetry:
  enabled: false
"""


def ensure_dagster_home(default: str | os.PathLike[str] = DEFAULT_HOME) -> Path:
    """Make sure ``DAGSTER_HOME`` is set, exists and has a ``dagster.yaml``; return it."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path(default).resolve())
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    return home


def persistent_instance() -> dg.DagsterInstance:
    ensure_dagster_home()
    return dg.DagsterInstance.get()
