"""Yearly (or monthly) partitions on Stash's ``updated_at``, and the text window a partition range
stands for.

Yearly by default: a range run writes one materialization event per partition (Dagster's rule),
so monthly ones cost 12 times the events for nothing a user re-syncs by ("March 2021"), and pass
Dagster's 100-partition timestamp-fetch limit within a few years.  ``STASH_PARTITIONS=month``
keeps months.  The scheme is recorded in every materialization's metadata (``partitioning``); the
first run after it changed is a full sync, so every partition of the new scheme is materialized.

The first partition is open below (older rows fall into it) and the last one open above (rows
updated after the last partition started, or stamped in the future by a skewed clock), so every
entity falls in exactly one partition and a run over all partitions is the full sync.
"""

from collections.abc import Sequence
from datetime import date

import dagster as dg

from stash_pipeline.mirror.windows import TextWindow

PARTITIONINGS = ("year", "month")
# Materializations from before the scheme was recorded were monthly.
OLD_PARTITIONING = "month"


def entity_partitions(start: date, by: str = "year") -> dg.TimeWindowPartitionsDefinition:
    """The entity assets' partitions from ``start`` (its year, for yearly ones) to now.

    end_offset=1 includes the current (incomplete) year or month: today's edits belong to one."""
    if by == "month":
        return dg.MonthlyPartitionsDefinition(start_date=start.isoformat(), end_offset=1)
    if by != "year":
        raise ValueError(f"unknown partitioning {by!r}: expected one of {', '.join(PARTITIONINGS)}")
    return dg.TimeWindowPartitionsDefinition(
        start=str(start.year), fmt="%Y", cron_schedule="0 0 1 1 *", end_offset=1
    )


def partitioning_of(partitions: dg.PartitionsDefinition) -> str:
    return "month" if isinstance(partitions, dg.MonthlyPartitionsDefinition) else "year"


def repartitioned(recorded: str | None, current: str) -> bool:
    """Whether a type's last materialization used another scheme (None recorded: the old one)."""
    return (recorded or OLD_PARTITIONING) != current


def window_for(
    partitions: dg.TimeWindowPartitionsDefinition, keys: Sequence[str], instance: dg.DagsterInstance | None
) -> TextWindow:
    """Date-only text bounds for a run over ``keys`` (open at the first/last partition)."""
    if not keys:
        return TextWindow(None, None)
    all_keys = partitions.get_partition_keys(dynamic_partitions_store=instance)
    ordered = sorted(keys)
    first, last = ordered[0], ordered[-1]
    lower = (
        None
        if not all_keys or first <= all_keys[0]
        else partitions.time_window_for_partition_key(first).start.date().isoformat()
    )
    if all_keys and last >= all_keys[-1]:
        upper = None
    else:
        upper = partitions.time_window_for_partition_key(last).end.date().isoformat()
    return TextWindow(lower, upper)


# Dagster's tags for a run over a partition range (one run for many partitions).
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def keys_covering(partitions: dg.TimeWindowPartitionsDefinition, since: date | None) -> tuple[str, str]:
    """The partition range from the partition holding ``since`` to the last one (all of them for
    None, or a ``since`` before the first)."""
    all_keys = partitions.get_partition_keys()
    first = all_keys[0]
    if since is not None:
        for key in all_keys:
            if partitions.time_window_for_partition_key(key).end.date() > since:
                first = key
                break
        else:
            first = all_keys[-1]
    return first, all_keys[-1]


def range_tags(partitions: dg.TimeWindowPartitionsDefinition, since: date | None = None) -> dict[str, str]:
    """The run tags of a run over the partitions from ``since`` on (all of them for None): the one
    place the CLI, the sensor and the schedules turn "what to read" into a partition range."""
    if not partitions.get_partition_keys():
        return {}
    first, last = keys_covering(partitions, since)
    return {RANGE_START: first, RANGE_END: last}


def last_partition_tags(partitions: dg.TimeWindowPartitionsDefinition) -> dict[str, str]:
    """The run tags of a run over the last partition alone."""
    last = partitions.get_partition_keys()[-1]
    return {RANGE_START: last, RANGE_END: last}
