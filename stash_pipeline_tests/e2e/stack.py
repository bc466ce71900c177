"""Real Dagster processes for the end-to-end tests: webserver + daemon on 127.0.0.1, a temporary
``DAGSTER_HOME`` holding the project's ``dagster.yaml``, and a small client for Dagster's GraphQL API.

Everything here polls with a deadline (``wait_until``); nothing sleeps a fixed time and hopes.
The query shapes follow ``dagster_graphql`` 1.13 (``dagster_graphql/schema/`` and
``dagster_graphql/client/client_queries.py``).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import httpx

from stash_pipeline.instance import instance_yaml
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline_tests.expected_mirror import (
    LINKS,
    SCALARS,
    actual_entity_rows,
    actual_link_rows,
    entity_row_differences,
    expected_entity_rows,
    expected_link_rows,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = str(PROJECT_ROOT / "workspace.yaml")
LOCATION = "stash_pipeline"
REPOSITORY = "__repository__"  # the implicit repository of a ``Definitions`` object
ACTIVE = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")

T = TypeVar("T")


class E2EError(AssertionError):
    """A readable failure of the end-to-end machinery (a process died, a deadline passed)."""


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.5,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"; {describe()}" if describe else ""
            raise E2EError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise E2EError(f"{path} is missing: install the project with `pip install -e '.[dev]'`")
    return str(path)


# ---------------------------------------------------------------------------------------- processes
@dataclass
class DagsterProcesses:
    """``dagster-webserver`` and ``dagster-daemon`` as subprocesses, each in its own process group
    (so their code servers and run workers die with them)."""

    home: Path
    workdir: Path
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def create(
        cls, home: Path, workdir: Path, log_dir: Path, stash_env: dict[str, str]
    ) -> "DagsterProcesses":
        for path in (home, workdir, log_dir):
            path.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(instance_yaml(home))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STASH_", "DAGSTER_"))}
        env.update(stash_env)
        env.update(
            DAGSTER_HOME=str(home),
            PYTHONUNBUFFERED="1",
            # the fake has no API key (and refuses one sent to it); empty also wins over any .env
            STASH_API_KEY="",
        )
        return cls(home=home, workdir=workdir, env=env, log_dir=log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def migrate(self) -> None:
        """Initialise the sqlite storage once: parallel first use of a fresh home races."""
        result = subprocess.run(
            [_bin("dagster"), "instance", "migrate"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        (self.log_dir / "migrate.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise E2EError(f"dagster instance migrate failed:\n{result.stdout}\n{result.stderr}")

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.procs[name] = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def start_webserver(self) -> None:
        self._start(
            "webserver",
            [_bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-w", WORKSPACE],
        )

    def start_daemon(self) -> None:
        self._start("daemon", [_bin("dagster-daemon"), "run", "-w", WORKSPACE])

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise E2EError(f"dagster {name} exited with code {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for_webserver(self, timeout: float = 120) -> None:
        def ready() -> bool:
            self.check_alive()
            try:
                return httpx.get(self.url + "/server_info", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(
            ready, timeout, "the webserver's /server_info", describe=lambda: self.log_tail("webserver")
        )

    def stop(self, timeout: float = 20) -> list[str]:
        """SIGTERM each process group, then SIGKILL what is left; returns the names that needed it."""
        killed = []
        for proc in self.procs.values():
            if proc.poll() is None:
                with _gone():
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(name)
            # the group may outlive its leader (code servers, run workers): always sweep it
            with _gone():
                os.killpg(proc.pid, signal.SIGKILL)
            with _gone():
                proc.wait(timeout=5)
        return killed

    def save_logs(self, target: Path) -> None:
        """The processes' logs and the whole instance (run and event storage, compute logs)."""
        target.mkdir(parents=True, exist_ok=True)
        for path in self.log_dir.glob("*.log"):
            shutil.copy(path, target / path.name)
        shutil.copytree(self.home, target / "dagster_home", dirs_exist_ok=True)


def _gone() -> contextlib.suppress:
    """Signalling or reaping a process that is already gone is fine."""
    return contextlib.suppress(ProcessLookupError, PermissionError, subprocess.TimeoutExpired)


# ---------------------------------------------------------------------------------------- GraphQL
RUN_FIELDS = """
  runId status jobName creationTime startTime endTime
  tags { key value }
  assetSelection { path }
"""

METADATA_FIELDS = """
  label
  __typename
  ... on IntMetadataEntry { intValue }
  ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text }
  ... on BoolMetadataEntry { boolValue }
  ... on JsonMetadataEntry { jsonString }
"""


def _metadata(entries: Iterable[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in entries:
        for key in ("intValue", "floatValue", "text", "boolValue", "jsonString"):
            if key in e:
                out[e["label"]] = e[key]
                break
        else:
            out[e["label"]] = e["__typename"]
    return out


class DagsterGraphQL:
    """Just the calls the tests need, against ``<webserver>/graphql``."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=60)

    def close(self) -> None:
        self.client.close()

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post("/graphql", json={"query": query, "variables": variables or {}})
        if response.status_code != 200:
            raise E2EError(f"Dagster GraphQL HTTP {response.status_code}: {response.text[:2000]}")
        body = response.json()
        if body.get("errors"):
            raise E2EError(f"Dagster GraphQL errors: {body['errors']}")
        return body["data"]

    @staticmethod
    def _expect(result: dict, typename: str, what: str) -> dict:
        if result.get("__typename") != typename:
            raise E2EError(f"{what} failed: {result}")
        return result

    # ------------------------------------------------------------------ code location
    def location_loaded(self) -> bool:
        data = self.query(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries {
                 name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        for entry in data["workspaceOrError"].get("locationEntries", []):
            if entry["name"] != LOCATION or entry["loadStatus"] != "LOADED":
                continue
            outcome = entry["locationOrLoadError"] or {}
            if outcome.get("__typename") == "PythonError":
                raise E2EError(f"the code location failed to load: {outcome['message']}")
            return outcome.get("__typename") == "RepositoryLocation"
        return False

    def daemons_healthy(self, needed: Iterable[str]) -> dict[str, bool]:
        data = self.query(
            "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
        )
        statuses = {
            d["daemonType"]: d["healthy"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]
        }
        return {name: bool(statuses.get(name)) for name in needed}

    def _selector(self, **extra: str) -> dict[str, str]:
        return {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION, **extra}

    # ------------------------------------------------------------------ sensors and schedules
    def sensor_state(self, name: str) -> dict:
        data = self.query(
            """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename
                 ... on Sensor { name sensorState { id status } }
                 ... on PythonError { message } ... on SensorNotFoundError { message } } }""",
            {"s": self._selector(sensorName=name)},
        )
        return self._expect(data["sensorOrError"], "Sensor", f"looking up sensor {name}")["sensorState"]

    def sensor_ticks(self, name: str, after: float) -> list[dict]:
        """The sensor's ticks since ``after`` (epoch seconds), newest first."""
        data = self.query(
            """query($s: SensorSelector!, $after: Float) { sensorOrError(sensorSelector: $s) { __typename
                 ... on Sensor { sensorState { ticks(afterTimestamp: $after, limit: 20) {
                   status timestamp skipReason runIds error { message } } } }
                 ... on PythonError { message } ... on SensorNotFoundError { message } } }""",
            {"s": self._selector(sensorName=name), "after": after},
        )
        return self._expect(data["sensorOrError"], "Sensor", f"reading the ticks of {name}")["sensorState"][
            "ticks"
        ]

    def stop_sensor(self, name: str) -> None:
        state = self.sensor_state(name)
        data = self.query(
            """mutation($id: String) { stopSensor(id: $id) { __typename
                 ... on StopSensorMutationResult { instigationState { status } }
                 ... on PythonError { message } ... on UnauthorizedError { message } } }""",
            {"id": state["id"]},
        )
        self._expect(data["stopSensor"], "StopSensorMutationResult", f"stopping sensor {name}")

    def start_sensor(self, name: str) -> None:
        data = self.query(
            """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
                 ... on Sensor { sensorState { status } }
                 ... on PythonError { message } ... on UnauthorizedError { message } } }""",
            {"s": self._selector(sensorName=name)},
        )
        self._expect(data["startSensor"], "Sensor", f"starting sensor {name}")

    def stop_schedule(self, name: str) -> None:
        data = self.query(
            """query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { __typename
                 ... on Schedule { scheduleState { id status } } ... on PythonError { message } } }""",
            {"s": self._selector(scheduleName=name)},
        )
        state = self._expect(data["scheduleOrError"], "Schedule", f"looking up schedule {name}")[
            "scheduleState"
        ]
        if state["status"] != "RUNNING":
            return
        data = self.query(
            """mutation($id: String) { stopRunningSchedule(id: $id) { __typename
                 ... on ScheduleStateResult { scheduleState { status } }
                 ... on PythonError { message } ... on UnauthorizedError { message } } }""",
            {"id": state["id"]},
        )
        self._expect(data["stopRunningSchedule"], "ScheduleStateResult", f"stopping schedule {name}")

    # ------------------------------------------------------------------ runs
    def launch_run(
        self,
        job: str,
        *,
        tags: dict[str, str] | None = None,
        run_config: dict | None = None,
        assets: Iterable[str] | None = None,
    ) -> str:
        selector = self._selector(jobName=job)
        if assets is not None:
            selector["assetSelection"] = [{"path": [a]} for a in assets]
        params = {
            "selector": selector,
            "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        data = self.query(
            """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
                 ... on LaunchRunSuccess { run { runId } }
                 ... on RunConfigValidationInvalid { errors { message path } }
                 ... on PythonError { message stack } ... on InvalidSubsetError { message }
                 ... on PipelineNotFoundError { message } ... on RunConflict { message }
                 ... on UnauthorizedError { message } ... on InvalidStepError { invalidStepKey } } }""",
            {"p": params},
        )
        return self._expect(data["launchRun"], "LaunchRunSuccess", f"launching {job}")["run"]["runId"]

    def run(self, run_id: str) -> dict:
        data = self.query(
            f"""query($id: ID!) {{ runOrError(runId: $id) {{ __typename
                 ... on Run {{ {RUN_FIELDS} }} ... on PythonError {{ message }} }} }}""",
            {"id": run_id},
        )
        run = self._expect(data["runOrError"], "Run", f"reading run {run_id}")
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return run

    def runs(self, *, statuses: Iterable[str] | None = None, limit: int = 200) -> list[dict]:
        flt: dict[str, Any] = {}
        if statuses is not None:
            flt["statuses"] = list(statuses)
        data = self.query(
            f"""query($f: RunsFilter, $n: Int) {{ runsOrError(filter: $f, limit: $n) {{ __typename
                 ... on Runs {{ results {{ {RUN_FIELDS} }} }} ... on PythonError {{ message }} }} }}""",
            {"f": flt, "n": limit},
        )
        runs = self._expect(data["runsOrError"], "Runs", "listing runs")["results"]
        for run in runs:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return runs

    def active_runs(self) -> list[dict]:
        return self.runs(statuses=ACTIVE)

    def wait_for_run(self, run_id: str, timeout: float, statuses: Iterable[str] = FINISHED) -> dict:
        wanted = set(statuses)

        def done() -> dict | None:
            run = self.run(run_id)
            return run if run["status"] in wanted else None

        return wait_until(
            done,
            timeout,
            f"run {run_id[:8]} to reach {sorted(wanted)}",
            describe=lambda: self.describe_run(run_id),
        )

    def wait_until_idle(self, timeout: float) -> None:
        wait_until(
            lambda: not self.active_runs(),
            timeout,
            "no queued or running runs",
            describe=lambda: f"active: {[(r['runId'][:8], r['status']) for r in self.active_runs()]}",
        )

    def terminate(self, run_id: str) -> None:
        data = self.query(
            """mutation($id: String!) { terminateRun(runId: $id) { __typename
                 ... on TerminateRunSuccess { run { runId } }
                 ... on TerminateRunFailure { message } ... on RunNotFoundError { message }
                 ... on PythonError { message stack } ... on UnauthorizedError { message } } }""",
            {"id": run_id},
        )
        self._expect(data["terminateRun"], "TerminateRunSuccess", f"terminating run {run_id}")

    def run_events(self, run_id: str) -> list[dict]:
        events: list[dict] = []
        cursor = None
        while True:
            data = self.query(
                """query($id: ID!, $c: String) { logsForRun(runId: $id, afterCursor: $c) { __typename
                     ... on EventConnection { cursor hasMore events { __typename
                       ... on MessageEvent { message timestamp level stepKey } } }
                     ... on PythonError { message } ... on RunNotFoundError { message } } }""",
                {"id": run_id, "c": cursor},
            )
            conn = self._expect(data["logsForRun"], "EventConnection", f"reading the logs of {run_id}")
            events.extend(conn["events"])
            cursor = conn["cursor"]
            if not conn["hasMore"]:
                return events

    def describe_run(self, run_id: str, last: int = 15) -> str:
        try:
            run = self.run(run_id)
            tail = [
                f"{e['__typename']}: {e.get('message', '')[:300]}" for e in self.run_events(run_id)[-last:]
            ]
        except Exception as exc:  # only used to explain a failure
            return f"(could not describe run {run_id}: {exc})"
        return f"run {run_id[:8]} status {run['status']}; last events:\n  " + "\n  ".join(tail)

    # ------------------------------------------------------------------ backfills
    def launch_backfill(self, assets: Iterable[str]) -> str:
        params = {
            "assetSelection": [{"path": [a]} for a in assets],
            "allPartitions": True,
            "title": "e2e full sync",
        }
        data = self.query(
            """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename
                 ... on LaunchBackfillSuccess { backfillId }
                 ... on PartitionSetNotFoundError { message } ... on PartitionKeysNotFoundError { message }
                 ... on PythonError { message stack } ... on UnauthorizedError { message }
                 ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }""",
            {"p": params},
        )
        result = self._expect(
            data["launchPartitionBackfill"], "LaunchBackfillSuccess", "launching the backfill"
        )
        return result["backfillId"]

    def backfill(self, backfill_id: str) -> dict:
        data = self.query(
            f"""query($id: String!) {{ partitionBackfillOrError(backfillId: $id) {{ __typename
                 ... on PartitionBackfill {{ id status numPartitions error {{ message }}
                   runs {{ {RUN_FIELDS} }} }}
                 ... on PythonError {{ message }} ... on BackfillNotFoundError {{ message }} }} }}""",
            {"id": backfill_id},
        )
        backfill = self._expect(data["partitionBackfillOrError"], "PartitionBackfill", "reading the backfill")
        for run in backfill["runs"]:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return backfill

    # ------------------------------------------------------------------ assets
    def latest_materialization(self, asset: str) -> dict | None:
        data = self.query(
            f"""query($k: AssetKeyInput!) {{ assetOrError(assetKey: $k) {{ __typename
                 ... on Asset {{ assetMaterializations(limit: 1) {{ runId timestamp partition
                   metadataEntries {{ {METADATA_FIELDS} }} }} }}
                 ... on AssetNotFoundError {{ message }} }} }}""",
            {"k": {"path": [asset]}},
        )
        result = data["assetOrError"]
        if result["__typename"] != "Asset" or not result["assetMaterializations"]:
            return None
        event = result["assetMaterializations"][0]
        event["metadata"] = _metadata(event.pop("metadataEntries"))
        event["timestamp"] = float(event["timestamp"]) / 1000.0  # milliseconds in GraphQL
        return event

    def pool_limit(self, pool: str) -> int | None:
        data = self.query(
            """query($k: String!) { instance { concurrencyLimit(concurrencyKey: $k) { slotCount limit } } }""",
            {"k": pool},
        )
        info = data["instance"]["concurrencyLimit"]
        return info["limit"] if info["limit"] is not None else info["slotCount"]


# ---------------------------------------------------------------------------------------- DuckDB
def open_mirror(path: str | Path, timeout: float = 60) -> duckdb.DuckDBPyConnection:
    """Open the mirror read-only, waiting while a run holds the file (one process at a time)."""
    last: Exception | None = None

    def attempt() -> duckdb.DuckDBPyConnection | None:
        nonlocal last
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as exc:
            last = exc
            return None

    return wait_until(attempt, timeout, f"a read-only connection to {path}", describe=lambda: str(last))


def link_writers() -> dict[str, list[tuple[str, int]]]:
    """Per link table, the entity types whose sync writes it, with the position of their id in a link
    row: the owner first (``scene_tags``: scenes at 0), and for a reverse relation the target
    (``scene_galleries`` is also written from the galleries' side, their id at 1)."""
    writers: dict[str, list[tuple[str, int]]] = {}
    for spec in ENTITY_SPECS:
        for rel in spec.relations:
            writers.setdefault(rel.table, []).append((spec.name, 1 if rel.reverse else 0))
    return writers


def partial_mirror_differences(con: duckdb.DuckDBPyConnection, truth: dict, *, limit: int = 20) -> list[str]:
    """Differences between a possibly incomplete mirror and the truth, for the rows it holds.

    Rows may be missing (an interrupted sync), but every row present must equal Stash's, and the
    link rows must be exactly Stash's links of the rows present on a side that writes them: a page
    is committed whole (the entity rows with their links) or not at all.  A link row none of whose
    writers is present is an orphan, left by a page committed in part.
    """
    problems: list[str] = []
    present: dict[str, set[int]] = {}
    for table in SCALARS:
        expected = expected_entity_rows(truth, table)
        columns = list(next(iter(expected.values())).keys()) if expected else []
        ids = [r[0] for r in con.execute(f"SELECT id FROM {table}").fetchall()]
        actual = actual_entity_rows(con, table, columns) if columns else {i: {} for i in ids}
        present[table] = set(ids)
        if len(ids) != len(set(ids)):
            problems.append(f"{table}: duplicate ids")
        extra = sorted(set(ids) - set(expected))
        if extra:
            problems.append(f"{table}: ids Stash does not have {extra[:10]} ({len(extra)})")
        if entity_row_differences(table, expected, actual, problems, limit):
            return problems
    writers = link_writers()
    for table in LINKS:
        sides = writers[table]

        def written(link: tuple, sides: list[tuple[str, int]] = sides) -> bool:
            return any(link[pos] in present[kind] for kind, pos in sides)

        expected_links = {link for link in expected_link_rows(truth, table) if written(link)}
        actual_links = set(actual_link_rows(con, table))
        orphans = sorted(link for link in actual_links if not written(link))
        missing = sorted(expected_links - actual_links)
        extra = sorted(actual_links - expected_links - set(orphans))
        if orphans:
            problems.append(f"{table}: links of rows that are not there {orphans[:5]} ({len(orphans)})")
        if missing:
            problems.append(f"{table}: links missing for rows present {missing[:5]} ({len(missing)})")
        if extra:
            problems.append(f"{table}: links Stash does not have {extra[:5]} ({len(extra)})")
        if len(problems) >= limit:
            break
    return problems
