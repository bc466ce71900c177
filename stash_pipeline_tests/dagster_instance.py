"""The Dagster instance tests run on: Dagster's test instance (SQLite files in a temporary
``DAGSTER_HOME``) with the event log storage the project's ``dagster.yaml`` configures, so tests
write their events the way users' runs do."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from stash_pipeline.event_log import ReusedEngineSqliteEventLogStorage

EVENT_LOG_STORAGE = {
    "module": ReusedEngineSqliteEventLogStorage.__module__,
    "class": ReusedEngineSqliteEventLogStorage.__name__,
}


@contextmanager
def project_test_instance() -> Iterator[dg.DagsterInstance]:
    """``dg.instance_for_test()`` with the project's event log storage (its files in
    ``$DAGSTER_HOME/history/runs``, as in a user's home)."""
    with dg.instance_for_test(overrides={"event_log_storage": EVENT_LOG_STORAGE}) as instance:
        yield instance
