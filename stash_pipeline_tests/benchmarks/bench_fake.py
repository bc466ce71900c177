"""Benchmark of the fake Stash: how fast it serves pages, and what a big library costs to generate.

    python -m stash_pipeline_tests.benchmarks.bench_fake                 # defaults below
    python -m stash_pipeline_tests.benchmarks.bench_fake --quick         # a small, fast run
    python -m stash_pipeline_tests.benchmarks.bench_fake --scenes 200000 --images 1000000 \\
        --serve-scenes 50000 --serve-images 200000 --page-size 1000

(a) Serving: the fake runs in its own process (as the ``fake-stash`` CLI would: the client and the
    server must not share one GIL, or the figure measures Python's GIL, not the server), and the
    client reads 1000-item keyset pages of the FULL entity selection over HTTP: ``StashClient``
    pages (parsed with orjson) and raw fetches (bytes only, no parsing).  Goal: >= 20k scenes/s.
(b) Generation of ``--scenes`` scenes + ``--images`` images in a fresh subprocess, timed there and
    measured by its own ``ru_maxrss`` so the figure is clean of this process.  Goal: < 60 s, < 4 GB.
"""

import argparse
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx
import orjson

GOAL_SCENES_PER_S = 20_000
GOAL_GENERATE_S = 60.0
GOAL_GENERATE_MB = 4096.0


@dataclass
class Row:
    measure: str
    items: int
    seconds: float
    peak_mb: float | None = None
    goal: str = ""
    ok: bool | None = None

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


# ------------------------------------------------------------------------------- child processes
def _serve_child(scenes: int, images: int, page_size: int, conn: Connection) -> None:
    """Generate a library, serve it, report the URL and page boundaries, serve until told to stop."""
    from stash_pipeline.fakestash.app import FakeStash
    from stash_pipeline.fakestash.generator import LibrarySize
    from stash_pipeline.fakestash.server import serve

    started = time.perf_counter()
    fake = FakeStash.generated(LibrarySize(scenes=scenes, images=images), seed=1)
    built = time.perf_counter() - started
    # The id before each page (keyset cursors), so raw fetches need not parse anything.
    cursors = {
        kind: [0, *fake.store.sorted_ids(kind)[page_size - 1 :: page_size]] for kind in ("scene", "image")
    }
    with serve(fake) as server:
        counts = {kind: len(fake.store.table(kind)) for kind in ("scene", "image")}
        conn.send({"url": server.url, "cursors": cursors, "counts": counts, "built": built})
        conn.recv()  # wait for "stop"


def _generate_child(scenes: int, images: int) -> None:
    """Generate in a clean process and print {"seconds", "maxrss_mb", "counts"} as JSON."""
    from stash_pipeline.fakestash.clock import ServerClock
    from stash_pipeline.fakestash.generator import LibrarySize, generate
    from stash_pipeline.fakestash.store import Store

    store = Store()
    started = time.perf_counter()
    generate(store, ServerClock(), LibrarySize(scenes=scenes, images=images), seed=0)
    seconds = time.perf_counter() - started
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(json.dumps({"seconds": seconds, "maxrss_mb": maxrss_kb / 1024, "counts": store.counts()}))


# ------------------------------------------------------------------------------- measurements
def bench_serving(scenes: int, images: int, page_size: int, sweep_page_size: int) -> list[Row]:
    from stash_pipeline.model import IMAGES, SCENES
    from stash_pipeline.stash import queries
    from stash_pipeline.stash.client import StashClient

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve_child, args=(scenes, images, page_size, child), daemon=True)
    process.start()
    try:
        info: dict[str, Any] = parent.recv()
        rows = [
            Row(f"build served library ({scenes} scenes, {images} images)", scenes + images, info["built"])
        ]
        with StashClient(info["url"], page_size=page_size, timeout=120) as client:
            client.health()  # warm up: connection, query cache
            for spec, kind in ((SCENES, "scene"), (IMAGES, "image")):
                # Warm-up: the server compiles each document once (like gqlgen's query cache).
                list(client.iter_pages(spec, {"id": {"modifier": "LESS_THAN", "value": 4}}, page_size=1))
                started = time.perf_counter()
                count = sum(len(page) for page in client.iter_pages(spec, page_size=page_size))
                seconds = time.perf_counter() - started
                goal = f">= {GOAL_SCENES_PER_S}/s" if kind == "scene" else ""
                ok = count / seconds >= GOAL_SCENES_PER_S if kind == "scene" else None
                rows.append(
                    Row(f"{spec.name}: client keyset pages of {page_size}", count, seconds, goal=goal, ok=ok)
                )
                document = queries.page_query(spec, False)
                raw = _raw_fetch(info["url"], document, info["cursors"][kind], page_size)
                rows.append(
                    Row(
                        f"{spec.name}: raw HTTP fetch, bytes only ({raw[1] / 1e6:,.0f} MB)",
                        info["counts"][kind],
                        raw[0],
                    )
                )
            started = time.perf_counter()
            ids = client.sweep_ids(IMAGES, page_size=sweep_page_size)
            rows.append(
                Row(
                    f"images: client id sweep, pages of {sweep_page_size}",
                    len(ids),
                    time.perf_counter() - started,
                )
            )
        parent.send("stop")
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
    return rows


def _raw_fetch(url: str, document: str, cursors: list[int], page_size: int) -> tuple[float, int]:
    """The same keyset pages fetched as bytes only (the server's side of the cost): (seconds, bytes)."""
    bodies = [
        orjson.dumps(
            {
                "query": document,
                "variables": {
                    "filter": {"id": {"modifier": "GREATER_THAN", "value": after}},
                    "page": 1,
                    "per_page": page_size,
                },
            }
        )
        for after in cursors
    ]
    total_bytes = 0
    with httpx.Client(timeout=120) as http:
        started = time.perf_counter()
        for body in bodies:
            response = http.post(f"{url}/graphql", content=body, headers={"Content-Type": "application/json"})
            response.raise_for_status()
            total_bytes += len(response.content)
        seconds = time.perf_counter() - started
    return seconds, total_bytes


def bench_generation(scenes: int, images: int) -> Row:
    command = [sys.executable, "-m", "stash_pipeline_tests.benchmarks.bench_fake", "--generate-child"]
    command += [str(scenes), str(images)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ok = result["seconds"] < GOAL_GENERATE_S and result["maxrss_mb"] < GOAL_GENERATE_MB
    return Row(
        f"generate {scenes} scenes + {images} images (subprocess)",
        sum(result["counts"].values()),
        result["seconds"],
        peak_mb=result["maxrss_mb"],
        goal=f"< {GOAL_GENERATE_S:.0f} s, < {GOAL_GENERATE_MB / 1024:.0f} GB",
        ok=ok,
    )


def print_table(rows: list[Row]) -> None:
    headers = ("measure", "items", "seconds", "items/s", "peak RSS", "goal", "ok")
    table = [
        (
            r.measure,
            f"{r.items:,}",
            f"{r.seconds:.2f}",
            f"{r.rate:,.0f}",
            f"{r.peak_mb:,.0f} MB" if r.peak_mb is not None else "",
            r.goal,
            "" if r.ok is None else ("yes" if r.ok else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenes", type=int, default=200_000, help="scenes to generate in (b)")
    parser.add_argument("--images", type=int, default=1_000_000, help="images to generate in (b)")
    parser.add_argument("--serve-scenes", type=int, default=50_000, help="scenes in the served library (a)")
    parser.add_argument("--serve-images", type=int, default=200_000, help="images in the served library (a)")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--sweep-page-size", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="small sizes: a run of a few seconds")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument(
        "--generate-child", nargs=2, type=int, metavar=("SCENES", "IMAGES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.generate_child:
        _generate_child(*args.generate_child)
        return 0
    if args.quick:
        args.scenes, args.images = 20_000, 100_000
        args.serve_scenes, args.serve_images = 5_000, 20_000

    rows: list[Row] = []
    if not args.skip_serving:
        rows += bench_serving(args.serve_scenes, args.serve_images, args.page_size, args.sweep_page_size)
    if not args.skip_generation:
        rows.append(bench_generation(args.scenes, args.images))
    print_table(rows)
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
