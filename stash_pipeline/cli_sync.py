"""CLI commands that sync: ``sync``, ``sync-ids`` and ``demo`` (registered on the ``main`` group).

They run real Dagster materializations in this process against the persistent ``DAGSTER_HOME``
instance, so every CLI sync shows in the UI; exit code 0 only for a complete sync, 2 for a partial
one (rows that could not be stored), 1 for a failed one.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from stash_pipeline.history import TYPE_WIDTH
from stash_pipeline.model import ENTITY_SPECS, spec_for

TYPE_NAMES = [s.name for s in ENTITY_SPECS]


def _parse_types(value: str | None) -> list[str] | None:
    if not value:
        return None
    try:
        return [spec_for(v.strip()).name for v in value.split(",") if v.strip()]
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0])) from None


def _print_outcome(outcome) -> None:
    for run_id in outcome.released:
        click.echo(f"earlier run {run_id} had died (process gone): marked failed, its slots freed")
    if outcome.why_run:
        click.echo(f"probe: {outcome.why_run}")
    click.echo(f"run {outcome.run_id}")
    w = TYPE_WIDTH
    header = f"{'type':<{w}}{'sync':<12}{'fetched':>9}{'created':>9}{'updated':>9}{'deleted':>9}{'failed':>8}{'local':>9}{'stash':>9}"
    click.echo(header)
    for t in outcome.types:
        m = t.metadata
        sync_type = m.sync_type + (" (skip)" if m.skipped else "")
        click.echo(
            f"{t.entity_type:<{w}}{sync_type:<12}{m.fetched:>9}{m.created:>9}"
            f"{m.updated:>9}{m.deleted:>9}{m.failed:>8}"
            f"{m.local_count or 0:>9}{m.stash_count or 0:>9}"
        )
        for failure in (m.failures or [])[:5]:
            click.echo(f"    failed {t.entity_type} {failure.get('id')}: {failure.get('reason')}")
        if m.schema_note:
            click.echo(f"    {m.schema_note}")
        if m.not_offered:
            click.echo(f"    not offered by Stash {m.stash_version}: {', '.join(m.not_offered)}")
    if outcome.derived:
        click.echo(f"derived: {', '.join(outcome.derived)}")
    if outcome.error:
        click.echo(f"error: {outcome.error}", err=True)
    elif outcome.partial:
        click.echo(
            "partial: some rows could not be stored (see `sync_log` rows with action 'failed')", err=True
        )


class ProgressBars:
    """One tqdm bar per entity type, fed by the sync's progress events (same process)."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __call__(self, event) -> None:
        from tqdm import tqdm

        bar = self.bars.get(event.entity_type)
        if bar is None:
            bar = tqdm(total=event.expected, desc=f"{event.entity_type:<11}", unit=" rows", leave=True)
            self.bars[event.entity_type] = bar
        if event.expected and bar.total != max(event.expected, event.fetched):
            bar.total = max(event.expected, event.fetched)
        bar.update(event.fetched - bar.n)
        if event.done:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _run(verbose: bool = False, probe_first: bool = False, **kwargs) -> int:
    from stash_pipeline.mirror.gc_pauses import importing

    # One ASSET_MATERIALIZATION_PLANNED event per asset for a ranged run, instead of one per asset
    # and month partition (1,235 SQLite writes before a full sync starts: 10-30 s).  Dagster's
    # trade-off: a failed run does not mark each of its partitions failed.
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    with importing():  # Dagster, and its storage modules as the instance loads them
        from stash_pipeline.instance import persistent_instance

        instance = persistent_instance()
    why_run = None
    if probe_first and kwargs.get("mode") == "incremental" and not kwargs.get("since"):
        with importing():
            from stash_pipeline.precheck import before_sync

        verdict = before_sync(instance, kwargs.get("types"))
        if verdict.quiet:
            click.echo(f"{verdict.quiet}: nothing to run (--always-run runs anyway)")
            return 0
        why_run = verdict.why_run

    with importing():
        from stash_pipeline import progress
        from stash_pipeline.definitions import defs
        from stash_pipeline.runner import run_sync

    bars = ProgressBars()
    progress.add_listener(bars)
    try:
        outcome = run_sync(
            defs,
            instance,
            log_level=None if verbose else "WARNING",
            **kwargs,
        )
    finally:
        progress.remove_listener(bars)
        bars.close()
    outcome.why_run = why_run
    _print_outcome(outcome)
    return outcome.exit_code


def register(main: click.Group) -> None:
    @main.command("sync")
    @click.option(
        "--full",
        is_flag=True,
        help="Full sync: every entity; local ids the verified read did not list are deleted.",
    )
    @click.option(
        "--since", default=None, help="Incremental from this Stash timestamp or date instead of the cursor."
    )
    @click.option("--types", default=None, help=f"Comma-separated subset of: {', '.join(TYPE_NAMES)}.")
    @click.option("--allow-mass-delete", is_flag=True, help="Apply deletes above the safety limit.")
    @click.option(
        "--always-run",
        is_flag=True,
        help="Run even when Stash's one-request probe shows no change since the last sync.",
    )
    @click.option("--verbose", "-v", is_flag=True, help="Show Dagster's run log on the console.")
    def sync(
        full: bool,
        since: str | None,
        types: str | None,
        allow_mass_delete: bool,
        always_run: bool,
        verbose: bool,
    ) -> None:
        """Sync the mirror: incremental from the stored cursor (a type never synced gets a full sync).

        An incremental sync asks Stash first (one request) whether anything changed since the
        last sync, and makes no run when nothing did."""
        if full and since:
            raise click.UsageError("--full and --since exclude each other")
        from stash_pipeline.settings import load_env_file

        load_env_file()
        code = _run(
            types=_parse_types(types),
            mode="full" if full else "incremental",
            since=since,
            allow_mass_delete=allow_mass_delete,
            probe_first=not always_run,
            verbose=verbose,
        )
        sys.exit(code)

    @main.command("sync-ids")
    @click.argument("entity_type")
    @click.argument("ids", nargs=-1, required=True, type=int)
    def sync_ids(entity_type: str, ids: tuple[int, ...]) -> None:
        """Resync the given ids of one type; ids Stash no longer has are deleted locally."""
        from stash_pipeline.settings import load_env_file

        load_env_file()
        name = _parse_types(entity_type)
        sys.exit(_run(types=name, mode="specific", ids=list(ids)))

    @main.command("demo")
    @click.option("--scenes", default=2000, show_default=True, type=int)
    @click.option("--images", default=10000, show_default=True, type=int)
    @click.option("--port", default=3000, show_default=True, type=int, help="Dagster UI port.")
    @click.option("--no-ui", is_flag=True, help="Stop after the full sync.")
    def demo(scenes: int, images: int, port: int, no_ui: bool) -> None:
        """Full sync from STASH_URL, or from a built-in fake Stash when STASH_URL is not set; then the UI."""
        from stash_pipeline.settings import load_env_file

        load_env_file()
        server = None
        if not os.environ.get("STASH_URL"):
            from stash_pipeline.fakestash.app import FakeStash
            from stash_pipeline.fakestash.generator import LibrarySize
            from stash_pipeline.fakestash.server import serve

            click.echo(f"STASH_URL not set: generating a fake Stash ({scenes} scenes, {images} images)")
            fake = FakeStash.generated(LibrarySize(scenes=scenes, images=images))
            server = serve(fake, port=9999 if _port_free(9999) else 0)
            os.environ["STASH_URL"] = server.url
            click.echo(f"fake Stash at {server.url}")
        from stash_pipeline.instance import ensure_dagster_home

        home = ensure_dagster_home()
        click.echo(f"DAGSTER_HOME={home}")
        started = time.perf_counter()
        code = _run(mode="full")
        click.echo(f"full sync finished in {time.perf_counter() - started:.1f}s (exit code {code})")
        if no_ui:
            if server:
                server.close()
            sys.exit(code)
        click.echo(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C to stop)")
        try:
            subprocess.run(_ui_command(port), check=False, env=os.environ.copy(), cwd=_project_root())
        except KeyboardInterrupt:
            pass
        finally:
            if server:
                server.close()


def _project_root() -> str | None:
    """The checkout holding pyproject.toml (an editable install), where ``dg`` finds the project."""
    root = Path(__file__).resolve().parents[1]
    return str(root) if (root / "pyproject.toml").is_file() else None


def _ui_command(port: int) -> list[str]:
    """``dg dev`` (Dagster 1.13 calls ``dagster dev`` superseded by it) from the project's
    checkout; ``dagster dev`` on the module where there is no checkout (a non-editable install)."""
    dg = Path(sys.executable).parent / "dg"
    if dg.exists() and _project_root():
        return [str(dg), "dev", "--host", "127.0.0.1", "--port", str(port)]
    return [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        "stash_pipeline.definitions",
    ]


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def register_history(main: click.Group) -> None:
    @main.command("history")
    @click.argument("entity_type")
    @click.argument("entity_id", type=int)
    def history(entity_type: str, entity_id: int) -> None:
        """What happened to one entity: each run that touched it, and the full syncs of its type."""
        from stash_pipeline.history import (
            MirrorBusyError,
            MirrorMissingError,
            current_row,
            entity_timeline,
            format_timeline,
            open_read_only,
        )
        from stash_pipeline.settings import Settings, load_env_file

        load_env_file()
        name = _parse_types(entity_type)[0]
        try:
            con = open_read_only(Settings.from_env().db_path)
        except (MirrorBusyError, MirrorMissingError) as exc:
            raise click.ClickException(str(exc)) from None
        with con:
            click.echo(
                format_timeline(
                    name, entity_id, current_row(con, name, entity_id), entity_timeline(con, name, entity_id)
                )
            )

    @main.command("status")
    def status() -> None:
        """Per type: cursor, last full and incremental sync, local and Stash counts, last error."""
        from stash_pipeline.history import (
            MirrorBusyError,
            MirrorMissingError,
            format_status,
            open_read_only,
            status_rows,
        )
        from stash_pipeline.settings import Settings, load_env_file

        load_env_file()
        try:
            con = open_read_only(Settings.from_env().db_path)
        except (MirrorBusyError, MirrorMissingError) as exc:
            raise click.ClickException(str(exc)) from None
        with con:
            click.echo(format_status(status_rows(con)))
