"""Schedules: the nightly full reconciliation (on) and an interval incremental sync (off by default).

The full sync is the backstop for what no incremental run can see: fields Stash changes without
bumping ``updated_at`` (o-counter, play counts, sub-group edits) are refreshed there.
"""

import dagster as dg

from stash_pipeline.assets.entities import ENTITY_OP
from stash_pipeline.assets.partitions import range_tags
from stash_pipeline.settings import Settings


def _all_types_request(partitions: dg.TimeWindowPartitionsDefinition, mode: str) -> dg.RunRequest:
    """Every type in ``mode``, over every partition (each type reads from its own cursor when
    incremental, so the range is bookkeeping; for a full sync it is the whole library)."""
    return dg.RunRequest(
        run_config={"ops": {ENTITY_OP: {"config": {"mode": mode}}}},
        tags={
            **range_tags(partitions),  # as of now (a manual test tick has no scheduled time)
            "stash/launched_by": "schedule",
            "stash/sync_type": mode,
        },
    )


def build_schedules(
    job: dg.JobDefinition, partitions: dg.TimeWindowPartitionsDefinition, settings: Settings
) -> list[dg.ScheduleDefinition]:
    @dg.schedule(
        name="nightly_full_sync",
        job=job,
        cron_schedule=settings.full_sync_cron,
        execution_timezone=settings.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Full reconciliation: every entity; local ids the verified read did not list are deleted."
        ),
    )
    def nightly_full_sync() -> dg.RunRequest:
        return _all_types_request(partitions, "full")

    @dg.schedule(
        name="interval_incremental_sync",
        job=job,
        cron_schedule=settings.incremental_cron,
        execution_timezone=settings.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Incremental sync of every type on a fixed interval (the smart sensor usually suffices).",
    )
    def interval_incremental_sync() -> dg.RunRequest:
        return _all_types_request(partitions, "incremental")

    return [nightly_full_sync, interval_incremental_sync]
