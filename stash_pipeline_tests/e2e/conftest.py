"""The end-to-end stack, shared by the tests of a module: a fake Stash in this process, and the real
``dagster-webserver`` and ``dagster-daemon`` on 127.0.0.1 with a temporary ``DAGSTER_HOME``.

- The fake Stash runs here (``FakeStash.generated`` + ``serve`` on a free port), so tests mutate
  it directly and read its truth; the Dagster processes reach it through ``STASH_URL``.
- ``DAGSTER_HOME`` is a temporary directory holding the project's ``dagster.yaml``
  (``stash_pipeline.instance.instance_yaml``); the mirror is a temporary DuckDB file.
- The processes run from an empty temporary working directory (the workspace file is given by its
  absolute path): a developer's ``.env`` or a cwd-relative path in the instance config cannot leak
  into, or out of, the test.
- The smart-sync sensor and the nightly schedule are stopped (through the GraphQL API) before the
  daemon starts, so nothing runs until a test asks; the sensor test starts the sensor itself.
- Artifacts go to ``test-artifacts/e2e/`` (gitignored): screenshots always; the processes' logs and
  the instance storage when a test of the module failed.
"""

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from stash_pipeline.assets.partitions import entity_partitions
from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.fakestash.server import FakeStashServer, serve
from stash_pipeline_tests.e2e.stack import PROJECT_ROOT, DagsterGraphQL, DagsterProcesses, wait_until

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")

# Big enough that a sync of the scenes takes several pages, small enough to stay quick.
LIBRARY = LibrarySize(scenes=400, images=1200)
PAGE_SIZE = 50
SENSOR_INTERVAL = 10  # the settings' minimum
DAEMONS = ("SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR", "ASSET", "MONITORING")

_FAILED = pytest.StashKey[set[str]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        item.session.stash.setdefault(_FAILED, set()).add(item.module.__name__ if item.module else "")
    return report


@dataclass
class E2EStack:
    fake: FakeStash
    server: FakeStashServer
    procs: DagsterProcesses
    gql: DagsterGraphQL
    db_path: Path
    partition_keys: list[str]
    page_size: int = PAGE_SIZE
    # set by the tests, read by later ones
    cancelled_scene_rows: int | None = None
    synced: bool = False

    @property
    def range_tags(self) -> dict[str, str]:
        """Run tags selecting every partition: with the default config, a full sync."""
        return {
            "dagster/asset_partition_range_start": self.partition_keys[0],
            "dagster/asset_partition_range_end": self.partition_keys[-1],
        }


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    shutil.rmtree(ARTIFACTS / "logs", ignore_errors=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, artifacts: Path
) -> Iterator[E2EStack]:
    root = tmp_path_factory.mktemp("e2e")
    fake = FakeStash.generated(LIBRARY, seed=7)
    server = serve(fake)
    # A recent start: two yearly partitions (older rows fall into the first one, open below).
    start = date(date.today().year - 1, 1, 1)
    db_path = root / "mirror.duckdb"
    procs = DagsterProcesses.create(
        home=root / "dagster_home",
        workdir=root / "work",
        log_dir=root / "logs",
        stash_env={
            "STASH_URL": server.url,
            "STASH_PIPELINE_DB": str(db_path),
            "STASH_PARTITION_START": start.isoformat(),
            "STASH_SENSOR_INTERVAL": str(SENSOR_INTERVAL),
            "STASH_PAGE_SIZE": str(PAGE_SIZE),
            "STASH_RETRIES": "2",
        },
    )
    gql = DagsterGraphQL(procs.url)
    e2e = E2EStack(
        fake=fake,
        server=server,
        procs=procs,
        gql=gql,
        db_path=db_path,
        partition_keys=entity_partitions(start).get_partition_keys(),
    )
    try:
        procs.migrate()
        procs.start_webserver()
        procs.wait_for_webserver()
        wait_until(gql.location_loaded, 120, "the code location to load in the webserver")
        gql.stop_sensor("stash_smart_sync")
        gql.stop_schedule("nightly_full_sync")
        procs.start_daemon()

        def daemons_up() -> bool:
            procs.check_alive()
            return all(gql.daemons_healthy(DAEMONS).values())

        wait_until(
            daemons_up,
            120,
            f"the daemons {DAEMONS} to report healthy",
            describe=lambda: f"{gql.daemons_healthy(DAEMONS)}\n{procs.log_tail('daemon')}",
        )
        yield e2e
    finally:
        gql.close()
        leftovers = procs.stop()
        server.close()
        if request.module.__name__ in request.session.stash.get(_FAILED, set()) or leftovers:
            procs.save_logs(artifacts / "logs")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, which Playwright drives (never ``playwright install``)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the UI test drives Debian's chromium. Install it with "
            "`make browser` (as root: apt-get install chromium), as .ci/run does."
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[dev]'")
    return CHROMIUM
