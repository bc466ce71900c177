"""A fake Stash, a DuckDB file and a Dagster test instance, driven through the project's real
``Definitions`` (``build_definitions``) and every way a sync is launched:

- ``env.cli(mode, ...)``: ``runner.run_sync``, the engine of ``stash-pipeline sync`` / ``sync-ids``
  (entity assets + derived assets + their checks in ONE run);
- ``env.window(...)``: a partition-range run of the entity and derived assets (a UI backfill);
- ``env.entities_only(...)``: a run of entity assets alone (the UI, a sensor, a schedule), after
  which ``env.automation_tick()`` plays the daemon: it evaluates the automation conditions and
  executes what they request;
- ``env.resync_job(type, ids)``: the ``resync_ids`` op job.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from stash_pipeline.assets.derived import DERIVED_GROUP, DERIVED_OP
from stash_pipeline.assets.entities import ENTITY_OP
from stash_pipeline.assets.partitions import RANGE_END, RANGE_START
from stash_pipeline.definitions import build_definitions
from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.fakestash.server import FakeStashServer
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline.runner import RunOutcome, run_sync
from stash_pipeline.settings import Settings
from stash_pipeline_tests.dagster_instance import project_test_instance
from stash_pipeline_tests.expected_derived import derived_differences
from stash_pipeline_tests.expected_mirror import mirror_differences
from stash_pipeline_tests.sync_harness import PARTITION_START

DERIVED_SIZE = LibrarySize(scenes=120, images=400)
ENTITY_KEYS = [dg.AssetKey(s.name) for s in ENTITY_SPECS]


@dataclass
class DerivedEnv:
    fake: FakeStash
    server: FakeStashServer
    db_path: str
    instance: dg.DagsterInstance
    defs: dg.Definitions
    automation_cursor: str | None = None
    requested: list[list[dg.AssetKey]] = field(default_factory=list)

    # ------------------------------------------------------------------ sync paths
    def cli(self, mode: str = "incremental", **kwargs) -> RunOutcome:
        outcome = run_sync(self.defs, self.instance, mode=mode, **kwargs)
        assert outcome.success, outcome.error
        return outcome

    def full(self) -> RunOutcome:
        return self.cli("full")

    def materialize_derived(self, rebuild: bool = False) -> dg.ExecuteInProcessResult:
        """Every derived asset, as the UI's "Materialize all" of the group would (with its config)."""
        config = {"ops": {DERIVED_OP: {"config": {"rebuild": rebuild}}}}
        return self._execute(self.derived_keys(), run_config=config)

    def derived_keys(self) -> list[dg.AssetKey]:
        graph = self.defs.resolve_asset_graph()
        return sorted(k for k in graph.get_all_asset_keys() if graph.get(k).group_name == DERIVED_GROUP)

    def partition_keys(self) -> list[str]:
        return self.defs.resolve_assets_def(ENTITY_KEYS[0]).partitions_def.get_partition_keys()

    def _execute(
        self,
        selection: Sequence[dg.AssetKey],
        tags: dict[str, str] | None = None,
        run_config: dict | None = None,
    ) -> dg.ExecuteInProcessResult:
        result = self.defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=self.instance,
            asset_selection=list(selection),
            tags=tags or {},
            run_config=run_config or {},
        )
        assert result.success
        return result

    def window(self, first: str | None = None, last: str | None = None) -> dg.ExecuteInProcessResult:
        """A run over a partition range (default: the latest partition) of every entity asset and every
        derived asset, mode ``auto``: the window the partitions stand for."""
        keys = self.partition_keys()
        tags = {RANGE_START: first or keys[-1], RANGE_END: last or keys[-1]}
        return self._execute([*ENTITY_KEYS, *self.derived_keys()], tags)

    def entities_only(self, types: Sequence[str] | None = None, mode: str = "incremental") -> None:
        """Entity assets only, as a sensor or the UI launches them (the latest partition)."""
        keys = [k for k in ENTITY_KEYS if types is None or k.path[-1] in types]
        last = self.partition_keys()[-1]
        config = {"ops": {ENTITY_OP: {"config": {"mode": mode}}}}
        self._execute(keys, {RANGE_START: last, RANGE_END: last}, config)

    def resync_job(self, entity_type: str, ids: Sequence[int]) -> None:
        result = self.defs.resolve_job_def("resync_ids").execute_in_process(
            instance=self.instance,
            run_config={"ops": {"resync_ids_op": {"config": {"entity_type": entity_type, "ids": list(ids)}}}},
        )
        assert result.success

    def automation_tick(self) -> list[dg.AssetKey]:
        """One tick of the automation sensor: evaluate, then run what it requested (as the daemon
        would launch it).  Returns the requested keys."""
        evaluation = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.automation_cursor
        )
        self.automation_cursor = evaluation.cursor
        keys = sorted(k for k in self.derived_keys() if evaluation.get_num_requested(k))
        self.requested.append(keys)
        if keys:
            self._execute(keys)
        return keys

    # ------------------------------------------------------------------ checks
    def run_checks(self) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
        """Execute the ``mirror_checks`` job (every check, nothing materialized)."""
        result = self.defs.resolve_job_def("mirror_checks").execute_in_process(instance=self.instance)
        assert result.success  # a failed check is a result, never a failed run
        return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}

    def check_evaluations(self, run_id: str) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
        """The check evaluations a run recorded (e.g. a CLI sync's)."""
        records = self.instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        out = {}
        for record in records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            out[(evaluation.asset_key.path[-1], evaluation.check_name)] = evaluation
        return out

    def execute(self, sql: str, params: list | None = None) -> None:
        """Write to the DuckDB file behind the pipeline's back (to corrupt it on purpose)."""
        with duckdb.connect(self.db_path) as con:
            con.execute(sql, params or [])

    # ------------------------------------------------------------------ reading
    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(self.db_path, read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def differences(self) -> list[str]:
        truth = self.fake.truth()
        with duckdb.connect(self.db_path, read_only=True) as con:
            return mirror_differences(con, truth) + derived_differences(con, truth)

    def assert_consistent(self) -> None:
        problems = self.differences()
        assert problems == [], "\n".join(problems)


@pytest.fixture
def derived_env(
    tmp_path: Path, make_fake_server: Callable[[FakeStash], FakeStashServer], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., DerivedEnv]]:
    """Factory: ``derived_env(size=..., seed=..., fake=...)`` → an environment, not yet synced."""
    monkeypatch.delenv("STASH_URL", raising=False)
    monkeypatch.delenv("STASH_API_KEY", raising=False)
    with project_test_instance() as instance:
        counter = iter(range(100))

        def make(
            size: LibrarySize = DERIVED_SIZE, seed: int = 11, fake: FakeStash | None = None
        ) -> DerivedEnv:
            fake = fake or FakeStash.generated(size, seed=seed)
            server = make_fake_server(fake)
            db_path = str(tmp_path / f"derived{next(counter)}.duckdb")
            settings = Settings(
                stash_url=server.url,
                db_path=db_path,
                page_size=100,
                retries=2,
                timeout=10,
                partition_start=PARTITION_START,
            )
            return DerivedEnv(fake, server, db_path, instance, build_definitions(settings))

        yield make
