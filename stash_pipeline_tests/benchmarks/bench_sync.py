"""Benchmark of the sync: a full sync of a generated library against the download-and-parse floor,
an incremental sync of 1,000 changes, and the rebuild of the derived tables.

    python -m stash_pipeline_tests.benchmarks.bench_sync                  # 20k scenes, 100k images
    python -m stash_pipeline_tests.benchmarks.bench_sync --scale large    # + 200k scenes, 1M images
    python -m stash_pipeline_tests.benchmarks.bench_sync --skip-cli --page-sizes 500,1000,2000,5000
    python -m stash_pipeline_tests.benchmarks.bench_sync --profile /tmp/engine.prof   # cProfile

Every party runs in its own process, so that no two share a GIL and each peak RSS is its own
(read with ``os.wait4`` when the child exits):
- the fake Stash (``stash-pipeline fake-stash --port 0``), generated once per scale;
- the floor: ``StashClient.iter_pages`` over every type, the pages decoded as the client decodes
  them (into Arrow, the next page asked for while one is decoded) and discarded, same page size:
  what a sync cannot beat, with the sync's own client;
- the same floor once more while a spin loop (``while True: pass``, its own process) keeps the other
  core busy: a reference, not a goal.  On a two-core machine the fake takes one core and the client
  much of the other; anything more, even a loop touching no memory, slows the fake itself, and the
  sync has its own shaping and merging to run beside them;
- the bare engine: ``mirror.sync.EntitySync`` for each spec in order on a fresh DuckDB file (what the
  sync itself costs, without Dagster), instrumented per phase (shape / merge / id sweep); beside it
  the fake's CPU in the floor and in the engine's run (read from ``/proc``), and the shortest time
  the engine's run could take on this machine's cores: (the fake's CPU in the floor + the engine's
  CPU) / cores, as if nothing slowed the fake and every part overlapped;
- the CLI: ``stash-pipeline sync --full`` with its own DAGSTER_HOME and database (Dagster's import
  and event overhead included, and the derived assets it materializes in the same run);
- the derived tables: ``mirror.derived.rebuild`` of each table on the engine's synced library.
Then 1,000 entities (mostly scenes and images) are changed through the fake's ``/control``
endpoint and both the engine and the CLI run an incremental sync of them.

The floor, the engine's full sync, its incremental sync and the CLI's full sync run ``--repeat``
times each (default 3; the floor and the engine's full sync alternated, so that a machine slowing
down for a while slows both; the incremental from a copy of the same synced file each time; the
CLI's each into a new mirror and Dagster home) and the fastest run of each is compared:
on two shared, noisy cores a single run varied by half from one try to the next, and the minimum
is the least disturbed measure of both sides alike.  Every run's time is printed.

Goals (issue "make bench"): full sync <= 1.5x the floor; peak RSS at the large scale <= 1.5x the
peak at the default scale (with ``--scale large`` the default scale is run first as the reference);
incremental time for 1,000 changes about the same at both scales; derived rebuild in seconds.
"""

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCALES = {"default": (20_000, 100_000), "large": (200_000, 1_000_000)}
GOAL_FLOOR_RATIO = 1.5
GOAL_RSS_RATIO = 1.5
GOAL_INCREMENTAL_RATIO = 1.5  # "about the same": large within 1.5x of default
GOAL_DERIVED_S = 10.0  # "seconds, not minutes" for every derived table together
GOAL_CLI_FLOOR_RATIO = 1.3  # CLI full sync (Dagster included) at the large scale
GOAL_DAGSTER_S = 4.0  # CLI full sync minus the bare engine's, at every scale
GOAL_FIXED_FULL_S = 4.0  # CLI full sync of a library of 50 scenes
GOAL_FIXED_NOCHANGE_S = 3.0  # CLI incremental run that finds nothing
FIXED_LIBRARY = (50, 250)  # scenes, images
CHANGES = 1000
# How the 1,000 changes spread over the types (mostly scenes and images), and the field each edits.
CHANGE_MIX = {
    "scene": (450, "details"),
    "image": (450, "details"),
    "gallery": (40, "details"),
    "performer": (30, "details"),
    "tag": (10, "description"),
    "studio": (10, "details"),
    "group": (10, "synopsis"),
}
THIS = "stash_pipeline_tests.benchmarks.bench_sync"
SPEC_NAMES = ("studios", "tags", "performers", "groups", "galleries", "scenes", "images", "scene_markers")


# ================================================================================ children
def _emit(result: dict[str, Any]) -> None:
    """A child's answer: one JSON line, last on stdout."""
    import resource

    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


def child_floor(cfg: dict[str, Any]) -> None:
    """Download and parse every page of every type, discarding them."""
    from stash_pipeline.mirror.gc_pauses import fewer_gc_pauses
    from stash_pipeline.model import ENTITY_SPECS
    from stash_pipeline.stash.client import StashClient

    types: dict[str, Any] = {}
    # The same collector setting as the sync's (mirror.gc_pauses): the floor is the best read.
    with fewer_gc_pauses(), StashClient(cfg["url"], page_size=cfg["page_size"], timeout=600) as client:
        client.health()
        started, cpu_started = time.perf_counter(), time.process_time()
        for spec in ENTITY_SPECS:
            t0 = time.perf_counter()
            rows = pages = 0
            for page in client.iter_pages(spec, None, page_size=cfg["page_size"]):
                rows += len(page)
                pages += 1
            types[spec.name] = {"rows": rows, "pages": pages, "seconds": time.perf_counter() - t0}
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        requests = client.requests_sent
    _emit({"seconds": seconds, "timed_cpu_seconds": cpu, "types": types, "requests": requests})


class _Timer:
    """Accumulates the time spent in wrapped callables, by phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, phase: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0
                self.calls[phase] = self.calls.get(phase, 0) + 1

        return timed


def _memory(con: Any) -> dict[str, float]:
    """VmRSS / VmHWM of this process (Linux) and DuckDB's ``duckdb_memory()`` total, in MB."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out["rss_mb" if line.startswith("VmRSS") else "hwm_mb"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    rows = con.execute("SELECT sum(memory_usage_bytes) / 1e6 FROM duckdb_memory()").fetchall()
    out["duckdb_mb"] = float(rows[0][0] or 0)
    return out


# The client calls the engine's per-type timing splits out, by phase.  The last three are an
# incremental run's checks for changes Stash makes without a bump: their listings grow with the rows
# they cover (every row with activity, every row's unbumped links), not with the changes.
TIMED_CLIENT_CALLS = (
    ("sweep_ids", "sweep"),
    ("count_many", "counts"),
    ("count", "counts"),
    ("latest_updated_at", "counts"),
    ("fetch_by_ids", "by_ids"),
    ("stamps", "stamps"),
    ("activity", "activity"),
    ("links", "links"),
)


def child_engine(cfg: dict[str, Any]) -> None:
    """``EntitySync`` for every spec in order on one DuckDB file: the sync without Dagster."""
    import duckdb

    from stash_pipeline.mirror.sync import EntitySync, SyncOptions, SyncRequest
    from stash_pipeline.model import ENTITY_SPECS
    from stash_pipeline.stash.client import StashClient

    profiler = None
    if cfg.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    options = SyncOptions(page_size=cfg["page_size"], prefetch=cfg["prefetch"])
    types: dict[str, Any] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    from stash_pipeline.mirror.db import writer_config

    con = duckdb.connect(cfg["db"], config=writer_config(cfg["memory_limit"]))
    if profiler:
        profiler.enable()
    with StashClient(cfg["url"], page_size=cfg["page_size"], timeout=600) as client:
        for spec in ENTITY_SPECS:
            timer = _Timer()
            sync = EntitySync(spec, client, con, options)
            # Per-phase timing through instance attributes (the engine's code is untouched).
            sync.shaper.shape = timer.wrap("shape", sync.shaper.shape)
            sync.merger.merge = timer.wrap("merge", sync.merger.merge)
            for name, phase in TIMED_CLIENT_CALLS:
                setattr(client, name, timer.wrap(phase, getattr(StashClient, name).__get__(client)))
            sync._local_ids_not_in = timer.wrap("local_ids_not_in", sync._local_ids_not_in)
            t0 = time.perf_counter()
            report = sync.run(SyncRequest(spec.name, cfg["mode"], cfg["run_id"]))
            types[spec.name] = {
                "seconds": time.perf_counter() - t0,
                "rows": report.fetched,
                "pages": report.pages,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "deleted": report.deleted,
                "skipped": report.skipped,
                "sync_type": report.sync_type,
                "phases": timer.seconds,
                # Memory after this type: resident now, the peak so far, and DuckDB's own accounting.
                **_memory(con),
            }
            for name, _phase in TIMED_CLIENT_CALLS:
                delattr(client, name)
        requests = client.requests_sent
    if profiler:
        profiler.disable()
    sync_seconds = time.perf_counter() - started
    memory = con.execute("SELECT sum(memory_usage_bytes) / 1e6 FROM duckdb_memory()").fetchall()[0][0]
    t0 = time.perf_counter()
    con.close()
    close_seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu_started
    if profiler:
        profiler.dump_stats(cfg["profile"])
    _emit(
        {
            "seconds": sync_seconds + close_seconds,
            "timed_cpu_seconds": cpu,
            "close_seconds": close_seconds,
            "types": types,
            "requests": requests,
            "duckdb_memory_mb": memory,
            "db_mb": os.path.getsize(cfg["db"]) / 1e6,
        }
    )


def child_derived(cfg: dict[str, Any]) -> None:
    """Rebuild every derived table, one by one, on a synced mirror."""
    import duckdb

    from stash_pipeline.mirror.derived import DERIVED_TABLES, rebuild

    con = duckdb.connect(cfg["db"])
    tables = {}
    started = time.perf_counter()
    for table in DERIVED_TABLES:
        t0 = time.perf_counter()
        rows = rebuild(con, table)
        tables[table.name] = {"rows": rows, "seconds": time.perf_counter() - t0}
    seconds = time.perf_counter() - started
    con.close()
    _emit({"seconds": seconds, "tables": tables})


def child_import() -> None:
    """What the CLI pays before it syncs anything: importing Dagster and building the definitions."""
    t0 = time.perf_counter()
    import stash_pipeline.definitions  # noqa: F401

    _emit({"seconds": time.perf_counter() - t0})


def child_empty_run(cfg: dict[str, Any]) -> None:
    """What bounds the fixed cost: a run of the CLI's shape with no work in it.

    The same assets (eight yearly-partitioned entity assets from the same start, computed by one
    step; eight derived ones by another), the same 32 checks in two steps, the same instance
    configuration (``dagster.yaml``, our event log) and the same planned-event setting, over every
    partition as ``sync --full`` runs, each materialization carrying as many metadata entries as a
    sync's.  The bodies only yield.  The process's wall time is the answer (its imports included,
    like the CLI's)."""
    import dagster as dg

    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    from stash_pipeline.assets.partitions import entity_partitions, range_tags
    from stash_pipeline.instance import persistent_instance
    from stash_pipeline.mirror.derived import DERIVED_TABLES
    from stash_pipeline.model import ENTITY_SPECS
    from stash_pipeline.settings import Settings

    partitions = entity_partitions(Settings.from_env().partition_start)
    names = [spec.name for spec in ENTITY_SPECS]
    derived = [table.name for table in DERIVED_TABLES]
    metadata = {f"field_{i}": i for i in range(40)}

    @dg.multi_asset(
        specs=[dg.AssetSpec(n, partitions_def=partitions) for n in names],
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def entities(context: dg.AssetExecutionContext):
        for key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key, metadata=metadata)

    @dg.multi_asset(specs=[dg.AssetSpec(n, deps=names) for n in derived], can_subset=True)
    def derived_tables(context: dg.AssetExecutionContext):
        for key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key, metadata=metadata)

    entity_checks = [
        dg.AssetCheckSpec(check, asset=n)
        for n in names
        for check in ("count_matches_stash", "no_duplicates", "links_resolve")
    ]

    @dg.multi_asset_check(specs=entity_checks, can_subset=True)
    def checks_of_entities(context: dg.AssetCheckExecutionContext):
        for key in context.selected_asset_check_keys:
            yield dg.AssetCheckResult(asset_key=key.asset_key, check_name=key.name, passed=True)

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec("consistent_with_inputs", asset=n) for n in derived], can_subset=True
    )
    def checks_of_derived(context: dg.AssetCheckExecutionContext):
        for key in context.selected_asset_check_keys:
            yield dg.AssetCheckResult(asset_key=key.asset_key, check_name=key.name, passed=True)

    defs = dg.Definitions(
        assets=[entities, derived_tables],
        asset_checks=[checks_of_entities, checks_of_derived],
        executor=dg.in_process_executor,
    )
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=persistent_instance(), tags=range_tags(partitions), raise_on_error=True
    )
    _emit({"success": result.success, "events": len(result.all_events)})


CHILDREN = {
    "floor": child_floor,
    "engine": child_engine,
    "derived": child_derived,
    "empty_run": child_empty_run,
}


# ================================================================================ parent side
@dataclass
class Proc:
    """A finished child: its answer, wall time and peak RSS (from ``wait4``)."""

    result: dict[str, Any]
    seconds: float
    maxrss_mb: float
    cpu_s: float = 0.0  # user + system CPU of the child: less sensitive than wall time to a busy machine
    server_cpu_s: float | None = None  # the fake's CPU while the child ran (the server work it caused)
    stdout: str = ""
    stderr: str = ""


def _run(command: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> Proc:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    result: dict[str, Any] = {}
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except json.JSONDecodeError:
                pass
    result["returncode"] = process.returncode
    if process.returncode not in (0, 2):
        tail = "\n".join((stdout + stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"{' '.join(command[:6])}... exited {process.returncode}:\n{tail}")
    return Proc(
        result,
        seconds,
        usage.ru_maxrss / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime,
        stdout=stdout,
        stderr=stderr,
    )


def _child(kind: str, cfg: dict[str, Any]) -> Proc:
    return _run([sys.executable, "-m", THIS, "--child", kind, json.dumps(cfg)])


@contextlib.contextmanager
def _spin_loop() -> Iterator[None]:
    """A process that only burns CPU (no memory traffic, no I/O) for the duration of the block: what
    the floor becomes when anything else at all needs a core beside the fake and the client, as the
    sync's own shaping and merging do."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def _cli_command() -> list[str]:
    script = Path(sys.executable).with_name("stash-pipeline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stash_pipeline.cli"]


class FakeServer:
    """``stash-pipeline fake-stash --port 0`` in its own process."""

    def __init__(self, scenes: int, images: int, seed: int = 1) -> None:
        command = [*_cli_command(), "fake-stash", "--port", "0", "--seed", str(seed)]
        command += ["--scenes", str(scenes), "--images", str(images)]
        started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self.url = ""
        self.counts_line = ""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("fake Stash serving"):
                self.counts_line = line.strip()
            if line.startswith("STASH_URL="):
                self.url = line.strip().split("=", 1)[1]
                break
        if not self.url:
            self.process.kill()
            raise RuntimeError("the fake Stash did not start")
        self.startup_seconds = time.perf_counter() - started
        self.maxrss_mb: float | None = None

    def cpu_seconds(self) -> float | None:
        """The fake's user + system CPU so far (Linux ``/proc``; None elsewhere)."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def charged(self, kind: str, cfg: dict[str, Any]) -> Proc:
        """``_child(kind, cfg)``, with the fake's CPU during the run noted on the result."""
        before = self.cpu_seconds()
        proc = _child(kind, cfg)
        after = self.cpu_seconds()
        if before is not None and after is not None:
            proc.server_cpu_s = after - before
        return proc

    def control(self, body: dict[str, Any]) -> Any:
        import httpx

        response = httpx.post(f"{self.url}/control", json=body, timeout=600)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        if self.process.poll() is None:
            # SIGTERM, not SIGINT: a child started from a background job inherits SIGINT ignored.
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        try:
            while True:
                pid, _status, usage = os.wait4(self.process.pid, os.WNOHANG)
                if pid:
                    self.maxrss_mb = usage.ru_maxrss / 1024
                    self.process.returncode = -1
                    return
                if time.monotonic() > deadline:
                    self.process.kill()
                    deadline = float("inf")
                time.sleep(0.05)
        except ChildProcessError:
            pass


def mutate(fake: FakeServer, changes: int, seed: int = 7) -> dict[str, int]:
    """Change ``changes`` entities through /control: per type a few single updates, the rest bulk."""
    counts = fake.control({"action": "stats"})["counts"]
    rnd = random.Random(seed)
    total_weight = sum(n for n, _f in CHANGE_MIX.values())
    done: dict[str, int] = {}
    for kind, (weight, field_name) in CHANGE_MIX.items():
        available = counts.get(kind, 0)
        n = min(available, round(changes * weight / total_weight))
        if n <= 0:
            continue
        ids = sorted(rnd.sample(range(1, available + 1), n))  # generated ids are 1..count
        singles, bulk = ids[: max(1, n // 10)], ids[max(1, n // 10) :]
        for entity_id in singles:
            fake.control(
                {
                    "action": "mutate",
                    "method": "update",
                    "args": {"kind": kind, "id": entity_id, field_name: f"bench edit {entity_id}"},
                }
            )
        for start in range(0, len(bulk), 100):
            chunk = bulk[start : start + 100]
            fake.control(
                {
                    "action": "mutate",
                    "method": "bulk_update",
                    "args": {"kind": kind, "ids": chunk, field_name: "bench bulk edit"},
                }
            )
        done[kind] = n
    return done


def warm_fake_index(fake: FakeServer) -> None:
    """Count every type by ``updated_at`` and read the stats totals once after the changes.  The
    fake rebuilds its sorted ``updated_at`` index and its totals lazily, on the first such read
    after a write (about 0.4 s and 0.3 s at 1M rows): costs of the fake, not of Stash (which scans
    an index, and sums in SQL) nor of the sync, and they would be charged to whichever incremental
    run came first."""
    from stash_pipeline.stash.client import StashClient

    since = {"updated_at": {"modifier": "GREATER_THAN", "value": "1970-01-01"}}
    with StashClient(fake.url, timeout=600) as client:
        client.count_many(dict.fromkeys(SPEC_NAMES, since))
        client.activity_totals()


@dataclass
class ScaleResult:
    scale: str
    scenes: int
    images: int
    entities: int = 0
    fake_startup_s: float = 0.0
    fake_maxrss_mb: float | None = None
    floor: Proc | None = None
    floor_contended: Proc | None = None  # the floor with a spin loop on the other core
    engine_full: Proc | None = None
    cli_full: Proc | None = None
    cli_events_full: dict[str, Any] = field(default_factory=dict)
    derived: Proc | None = None
    changes: dict[str, int] = field(default_factory=dict)
    engine_incr: Proc | None = None
    cli_incr: Proc | None = None
    cli_quiet: Proc | None = None  # a CLI sync right after the incremental one: nothing to do
    cli_events_incr: dict[str, Any] = field(default_factory=dict)
    sweep: list[tuple[int, Proc, Proc]] = field(default_factory=list)  # (page size, floor, engine)
    runs: dict[str, list[float]] = field(default_factory=dict)  # every repeat's seconds, by measure


def _cli_events(proc: Proc, dagster_home: Path) -> dict[str, Any]:
    """What the CLI run recorded in its Dagster event log (SQLite under DAGSTER_HOME): each step's
    duration, and the time and number of the per-partition events (planned and materialized)."""
    import sqlite3
    from datetime import datetime

    match = re.search(r"(?:^|\s)run ([0-9a-f-]{36})$", proc.stdout, re.MULTILINE)
    runs = dagster_home / "history" / "runs"
    db = runs / f"{match.group(1)}.db" if match else None
    if db is None and runs.is_dir():  # stdout to a file can lose the report: the newest run
        db = max(runs.glob("*.db"), key=lambda p: p.stat().st_mtime, default=None)
    if db is None or not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db)) as con:
        events = con.execute(
            "SELECT dagster_event_type, step_key, timestamp FROM event_logs ORDER BY id"
        ).fetchall()
    stamp = {}
    steps: dict[str, float] = {}
    counts: dict[str, int] = {}
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    for kind, step, text in events:
        if not text:
            continue
        at = datetime.fromisoformat(text)
        counts[kind] = counts.get(kind, 0) + 1
        first.setdefault(kind, at)
        last[kind] = at
        if kind == "STEP_START":
            stamp[step] = at
        elif kind == "STEP_SUCCESS" and step in stamp:
            steps[step] = (at - stamp[step]).total_seconds()

    def span(kind: str) -> float:
        return (last[kind] - first[kind]).total_seconds() if kind in first else 0.0

    return {
        "steps": steps,
        "planned_events": counts.get("ASSET_MATERIALIZATION_PLANNED", 0),
        "planned_seconds": span("ASSET_MATERIALIZATION_PLANNED"),
        "materializations": counts.get("ASSET_MATERIALIZATION", 0),
        "events": sum(counts.values()),
        "run_seconds": (last["PIPELINE_SUCCESS"] - first["PIPELINE_START"]).total_seconds()
        if "PIPELINE_SUCCESS" in last and "PIPELINE_START" in first
        else None,
    }


def run_cli(url: str, workdir: Path, page_size: int, full: bool, extra: tuple[str, ...] = ()) -> Proc:
    env = os.environ.copy()
    env.update(
        {
            "STASH_URL": url,
            "STASH_PAGE_SIZE": str(page_size),
            "STASH_PIPELINE_DB": str(workdir / "cli.duckdb"),
            "DAGSTER_HOME": str(workdir / "dagster_home"),
        }
    )
    env.pop("STASH_API_KEY", None)
    (workdir / "dagster_home").mkdir(exist_ok=True)
    command = [*_cli_command(), "sync"] + (["--full"] if full else []) + list(extra)
    return _run(command, env=env, cwd=str(workdir))


def _best(res: ScaleResult, measure: str, procs: list[Proc]) -> Proc:
    """The fastest of repeated runs (every run's time kept for the report)."""
    res.runs[measure] = [p.result["seconds"] for p in procs]
    return min(procs, key=lambda p: p.result["seconds"])


def run_scale(scale: str, scenes: int, images: int, args: argparse.Namespace, workdir: Path) -> ScaleResult:
    res = ScaleResult(scale, scenes, images)
    log = _logger(scale)
    log(f"starting the fake Stash ({scenes:,} scenes, {images:,} images)")
    fake = FakeServer(scenes, images)
    try:
        res.fake_startup_s = fake.startup_seconds
        counts = fake.control({"action": "stats"})["counts"]
        res.entities = sum(counts.values())
        log(f"fake up in {fake.startup_seconds:.1f}s: {counts}")
        base = {
            "url": fake.url,
            "page_size": args.page_size,
            "prefetch": args.prefetch,
            "memory_limit": args.memory_limit,
        }
        engine_db = workdir / f"engine-{scale}.duckdb"
        log(
            f"floor (download and parse every page) and bare-engine full sync (on a fresh file), "
            f"alternated, best of {args.repeat} each"
        )
        floors, fulls = [], []
        for _ in range(args.repeat):  # alternated: a machine that slows down slows both alike
            floors.append(fake.charged("floor", base))
            engine_db.unlink(missing_ok=True)
            fulls.append(
                fake.charged(
                    "engine",
                    {
                        **base,
                        "db": str(engine_db),
                        "mode": "full",
                        "run_id": f"bench-full-{scale}",
                        "profile": args.profile if scale == args.profile_scale else None,
                    },
                )
            )
        res.floor = _best(res, "floor", floors)
        res.engine_full = _best(res, "engine_full", fulls)
        log(f"floor {res.floor.result['seconds']:.1f}s")
        log("floor again, with a spin loop busy on the other core (for reference, not a goal)")
        with _spin_loop():
            res.floor_contended = fake.charged("floor", base)
        log(f"contended floor {res.floor_contended.result['seconds']:.1f}s")
        log(f"engine full {res.engine_full.result['seconds']:.1f}s, {res.engine_full.maxrss_mb:,.0f} MB")
        if not args.skip_derived:
            log("derived tables")
            res.derived = _child("derived", {"db": str(engine_db)})
            log(f"derived {res.derived.result['seconds']:.1f}s")
        if not args.skip_cli:
            # Best of --repeat, as the bare engine's full sync it is compared with (each into a new
            # mirror and Dagster home); the fastest one's mirror goes on to the incremental runs.
            log(f"CLI: stash-pipeline sync --full (best of {args.repeat}, each into a new mirror)")
            tries: list[tuple[Proc, Path]] = []
            for attempt in range(args.repeat):
                tried = workdir / f"cli-{scale}-{attempt}"
                tried.mkdir()
                tries.append((run_cli(fake.url, tried, args.page_size, full=True), tried))
            res.runs["cli_full"] = [p.seconds for p, _ in tries]
            res.cli_full, cli_dir = min(tries, key=lambda t: t[0].seconds)
            for _, tried in tries:
                if tried != cli_dir:
                    shutil.rmtree(tried)
            res.cli_events_full = _cli_events(res.cli_full, cli_dir / "dagster_home")
            log(f"CLI full {res.cli_full.seconds:.1f}s, {res.cli_full.maxrss_mb:,.0f} MB")
        log(f"mutating {args.changes} entities through /control")
        res.changes = mutate(fake, args.changes)
        warm_fake_index(fake)
        log(f"bare engine: incremental sync (best of {args.repeat}, each from the same synced file)")
        synced = engine_db.with_suffix(".synced")
        shutil.copyfile(engine_db, synced)  # closed cleanly by its last writer: no WAL beside it
        incrs = []
        for _ in range(args.repeat):
            shutil.copyfile(synced, engine_db)
            Path(f"{engine_db}.wal").unlink(missing_ok=True)
            incrs.append(
                _child(
                    "engine",
                    {**base, "db": str(engine_db), "mode": "incremental", "run_id": f"bench-incr-{scale}"},
                )
            )
        synced.unlink()
        res.engine_incr = _best(res, "engine_incr", incrs)
        log(f"engine incremental {res.engine_incr.result['seconds']:.2f}s")
        if not args.skip_cli:
            log("CLI: stash-pipeline sync (incremental)")
            res.cli_incr = run_cli(fake.url, cli_dir, args.page_size, full=False)
            res.cli_events_incr = _cli_events(res.cli_incr, cli_dir / "dagster_home")
            log(f"CLI incremental {res.cli_incr.seconds:.1f}s")
            log("CLI: stash-pipeline sync that finds nothing (the derived tables stay as they are)")
            res.cli_quiet = run_cli(fake.url, cli_dir, args.page_size, full=False)
            log(f"CLI no-change {res.cli_quiet.seconds:.1f}s")
        for size in args.page_sizes:
            log(f"page size {size}: floor and bare-engine full sync")
            cfg = {**base, "page_size": size}
            floor = _child("floor", cfg)
            db = workdir / f"sweep-{scale}-{size}.duckdb"
            engine = _child("engine", {**cfg, "db": str(db), "mode": "full", "run_id": f"bench-ps{size}"})
            db.unlink(missing_ok=True)
            res.sweep.append((size, floor, engine))
            log(
                f"page size {size}: floor {floor.result['seconds']:.1f}s, engine {engine.result['seconds']:.1f}s"
            )
    finally:
        fake.close()
        res.fake_maxrss_mb = fake.maxrss_mb
    return res


def run_fixed_cost(args: argparse.Namespace, workdir: Path) -> "list[Row]":
    """Dagster's fixed cost: the CLI's full sync of a library of 50 scenes (every type, the
    derived tables, the checks), then an incremental run that finds nothing, each best of
    ``--repeat`` (fresh files for each full sync)."""
    log = _logger("fixed")
    scenes, images = FIXED_LIBRARY
    fake = FakeServer(scenes, images)
    try:
        fulls, quiet, forced, empties = [], [], [], []
        for attempt in range(args.repeat):
            cli_dir = workdir / f"cli-fixed-{attempt}"
            cli_dir.mkdir()
            fulls.append(run_cli(fake.url, cli_dir, args.page_size, full=True))
            quiet.append(run_cli(fake.url, cli_dir, args.page_size, full=False))
            forced.append(run_cli(fake.url, cli_dir, args.page_size, full=False, extra=("--always-run",)))
            empties.append(run_empty(workdir / f"empty-run-{attempt}"))
        full = min(fulls, key=lambda p: p.seconds)
        nochange = min(quiet, key=lambda p: p.seconds)
        made = min(forced, key=lambda p: p.seconds)
        empty = min(empties, key=lambda p: p.seconds)
        events_full = _cli_events(full, workdir / f"cli-fixed-{fulls.index(full)}" / "dagster_home")
        events_made = _cli_events(made, workdir / f"cli-fixed-{forced.index(made)}" / "dagster_home")
        log(
            f"full {', '.join(f'{p.seconds:.2f}' for p in fulls)} s; "
            f"no change {', '.join(f'{p.seconds:.2f}' for p in quiet)} s; "
            f"no change, run anyway {', '.join(f'{p.seconds:.2f}' for p in forced)} s; "
            f"empty run of the same shape {', '.join(f'{p.seconds:.2f}' for p in empties)} s"
        )
    finally:
        fake.close()
    return [
        Row(
            f"fixed cost: CLI sync --full of {scenes} scenes ({events_full.get('events', '?')} events, "
            f"{len(events_full.get('steps', {}))} steps)",
            None,
            full.seconds,
            full.maxrss_mb,
            goal=f"<= {GOAL_FIXED_FULL_S:.0f} s",
            ok=full.seconds <= GOAL_FIXED_FULL_S,
            cpu=full.cpu_s,
        ),
        Row(
            f"  bound: a run of the same shape with no work ({empty.result.get('events', '?')} events)",
            None,
            empty.seconds,
            empty.maxrss_mb,
            f"{full.seconds / empty.seconds:.2f}x of it: the full sync",
            cpu=empty.cpu_s,
        ),
        Row(
            f"fixed cost: CLI sync that finds nothing ({_quiet_label(nochange)})",
            None,
            nochange.seconds,
            nochange.maxrss_mb,
            goal=f"<= {GOAL_FIXED_NOCHANGE_S:.0f} s",
            ok=nochange.seconds <= GOAL_FIXED_NOCHANGE_S,
            cpu=nochange.cpu_s,
        ),
        Row(
            f"fixed cost: the same, run anyway (--always-run: {events_made.get('events', '?')} events)",
            None,
            made.seconds,
            made.maxrss_mb,
            cpu=made.cpu_s,
        ),
    ]


def run_empty(workdir: Path) -> Proc:
    """``child_empty_run`` in a fresh ``DAGSTER_HOME``, started as the CLI is."""
    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STASH_", "DAGSTER_"))}
    env["DAGSTER_HOME"] = str(home)
    return _run([sys.executable, "-m", THIS, "--child", "empty_run", "{}"], env=env, cwd=str(workdir))


def _quiet_label(proc: Proc) -> str:
    """Whether the CLI's probe proved the sync had nothing to do (no run), or why it ran."""
    if "nothing to run" in proc.stdout:
        return "the probe proved it: one request, no run"
    why = next((line for line in proc.stdout.splitlines() if line.startswith("probe: ")), "")
    return f"a run{': ' + why[7:80] if why else ''}"


def _logger(scale: str) -> Any:
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{scale} {time.perf_counter() - started:7.1f}s] {message}", flush=True)

    return log


# ================================================================================ report
@dataclass
class Row:
    measure: str
    items: int | None = None
    seconds: float | None = None
    peak_mb: float | None = None
    ratio: str = ""
    goal: str = ""
    ok: bool | None = None
    cpu: float | None = None  # CPU seconds (user + system) of the process


def _ok(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "NO")


def rows_for(res: ScaleResult) -> list[Row]:
    rows: list[Row] = []
    tag = f"{res.scale}"
    n = res.entities
    rows.append(
        Row(f"[{tag}] fake Stash: generate + start (own process)", n, res.fake_startup_s, res.fake_maxrss_mb)
    )
    floor_s = res.floor.result["seconds"] if res.floor else None
    if res.floor:
        rows.append(Row(f"[{tag}] floor: download + parse all pages", n, floor_s, res.floor.maxrss_mb))
        rows[-1].cpu = res.floor.cpu_s
    if res.floor_contended and floor_s:
        fc = res.floor_contended
        fc_s = fc.result["seconds"]
        rows.append(
            Row(
                f"[{tag}]   the same, a spin loop busy on the other core (reference)",
                n,
                fc_s,
                fc.maxrss_mb,
                f"{fc_s / floor_s:.2f}x floor",
                cpu=fc.cpu_s,
            )
        )
    if res.engine_full:
        e = res.engine_full
        ratio = e.result["seconds"] / floor_s if floor_s else None
        rows.append(
            Row(
                f"[{tag}] bare engine full sync (EntitySync x7)",
                n,
                e.result["seconds"],
                e.maxrss_mb,
                f"{ratio:.2f}x floor" if ratio else "",
                f"<= {GOAL_FLOOR_RATIO}x floor",
                ratio <= GOAL_FLOOR_RATIO if ratio else None,
                cpu=e.cpu_s,
            )
        )
    rows += _cpu_rows(res, tag)
    if res.cli_full:
        c = res.cli_full
        steps = sum(v for k, v in res.cli_events_full.get("steps", {}).items() if k in _ENTITY_NAMES)
        ratio = c.seconds / floor_s if floor_s else None
        large = res.scale == "large"
        rows.append(
            Row(
                f"[{tag}] CLI sync --full (process wall, incl. derived; best of {len(res.runs.get('cli_full', [])) or 1})",
                n,
                c.seconds,
                c.maxrss_mb,
                f"{ratio:.2f}x floor" if ratio else "",
                f"<= {GOAL_CLI_FLOOR_RATIO}x floor" + ("" if large else " (large scale)"),
                ratio <= GOAL_CLI_FLOOR_RATIO if ratio and large else None,
                cpu=c.cpu_s,
            )
        )
        if res.engine_full:
            dagster_s = c.seconds - res.engine_full.result["seconds"]
            rows.append(
                Row(
                    f"[{tag}]   Dagster's cost: CLI full minus the bare engine's full sync",
                    None,
                    dagster_s,
                    goal=f"<= {GOAL_DAGSTER_S:.0f} s",
                    ok=dagster_s <= GOAL_DAGSTER_S,
                )
            )
        ev = res.cli_events_full
        if steps:
            rows.append(
                Row(
                    f"[{tag}]   of which entity steps (Dagster step times)",
                    n,
                    steps,
                    None,
                    f"{steps / floor_s:.2f}x floor" if floor_s else "",
                )
            )
        if ev.get("planned_events"):
            rows.append(
                Row(
                    f"[{tag}]   of which recording {ev['planned_events']} planned-materialization events",
                    None,
                    ev["planned_seconds"],
                )
            )
    if res.derived:
        d = res.derived
        rows.append(
            Row(
                f"[{tag}] derived: rebuild all {len(d.result['tables'])} tables",
                None,
                d.result["seconds"],
                d.maxrss_mb,
                goal=f"< {GOAL_DERIVED_S:.0f} s",
                ok=d.result["seconds"] < GOAL_DERIVED_S,
                cpu=d.cpu_s,
            )
        )
    changes = sum(res.changes.values())
    if res.engine_incr:
        rows.append(
            Row(
                f"[{tag}] bare engine incremental ({changes} changes)",
                _fetched(res.engine_incr),
                res.engine_incr.result["seconds"],
                res.engine_incr.maxrss_mb,
                cpu=res.engine_incr.cpu_s,
            )
        )
        phases: dict[str, float] = {}
        for t in res.engine_incr.result["types"].values():
            for phase, seconds in t["phases"].items():
                phases[phase] = phases.get(phase, 0.0) + seconds
        rows.append(
            Row(
                f"[{tag}]   of which shape + merge (the engine's own work); counts: "
                f"{phases.get('counts', 0):.2f} s (server-side)",
                None,
                phases.get("shape", 0) + phases.get("merge", 0),
            )
        )
        rows.append(
            Row(
                f"[{tag}]   of which the no-bump listings: activity (every row with plays or O counts) "
                f"{phases.get('activity', 0):.2f} s, links {phases.get('links', 0):.2f} s, "
                f"stamps {phases.get('stamps', 0):.2f} s",
                None,
                phases.get("activity", 0) + phases.get("links", 0) + phases.get("stamps", 0),
            )
        )
    if res.cli_incr:
        rows.append(
            Row(
                f"[{tag}] CLI sync incremental ({changes} changes, incl. derived)",
                None,
                res.cli_incr.seconds,
                res.cli_incr.maxrss_mb,
                cpu=res.cli_incr.cpu_s,
            )
        )
        ev = res.cli_events_incr
        steps = sum(v for k, v in ev.get("steps", {}).items() if k in _ENTITY_NAMES)
        if steps:
            rows.append(
                Row(
                    f"[{tag}]   of which entity steps ({ev['planned_events']} planned events, "
                    f"{ev['planned_seconds']:.1f} s)",
                    None,
                    steps,
                )
            )
    if res.cli_quiet:
        rows.append(
            Row(
                f"[{tag}] CLI sync that finds nothing ({_quiet_label(res.cli_quiet)})",
                None,
                res.cli_quiet.seconds,
                res.cli_quiet.maxrss_mb,
                cpu=res.cli_quiet.cpu_s,
            )
        )
    return rows


def _cpu_rows(res: ScaleResult, tag: str) -> list[Row]:
    """Where the engine's time goes on this machine, from CPU seconds: the fake's work in the floor
    and in the engine's run (the same requests), and the shortest wall time the engine's run could
    have on this many cores if nothing slowed the fake and every part overlapped perfectly."""
    floor, engine = res.floor, res.engine_full
    if not (floor and engine and floor.server_cpu_s and engine.server_cpu_s is not None):
        return []
    floor_s = floor.result["seconds"]
    cores = os.cpu_count() or 1
    # The CPU of the timed part (the child's own CPU also counts its imports).
    bound = max(floor_s, (floor.server_cpu_s + engine.result["timed_cpu_seconds"]) / cores)
    return [
        Row(
            f"[{tag}]   the fake's CPU: {floor.server_cpu_s:.2f} s in the floor, "
            f"{engine.server_cpu_s:.2f} s in this run",
            None,
            engine.server_cpu_s,
            ratio=f"{engine.server_cpu_s / floor.server_cpu_s:.2f}x floor's",
        ),
        Row(
            f"[{tag}]   best possible on {cores} cores: (fake's floor CPU + engine's "
            f"{engine.result['timed_cpu_seconds']:.2f} s CPU) / {cores}",
            None,
            bound,
            ratio=f"{bound / floor_s:.2f}x floor",
        ),
    ]


_ENTITY_NAMES = ("stash_entities",)  # the one step that syncs every entity type


def _step(events: dict[str, Any], name: str) -> str:
    steps = events.get("steps", {})
    return f"{steps[name]:.2f}" if name in steps else ""


def _fetched(proc: Proc) -> int:
    return sum(t["rows"] for t in proc.result["types"].values())


def compare_rows(ref: ScaleResult, big: ScaleResult) -> list[Row]:
    rows = []
    for label, a, b in (
        ("bare engine full sync", ref.engine_full, big.engine_full),
        ("CLI sync --full", ref.cli_full, big.cli_full),
    ):
        if a and b:
            ratio = b.maxrss_mb / a.maxrss_mb
            rows.append(
                Row(
                    f"peak RSS {label}: {big.scale} / {ref.scale}",
                    None,
                    None,
                    b.maxrss_mb,
                    f"{ratio:.2f}x",
                    f"<= {GOAL_RSS_RATIO}x",
                    ratio <= GOAL_RSS_RATIO,
                )
            )
    for label, a, b in (
        ("bare engine incremental", ref.engine_incr, big.engine_incr),
        ("CLI incremental", ref.cli_incr, big.cli_incr),
    ):
        if a and b:
            sa = a.result.get("seconds", a.seconds)
            sb = b.result.get("seconds", b.seconds)
            ratio = sb / sa
            rows.append(
                Row(
                    f"{label} time: {big.scale} / {ref.scale}",
                    None,
                    sb,
                    None,
                    f"{ratio:.2f}x",
                    f"<= {GOAL_INCREMENTAL_RATIO}x",
                    ratio <= GOAL_INCREMENTAL_RATIO,
                )
            )
    if ref.engine_incr and big.engine_incr:
        # The activity listing covers every row with plays or O counts, so it grows with the
        # library; the rest of the run grows with the changes.
        sa, sb = (_without_activity(p) for p in (ref.engine_incr, big.engine_incr))
        rows.append(
            Row(
                f"  the same without the activity listing: {big.scale} / {ref.scale}",
                None,
                sb,
                None,
                f"{sb / sa:.2f}x",
            )
        )
    return rows


def _without_activity(proc: Proc) -> float:
    listed = sum(t["phases"].get("activity", 0.0) for t in proc.result["types"].values())
    return proc.result["seconds"] - listed


def print_table(title: str, headers: tuple[str, ...], table: list[tuple[str, ...]]) -> None:
    print(f"\n{title}")
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def print_main(rows: list[Row]) -> None:
    table = [
        (
            r.measure,
            f"{r.items:,}" if r.items is not None else "",
            f"{r.seconds:.2f}" if r.seconds is not None else "",
            f"{r.cpu:.1f}" if r.cpu is not None else "",
            f"{r.items / r.seconds:,.0f}" if r.items and r.seconds else "",
            f"{r.peak_mb:,.0f} MB" if r.peak_mb is not None else "",
            r.ratio,
            r.goal,
            _ok(r.ok),
        )
        for r in rows
    ]
    print_table(
        "RESULTS (seconds: wall; cpu s: the process's user + system CPU)",
        ("measure", "entities", "seconds", "cpu s", "entities/s", "peak RSS", "ratio", "goal", "ok"),
        table,
    )


def print_details(res: ScaleResult) -> None:
    if res.runs:
        every = "; ".join(f"{k} {', '.join(f'{x:.2f}' for x in v)}" for k, v in res.runs.items())
        print(f"\n[{res.scale}] every run (s; the fastest of each counts): {every}")
    if res.floor and res.engine_full:
        table = []
        phases_seen: list[str] = []
        for t in res.engine_full.result["types"].values():
            for p in t["phases"]:
                if p not in phases_seen:
                    phases_seen.append(p)
        for name, t in res.engine_full.result["types"].items():
            f = res.floor.result["types"].get(name, {})
            table.append(
                (
                    name,
                    f"{t['rows']:,}",
                    str(t["pages"]),
                    f"{f.get('seconds', 0):.2f}",
                    f"{t['seconds']:.2f}",
                    f"{t['seconds'] / f['seconds']:.2f}x" if f.get("seconds") else "",
                    *(f"{t['phases'].get(p, 0):.2f}" for p in phases_seen),
                    _step(res.cli_events_full, name),
                    f"{t.get('rss_mb', 0):,.0f}/{t.get('hwm_mb', 0):,.0f}/{t.get('duckdb_mb', 0):,.0f}",
                )
            )
        e = res.engine_full.result
        table.append(
            (
                "(close/checkpoint)",
                "",
                "",
                "",
                f"{e['close_seconds']:.2f}",
                "",
                *("" for _ in phases_seen),
                "",
                "",
            )
        )
        print_table(
            f"[{res.scale}] full sync per type (seconds; DuckDB file {e['db_mb']:,.0f} MB, DuckDB memory at end {e['duckdb_memory_mb'] or 0:,.0f} MB)",
            (
                "type",
                "rows",
                "pages",
                "floor",
                "engine",
                "ratio",
                *phases_seen,
                "CLI step",
                "MB rss/peak/duckdb",
            ),
            table,
        )
    if res.engine_incr:
        table = []
        for name, t in res.engine_incr.result["types"].items():
            table.append(
                (
                    name,
                    t["sync_type"] + (" (skip)" if t["skipped"] else ""),
                    f"{t['rows']:,}",
                    str(t["updated"]),
                    str(t["created"]),
                    f"{t['seconds']:.3f}",
                    ", ".join(f"{k} {v:.3f}" for k, v in t["phases"].items()),
                    _step(res.cli_events_incr, name),
                )
            )
        print_table(
            f"[{res.scale}] incremental sync of {sum(res.changes.values())} changes {res.changes}",
            ("type", "mode", "fetched", "updated", "created", "engine s", "phases", "CLI step"),
            table,
        )
    if res.derived:
        table = [
            (name, f"{t['rows']:,}", f"{t['seconds']:.2f}")
            for name, t in res.derived.result["tables"].items()
        ]
        derived_names = set(res.derived.result["tables"])
        cli = {k: v for k, v in res.cli_events_full.get("steps", {}).items() if k in derived_names}
        if cli:
            table.append(("(CLI: the derived steps, Dagster step times)", "", f"{sum(cli.values()):.2f}"))
        print_table(
            f"[{res.scale}] derived tables (mirror.derived.rebuild)", ("table", "rows", "seconds"), table
        )
    if res.sweep:
        table = []
        for size, floor, engine in res.sweep:
            fs, es = floor.result["seconds"], engine.result["seconds"]
            table.append(
                (
                    str(size),
                    f"{fs:.2f}",
                    f"{res.entities / fs:,.0f}",
                    f"{floor.maxrss_mb:,.0f} MB",
                    f"{es:.2f}",
                    f"{res.entities / es:,.0f}",
                    f"{engine.maxrss_mb:,.0f} MB",
                    f"{es / fs:.2f}x",
                )
            )
        print_table(
            f"[{res.scale}] page size (floor and bare-engine full sync)",
            (
                "page size",
                "floor s",
                "floor ent/s",
                "floor RSS",
                "engine s",
                "engine ent/s",
                "engine RSS",
                "ratio",
            ),
            table,
        )


def to_json(res: ScaleResult) -> dict[str, Any]:
    def proc(p: Proc | None) -> dict[str, Any] | None:
        if p is None:
            return None
        return {
            "wall_seconds": p.seconds,
            "cpu_seconds": p.cpu_s,
            "server_cpu_seconds": p.server_cpu_s,
            "maxrss_mb": p.maxrss_mb,
            **p.result,
        }

    return {
        "scale": res.scale,
        "scenes": res.scenes,
        "images": res.images,
        "entities": res.entities,
        "fake_startup_s": res.fake_startup_s,
        "fake_maxrss_mb": res.fake_maxrss_mb,
        "floor": proc(res.floor),
        "floor_contended": proc(res.floor_contended),
        "engine_full": proc(res.engine_full),
        "cli_full": proc(res.cli_full),
        "cli_events_full": res.cli_events_full,
        "derived": proc(res.derived),
        "changes": res.changes,
        "engine_incr": proc(res.engine_incr),
        "cli_incr": proc(res.cli_incr),
        "cli_quiet": proc(res.cli_quiet),
        "cli_events_incr": res.cli_events_incr,
        "page_sizes": [{"page_size": s, "floor": proc(f), "engine": proc(e)} for s, f, e in res.sweep],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--scenes", type=int, default=None, help="override the scale's scene count")
    parser.add_argument("--images", type=int, default=None, help="override the scale's image count")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument(
        "--prefetch", type=int, default=1, help="SyncOptions.prefetch of the bare engine (0: no threads)"
    )
    parser.add_argument("--changes", type=int, default=CHANGES)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of the floor, of the engine's full and incremental syncs and of the CLI's full "
        "sync; the fastest counts",
    )
    parser.add_argument(
        "--memory-limit",
        default=None,
        help="DuckDB memory_limit of the bare engine's connection (default: the product's, "
        "STASH_DUCKDB_MEMORY_LIMIT's default; DuckDB's own default is 80%% of RAM)",
    )
    parser.add_argument(
        "--page-sizes",
        default="",
        help="comma-separated page sizes for an extra floor + bare-engine comparison, e.g. 500,1000,2000,5000",
    )
    parser.add_argument("--skip-cli", action="store_true", help="skip the `stash-pipeline sync` runs")
    parser.add_argument("--skip-derived", action="store_true")
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="with --scale large, do not run the default scale first (no RSS / incremental ratios)",
    )
    parser.add_argument("--profile", default=None, help="cProfile the bare-engine full sync into this file")
    parser.add_argument("--json", default=None, help="also write the raw results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (DuckDB files)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_limit is None:
        from stash_pipeline.settings import Settings

        args.memory_limit = Settings.duckdb_memory_limit

    if args.child:
        kind, cfg = args.child
        if kind == "import":
            child_import()
        else:
            CHILDREN[kind](json.loads(cfg))
        return 0

    args.page_sizes = [int(s) for s in args.page_sizes.split(",") if s.strip()]
    scenes, images = SCALES[args.scale]
    scenes = args.scenes if args.scenes is not None else scenes
    images = args.images if args.images is not None else images
    args.profile_scale = args.scale
    plan: list[tuple[str, int, int]] = []
    if args.scale != "default" and not args.no_reference:
        plan.append(("default", *SCALES["default"]))
    plan.append((args.scale, scenes, images))

    workdir = Path(tempfile.mkdtemp(prefix="bench_sync_"))
    results: list[ScaleResult] = []
    try:
        cli_import = None if args.skip_cli else _run([sys.executable, "-m", THIS, "--child", "import", "{}"])
        fixed_rows = [] if args.skip_cli else run_fixed_cost(args, workdir)
        for scale, s, i in plan:
            # The reference run needs no page-size sweep.
            sub = argparse.Namespace(**vars(args))
            if scale != args.scale:
                sub.page_sizes = []
            results.append(run_scale(scale, s, i, sub, workdir))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    rows: list[Row] = list(fixed_rows)
    if cli_import:
        rows.append(
            Row(
                "CLI start-up: import dagster + build definitions",
                None,
                cli_import.result["seconds"],
                cli_import.maxrss_mb,
            )
        )
    for res in results:
        rows += rows_for(res)
    if len(results) == 2:
        rows += compare_rows(results[0], results[1])
    for res in results:
        print_details(res)
    print_main(rows)
    if args.json:
        Path(args.json).write_text(json.dumps([to_json(r) for r in results], indent=1, default=str))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
