"""The ``stash-pipeline`` command line (``main`` click group; other commands register on it)."""

import atexit
import gc
import time

import click

from stash_pipeline.cli_sync import register as register_sync_commands
from stash_pipeline.cli_sync import register_history

# At exit CPython runs full collections over the whole heap (Dagster's modules and definitions are
# a few hundred thousand objects) before freeing it: 0.4-0.9 s of every command (measured), whatever it did.
# By then every file, connection and client the command used is closed by its context manager, so
# the heap is frozen out of those collections.  Registered first, it runs after the other exit
# handlers (they run last-registered first).
atexit.register(gc.freeze)


@click.group()
def main() -> None:
    """Keep a local DuckDB mirror of a Stash server's metadata."""


@main.command("fake-stash")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=9999, show_default=True, type=int, help="Port (0 picks a free one).")
@click.option(
    "--scenes", default=2000, show_default=True, type=click.IntRange(min=0), help="Scenes to generate."
)
@click.option(
    "--images", default=10000, show_default=True, type=click.IntRange(min=0), help="Images to generate."
)
@click.option(
    "--tz",
    "zone",
    default="Z",
    show_default=True,
    help='Server time zone: "Z", "+11:00", or with DST switches "+11:00,+10:00@2026-04-04T16:00:00Z".',
)
@click.option("--seed", default=0, show_default=True, type=int, help="Generator seed.")
@click.option("--api-key", default=None, envvar="FAKE_STASH_API_KEY", help="Require this ApiKey header.")
@click.option(
    "--version",
    "version",
    default="current",
    show_default=True,
    type=click.Choice(["v0.27.2", "v0.28.1", "v0.29.3", "v0.30.1", "current"]),
    help="The Stash release to serve: its schema, and only the data it can hold.",
)
def fake_stash(
    host: str, port: int, scenes: int, images: int, zone: str, seed: int, api_key: str | None, version: str
) -> None:
    """Serve the built-in fake Stash (GraphQL at /graphql, /healthz, /control) until Ctrl-C.

    Other entity counts follow scenes and images in proportion.
    """
    from stash_pipeline.fakestash.app import FakeStash
    from stash_pipeline.fakestash.generator import LibrarySize
    from stash_pipeline.fakestash.server import serve
    from stash_pipeline.mirror.gc_pauses import fewer_gc_pauses

    try:
        fake = FakeStash.generated(
            LibrarySize(scenes=scenes, images=images), zone=zone, seed=seed, api_key=api_key, version=version
        )
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    server = serve(fake, host=host, port=port)
    counts = ", ".join(f"{n} {kind}" for kind, n in fake.store.counts().items())
    click.echo(f"fake Stash {fake.release.version} serving {counts}")
    click.echo(f"STASH_URL={server.url}")
    if api_key:
        click.echo("API key required (ApiKey header)")
    try:
        # Building a page allocates tens of thousands of short-lived containers: collect less often
        # (this process is the server; the library itself was frozen out of the collector).
        with fewer_gc_pauses():
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        server.close()


register_sync_commands(main)
register_history(main)


if __name__ == "__main__":
    main()
