"""The persistent Dagster instance (``DAGSTER_HOME``) that holds the sync history.

Without ``DAGSTER_HOME`` Dagster keeps its storage in a temporary directory deleted on exit, which
would throw the run history (our sync history) away; so the CLI and ``make demo`` default it to
``./.dagster_home`` and put the project's ``dagster.yaml`` there (one DuckDB writer at a time).
"""

import json
import os
from pathlib import Path

import dagster as dg

from stash_pipeline.event_log import event_log_dir

DEFAULT_HOME = ".dagster_home"

INSTANCE_YAML = """\
# Written by stash-pipeline (same content as the repository's dagster.yaml).

# Storage: Dagster's SQLite files under $DAGSTER_HOME; the event log through our subclass of
# Dagster's SQLite one, which reuses its database engines (stash_pipeline/event_log.py: same
# files, same schema, a tenth to a sixth of a small sync's wall time less).
event_log_storage:
  module: stash_pipeline.event_log
  class: ReusedEngineSqliteEventLogStorage
  config:
    base_dir: {event_log_dir}

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

# Run monitoring (the daemon): a run whose process died (SIGKILL, out of memory) is marked failed
# within a poll or two, and its pool slot freed, instead of holding the writer slot forever.  Our
# launcher is Dagster's default one plus the health check this needs (stash_pipeline/launcher.py).
run_launcher:
  module: stash_pipeline.launcher
  class: MonitoredRunLauncher

run_monitoring:
  enabled: true
  poll_interval_seconds: 15
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0  # a dead sync is not resumed in place: the next run resumes its pages
  free_slots_after_run_end_seconds: 5

telemetry:
  enabled: false
"""


def instance_yaml(home: Path) -> str:
    """Our ``dagster.yaml`` for ``home``: the event log's directory is written out, so the instance
    also opens from its directory alone (``DagsterInstance.from_config``) without DAGSTER_HOME."""
    return INSTANCE_YAML.replace("{event_log_dir}", json.dumps(event_log_dir(home)))


def ensure_dagster_home(default: str | os.PathLike[str] = DEFAULT_HOME) -> Path:
    """Make sure ``DAGSTER_HOME`` is set, exists and has a ``dagster.yaml``; return it."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path(default).resolve())
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    wanted = instance_yaml(home)
    # Ours (first line) and older: brought up to date (run monitoring and the event log came with
    # later releases; a moved home gets its directory rewritten); one a user wrote is left alone.
    current = config.read_text() if config.exists() else None
    if current is None or (current.startswith(INSTANCE_YAML.splitlines()[0]) and current != wanted):
        config.write_text(wanted)
    return home


def persistent_instance() -> dg.DagsterInstance:
    ensure_dagster_home()
    return dg.DagsterInstance.get()
