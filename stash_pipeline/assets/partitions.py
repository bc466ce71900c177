"""Monthly partitions on Stash's ``updated_at``, and the text window a partition range stands for.

The first partition is open below (older rows fall into it) and the last one open above (rows
updated after the last partition started, or stamped in the future by a skewed clock), so every
entity falls in exactly one partition and a run over all partitions is the full sync.
"""

from collections.abc import Sequence
from datetime import date

import dagster as dg

from stash_pipeline.mirror.windows import TextWindow


def monthly_partitions(start: date) -> dg.MonthlyPartitionsDefinition:
    # end_offset=1 includes the current (incomplete) month: today's edits belong to a partition.
    return dg.MonthlyPartitionsDefinition(start_date=start.isoformat(), end_offset=1)


def window_for(
    partitions: dg.TimeWindowPartitionsDefinition, keys: Sequence[str], instance: dg.DagsterInstance | None
) -> TextWindow:
    """Date-only text bounds for a run over ``keys`` (open at the first/last partition)."""
    if not keys:
        return TextWindow(None, None)
    all_keys = partitions.get_partition_keys(dynamic_partitions_store=instance)
    ordered = sorted(keys)
    first, last = ordered[0], ordered[-1]
    lower = None if not all_keys or first <= all_keys[0] else first
    if all_keys and last >= all_keys[-1]:
        upper = None
    else:
        upper = partitions.time_window_for_partition_key(last).end.date().isoformat()
    return TextWindow(lower, upper)


def keys_covering(partitions: dg.TimeWindowPartitionsDefinition, since: date) -> tuple[str, str]:
    """The partition range from the month holding ``since`` to the last partition."""
    all_keys = partitions.get_partition_keys()
    start = since.replace(day=1).isoformat()
    first = next((k for k in all_keys if k >= start), all_keys[-1])
    if start < all_keys[0]:
        first = all_keys[0]
    return first, all_keys[-1]
