"""The CLI's question before an incremental sync: would it find anything at all?

A sync that changes nothing still costs a Dagster run (seconds of bookkeeping) and adds a
materialization per asset and an evaluation per check that only say so, burying the history that
matters.  So ``sync`` first asks the sensor's one probe request (``automation.probe``) and looks at
the mirror file; when both prove nothing to do, it makes no run.  Only the light modules are
imported here: the definitions (and Polars) are loaded only when a run is made.
"""

from collections.abc import Sequence

import dagster as dg

from stash_pipeline.automation.probe import Verdict, sync_verdict
from stash_pipeline.mirror.derived import DERIVED_TABLES
from stash_pipeline.mirror.freshness import unlike_last_syncs
from stash_pipeline.model import ENTITY_SPECS, spec_for
from stash_pipeline.settings import Settings
from stash_pipeline.stash.client import StashClient


def before_sync(
    instance: dg.DagsterInstance, types: Sequence[str] | None, settings: Settings | None = None
) -> Verdict:
    """Whether an incremental sync of ``types`` (all by default) and the derived tables would
    change nothing.  Stash is asked with little patience: one that does not answer at once is a
    reason to run (the run waits for it as long as configured, and says why it fails)."""
    settings = settings or Settings.from_env()
    names = [spec_for(t).name for t in types] if types else [s.name for s in ENTITY_SPECS]
    derived = [dg.AssetKey(t.name) for t in DERIVED_TABLES]
    with StashClient.from_settings(settings, retries=1, retry_seconds=5.0) as client:
        return sync_verdict(
            instance,
            client,
            names,
            derived,
            settings.sensor_stamp_rows,
            settings.partition_by,
            mirror_differs=lambda runs: unlike_last_syncs(settings.db_path, runs),
        )
