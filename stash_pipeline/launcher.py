"""The run launcher: Dagster's default one (a process per run, on this machine), plus the health
check that run monitoring needs to notice a run whose process died.

Dagster's ``DefaultRunLauncher`` cannot tell whether a run's process is alive, so the monitoring
daemon never marks a run failed whose worker was SIGKILLed or killed by the OOM killer: it stays
STARTED and keeps its ``duckdb_writer`` slot, and every later run queues behind it.  Each run worker
records its pid in the run's event log ("Started process for run (pid: N)"; a CLI run carries it in
its tags), and this launcher looks that process up in ``/proc``.
"""

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

from stash_pipeline.runner import PID_TAG, PROCESS_START_TAG, process_alive

_STARTED = "Started process for run"


def worker_pid(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[int, str | None] | None:
    """The pid of the run's worker process (and its start time when recorded), None if unknown."""
    pid = run.tags.get(PID_TAG, "")
    if pid.isdigit():
        return int(pid), run.tags.get(PROCESS_START_TAG) or None
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or not (event.message or "").startswith(_STARTED):
            continue
        value = event.engine_event_data.metadata.get("pid")
        text = str(getattr(value, "value", value) or "")
        if text.isdigit():
            return int(text), None
    return None


class MonitoredRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` that answers run monitoring's "is this run's worker alive?"."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        found = worker_pid(self._instance, run)
        if found is None:  # not started far enough to say: the start timeout covers it
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker pid recorded yet")
        pid, started = found
        if process_alive(pid, started):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker process {pid} is alive")
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"the run's process (pid {pid}) is gone (killed or crashed)"
        )
