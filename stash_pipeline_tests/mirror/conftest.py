"""A fake Stash + DuckDB file + Dagster test instance, with full and incremental syncs as real runs."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.fakestash.server import FakeStashServer
from stash_pipeline.fakestash.versions import CURRENT
from stash_pipeline_tests.dagster_instance import project_test_instance
from stash_pipeline_tests.expected_mirror import MirrorFileChecks
from stash_pipeline_tests.sync_harness import metadata_of, run_sync

SCENARIO_SIZE = LibrarySize(scenes=120, images=400)


@dataclass
class MirrorEnv(MirrorFileChecks):
    fake: FakeStash
    server: FakeStashServer
    db_path: str
    instance: dg.DagsterInstance

    def sync(self, mode: str = "auto", **kwargs) -> dg.ExecuteInProcessResult:
        return run_sync(
            url=self.server.url, db_path=self.db_path, instance=self.instance, mode=mode, **kwargs
        )

    def full(self, **kwargs) -> dg.ExecuteInProcessResult:
        return self.sync("auto", **kwargs)

    def incremental(self, **kwargs) -> dg.ExecuteInProcessResult:
        return self.sync("incremental", **kwargs)

    def metadata(self, result: dg.ExecuteInProcessResult, asset: str) -> dict:
        return metadata_of(result, asset)


@pytest.fixture
def stash_version() -> str:
    """The Stash release the fake serves (a test module overrides it to run against every one)."""
    return CURRENT


@pytest.fixture
def mirror_env(
    tmp_path: Path, make_fake_server: Callable[[FakeStash], FakeStashServer], stash_version: str
) -> Iterator[Callable[..., MirrorEnv]]:
    """Factory: ``mirror_env(zone=..., size=..., seed=...)`` → an environment, not yet synced."""
    with project_test_instance() as instance:
        counter = iter(range(100))

        def make(
            zone: str = "Z", size: LibrarySize = SCENARIO_SIZE, seed: int = 7, fake: FakeStash | None = None
        ) -> MirrorEnv:
            fake = fake or FakeStash.generated(size, zone=zone, seed=seed, version=stash_version)
            server = make_fake_server(fake)
            return MirrorEnv(fake, server, str(tmp_path / f"mirror{next(counter)}.duckdb"), instance)

        yield make
