"""Run the real ``stash-pipeline`` CLI in a subprocess against a fake Stash served by the test.

Everything the CLI writes lives in one temporary directory, which is also its working directory
(so no ``.env`` of the repository is read and nothing lands in the repository): the DuckDB file,
``DAGSTER_HOME`` (the persistent instance the CLI records its runs in) and the CLI's output.
"""

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.server import FakeStashServer
from stash_pipeline_tests.expected_mirror import MirrorFileChecks
from stash_pipeline_tests.sync_harness import PARTITION_START

CLI = str(Path(sys.executable).with_name("stash-pipeline"))


@dataclass
class CliEnv(MirrorFileChecks):
    fake: FakeStash
    server: FakeStashServer
    root: Path
    api_key: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    db_file: str | None = None  # default: mirror.duckdb in root

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def db_path(self) -> str:
        return self.db_file or str(self.root / "mirror.duckdb")

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STASH_", "DAGSTER_"))}
        env.update(
            STASH_URL=self.server.url,
            STASH_PIPELINE_DB=self.db_path,
            DAGSTER_HOME=str(self.dagster_home),
            STASH_PAGE_SIZE="100",
            STASH_PARTITION_START=PARTITION_START.isoformat(),
            STASH_RETRIES="2",
        )
        if self.api_key:
            env["STASH_API_KEY"] = self.api_key
        env.update(self.extra_env)
        return env

    def run(
        self, *args: str, timeout: float = 240, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``stash-pipeline *args`` to the end (``env`` added to its environment); stdout and
        stderr captured as text."""
        return subprocess.run(
            [CLI, *args],
            env={**self.environ(), **(env or {})},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, log_name: str = "cli.log") -> subprocess.Popen:
        """Start ``stash-pipeline *args`` in its own process group (so it can be killed whole)."""
        log = open(self.root / log_name, "w")  # noqa: SIM115 - closed by the child's exit
        return subprocess.Popen(
            [CLI, *args],
            env=self.environ(),
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The CLI's persistent Dagster instance, opened from the test (while no CLI runs)."""
        with dg.DagsterInstance.from_config(str(self.dagster_home)) as instance:
            yield instance


def run_id_of(output: str) -> str:
    """The Dagster run id the CLI printed (``run <id>``)."""
    for line in output.splitlines():
        if line.startswith("run "):
            return line.split()[1]
    raise AssertionError(f"no run id in the CLI output:\n{output}")


def outcome(result: subprocess.CompletedProcess) -> str:
    """Exit code and both streams, for assertion messages."""
    return (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
