"""End to end with real processes (issue 5): Dagster's webserver and daemon against the fake Stash.

The tests share one stack (``conftest.stack``) and run in file order, each building on the state
the previous one left (that is the point: one instance living through a cancelled sync, a full
backfill, a sensor-driven catch-up, concurrent launches and the UI):

1. the instance keeps its history in ``DAGSTER_HOME``;
2. a sync terminated through the GraphQL API (what the UI's "Terminate" calls) stops within one
   page, keeps only whole pages, and leaves a DuckDB file that opens;
3. a full-sync backfill launched through GraphQL completes, resumes where the cancelled sync
   stopped, and the mirror equals the fake's truth;
4. the smart-sync sensor skips while nothing changed, then syncs an edit, and the derived assets
   follow through their automation sensor;
5. two runs launched together are serialised (queued run coordinator, one writer pool slot) and
   both succeed; no two runs of the whole session ever overlapped;
6. headless Chromium (Debian's, driven by Playwright) shows the asset graph with every asset and
   the scenes page with the latest materialization's metadata; screenshots are kept.
"""

import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest

from stash_pipeline.assets.entities import ENTITY_OP
from stash_pipeline.mirror.derived import DERIVED_TABLES
from stash_pipeline.model import ENTITY_SPECS
from stash_pipeline_tests.e2e.conftest import E2EStack
from stash_pipeline_tests.e2e.stack import (
    FINISHED,
    E2EError,
    open_mirror,
    partial_mirror_differences,
    wait_until,
)
from stash_pipeline_tests.expected_mirror import mirror_differences

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ENTITY_ASSETS = [s.name for s in ENTITY_SPECS]
DERIVED_ASSETS = [t.name for t in DERIVED_TABLES]
SCENE_PAGES = "query ScenesPage"  # matches the first page (ScenesPage) and the others (ScenesPageNoCount)
SLOW_PAGE_SECONDS = 2.0
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _full_sync_config(mode: str = "full") -> dict:
    return {"ops": {ENTITY_OP: {"config": {"mode": mode}}}}


def _overlaps(a: dict, b: dict) -> bool:
    return a["startTime"] < b["endTime"] and b["startTime"] < a["endTime"]


def _run_full_sync_backfill(stack: E2EStack) -> dict:
    """Launch the full sync as a backfill over every partition of the entity assets; wait for it."""
    backfill_id = stack.gql.launch_backfill(ENTITY_ASSETS)

    def finished() -> dict | None:
        backfill = stack.gql.backfill(backfill_id)
        return backfill if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

    backfill = wait_until(
        finished,
        240,
        f"backfill {backfill_id} to finish",
        interval=1,
        describe=lambda: str(stack.gql.backfill(backfill_id)),
    )
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    stack.synced = True
    return backfill


def _finished_sensor_run(gql, since: float) -> dict | None:
    """The latest run the smart sensor created at or after ``since``, once it has finished."""
    runs = [
        r
        for r in gql.runs(limit=20)
        if r["tags"].get("stash/launched_by") == "sensor" and r["creationTime"] >= since
    ]
    return runs[-1] if runs and runs[-1]["status"] in FINISHED else None


def _ensure_synced(stack: E2EStack) -> None:
    """Tests selected alone (``-k``) still start from a synced mirror."""
    if not stack.synced:
        stack.gql.wait_until_idle(180)
        _run_full_sync_backfill(stack)


def _mirror_equals_truth(stack: E2EStack) -> None:
    stack.gql.wait_until_idle(180)
    with open_mirror(stack.db_path) as con:
        problems = mirror_differences(con, stack.fake.truth())
    assert problems == [], "\n".join(problems)


# --------------------------------------------------------------------------------------------- 1
def test_instance_keeps_its_history_in_dagster_home(stack: E2EStack) -> None:
    """The run and materialization history is the sync history: it must live in DAGSTER_HOME, not
    wherever the webserver or daemon happened to be started."""
    in_home = sorted(str(p.relative_to(stack.procs.home)) for p in stack.procs.home.rglob("runs.db"))
    in_cwd = sorted(str(p.relative_to(stack.procs.workdir)) for p in stack.procs.workdir.rglob("runs.db"))
    assert not in_cwd, (
        f"the instance's run storage is under the working directory ({in_cwd}), not DAGSTER_HOME: "
        "a relative `storage: sqlite: base_dir` in dagster.yaml is resolved against the process's cwd"
    )
    assert in_home, f"no run storage under DAGSTER_HOME {stack.procs.home}"


# --------------------------------------------------------------------------------------------- 2
def test_terminated_sync_stops_within_a_page_and_keeps_whole_pages(stack: E2EStack) -> None:
    fake, gql = stack.fake, stack.gql
    assert not stack.db_path.exists(), "the cancellation test needs a mirror that was never synced"
    scene_total = len(fake.truth()["scenes"])
    fake.faults.fired.clear()
    fake.faults.add("slow", times=10_000, match=SCENE_PAGES, seconds=SLOW_PAGE_SECONDS)

    def scene_pages_requested() -> int:
        return sum(1 for f in fake.faults.fired if f.match == SCENE_PAGES)

    try:
        run_id = gql.launch_run("stash_sync", tags={**stack.range_tags, "stash/launched_by": "e2e"})

        def mid_scenes() -> bool:
            if scene_pages_requested() >= 3:  # pages 1-2 answered (and merged), page 3 in flight
                return True
            status = gql.run(run_id)["status"]
            if status in FINISHED:
                raise E2EError(f"the run ended ({status}) before the scenes were half synced")
            return False

        wait_until(
            mid_scenes,
            180,
            "the sync to reach its third page of scenes",
            interval=0.1,
            describe=lambda: gql.describe_run(run_id),
        )
        requested_before = scene_pages_requested()
        asked = time.monotonic()
        gql.terminate(run_id)
        run = gql.wait_for_run(run_id, 60)
        took = time.monotonic() - asked
        requested_after = scene_pages_requested() - requested_before
    finally:
        fake.faults.clear()

    print(
        f"terminated after {requested_before} scene page requests; CANCELED {took:.1f}s later, "
        f"{requested_after} page request(s) after terminateRun"
    )
    assert run["status"] == "CANCELED", gql.describe_run(run_id)
    # "Within one page": at most one more page was even asked for after the termination request.
    assert requested_after <= 1, f"{requested_after} scene pages requested after terminateRun"
    assert took < 30, f"the run took {took:.1f}s to stop"
    # The interrupted step recorded no materialization: its metadata would claim a sync.
    latest = gql.latest_materialization("scenes")
    assert latest is None or latest["runId"] != run_id, latest

    gql.wait_until_idle(180)  # the derived automation may react to the types that did finish
    with open_mirror(stack.db_path) as con:  # the file opens: nothing was left half-written
        truth = fake.truth()
        ids = [r[0] for r in con.execute("SELECT id FROM scenes ORDER BY id").fetchall()]
        problems = partial_mirror_differences(con, truth)
        recorded = con.execute(
            "SELECT status FROM sync_runs WHERE run_id = ? AND entity_type = 'scenes'", [run_id]
        ).fetchall()
    # Decided from the run's CANCELING status, whatever exception the interrupt surfaced as.
    assert recorded == [("cancelled",)], f"the mirror recorded the terminated sync as {recorded}"
    expected_order = sorted(int(s["id"]) for s in truth["scenes"])
    assert 0 < len(ids) < scene_total, f"{len(ids)} of {scene_total} scenes: the sync was not cut mid-way"
    assert len(ids) % stack.page_size == 0, (
        f"{len(ids)} scenes is not a whole number of {stack.page_size}-row pages"
    )
    assert ids == expected_order[: len(ids)], "the committed scenes are not the first pages in id order"
    pages_requested = requested_before + requested_after
    assert len(ids) <= pages_requested * stack.page_size, (len(ids), pages_requested)
    assert problems == [], "\n".join(problems)
    print(f"{len(ids)} of {scene_total} scenes committed, in whole pages")
    stack.cancelled_scene_rows = len(ids)


# --------------------------------------------------------------------------------------------- 3
def test_full_sync_backfill_completes_resumes_and_matches_stash(stack: E2EStack) -> None:
    gql = stack.gql
    gql.wait_until_idle(180)
    backfill = _run_full_sync_backfill(stack)
    runs = backfill["runs"]
    assert len(runs) == 1, f"the single-run backfill policy should give one run, got {len(runs)}"
    run = runs[0]
    assert run["status"] == "SUCCESS", gql.describe_run(run["runId"])
    assert sorted(a["path"][0] for a in run["assetSelection"]) == sorted(ENTITY_ASSETS)
    assert run["tags"]["dagster/asset_partition_range_start"] == stack.partition_keys[0]
    assert run["tags"]["dagster/asset_partition_range_end"] == stack.partition_keys[-1]

    scene_total = len(stack.fake.truth()["scenes"])
    scenes = gql.latest_materialization("scenes")
    assert scenes is not None
    assert scenes["runId"] == run["runId"], scenes
    meta = scenes["metadata"]
    assert meta["sync_type"] == "full", meta
    assert meta["local_count"] == scene_total == meta["stash_count"], meta
    committed = stack.cancelled_scene_rows
    if committed is not None:
        # "The next run resumes": the pages the cancelled sync committed are not read again.  A few
        # rows are re-read on purpose (the catch-up pass for rows changed during the read), so count
        # the rows read that were already in the mirror: from scratch they would include them all.
        assert meta["created"] == scene_total - committed, meta
        assert meta["fetched"] - meta["created"] < committed, f"re-read the committed pages: {meta}"
    _mirror_equals_truth(stack)


# --------------------------------------------------------------------------------------------- 4
def test_sensor_syncs_a_change_and_the_derived_assets_follow(stack: E2EStack) -> None:
    _ensure_synced(stack)
    gql, fake = stack.gql, stack.fake
    gql.wait_until_idle(180)
    started = time.time()
    gql.start_sensor("stash_smart_sync")

    # Nothing changed since the full sync: the sensor's ticks skip (one probe each), no run.
    def skipped_tick() -> dict | None:
        ticks = gql.sensor_ticks("stash_smart_sync", after=started)
        for tick in ticks:
            assert tick["status"] != "FAILURE", tick
            assert not tick["runIds"], f"the sensor launched a run although nothing changed: {tick}"
        return next((t for t in ticks if t["status"] == "SKIPPED"), None)

    tick = wait_until(skipped_tick, 90, "a skipped tick of stash_smart_sync", interval=1)
    assert "no change" in (tick["skipReason"] or ""), tick

    scene_id = min(int(s["id"]) for s in fake.truth()["scenes"])
    title = f"edited by the e2e test {uuid.uuid4().hex[:8]}"
    edited = time.time()
    fake.mutations.update("scene", scene_id, title=title)

    run = wait_until(
        lambda: _finished_sensor_run(gql, edited),
        120,
        "the sensor to launch a sync that finishes",
        interval=1,
    )
    assert run["status"] == "SUCCESS", gql.describe_run(run["runId"])
    assert [a["path"][0] for a in run["assetSelection"]] == ["scenes"], "only the changed type is synced"
    assert run["tags"]["stash/sync_type"] == "incremental", run["tags"]

    gql.wait_until_idle(180)
    with open_mirror(stack.db_path) as con:
        row = con.execute("SELECT title FROM scenes WHERE id = ?", [scene_id]).fetchone()
    assert row == (title,), f"the mirror has {row!r} for scene {scene_id}, Stash has {title!r}"
    _mirror_equals_truth(stack)

    def derived_after_sync() -> dict | None:
        latest = gql.latest_materialization("scene_inherited_tags")
        return latest if latest and latest["timestamp"] >= run["endTime"] else None

    derived = wait_until(
        derived_after_sync, 150, "scene_inherited_tags to be recomputed after the sensor's sync", interval=2
    )
    derived_run = gql.wait_for_run(derived["runId"], 120)
    assert derived_run["status"] == "SUCCESS", gql.describe_run(derived["runId"])
    assert derived_run["tags"].get("dagster/sensor_name") == "derived_automation", derived_run["tags"]


# -------------------------------------------------------------------------------------------- 4b
def test_a_daemon_run_killed_with_sigkill_frees_its_slot_and_the_next_sensor_run_succeeds(
    stack: E2EStack,
) -> None:
    """Run monitoring (dagster.yaml + stash_pipeline.launcher): a run worker killed mid-sync is
    marked failed by the daemon and its writer slot freed; the sensor's next run goes through."""
    _ensure_synced(stack)
    gql, fake = stack.gql, stack.fake
    gql.stop_sensor("stash_smart_sync")
    gql.wait_until_idle(180)
    fake.faults.fired.clear()
    fake.faults.add("slow", times=10_000, match=SCENE_PAGES, seconds=SLOW_PAGE_SECONDS)
    try:
        run_id = gql.launch_run(
            "stash_sync",
            tags={**stack.range_tags, "stash/launched_by": "e2e"},
            run_config=_full_sync_config(),
        )
        wait_until(
            lambda: any(f.match == SCENE_PAGES for f in fake.faults.fired),
            180,
            "the daemon-launched sync to reach the scenes",
            interval=0.2,
            describe=lambda: gql.describe_run(run_id),
        )
        started = [e["message"] for e in gql.run_events(run_id) if "Started process for run" in e["message"]]
        assert started, gql.describe_run(run_id)
        pid = int(re.search(r"pid: (\d+)", started[0])[1])
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        run = gql.wait_for_run(run_id, 120)
        noticed = time.monotonic() - killed
    finally:
        fake.faults.clear()
    assert run["status"] == "FAILURE", gql.describe_run(run_id)
    assert noticed < 60, f"the dead run was marked failed {noticed:.0f} s after the kill"
    print(f"run worker {pid} killed; marked failed {noticed:.1f} s later")

    scene_id = max(int(s["id"]) for s in fake.truth()["scenes"])
    title = f"after the kill {uuid.uuid4().hex[:8]}"
    edited = time.time()
    fake.mutations.update("scene", scene_id, title=title)
    gql.start_sensor("stash_smart_sync")

    after = wait_until(
        lambda: _finished_sensor_run(gql, edited),
        180,
        "a sensor run after the kill that finishes",
        interval=1,
    )
    assert after["status"] == "SUCCESS", gql.describe_run(after["runId"])
    gql.stop_sensor("stash_smart_sync")
    gql.wait_until_idle(180)
    with open_mirror(stack.db_path) as con:
        row = con.execute("SELECT title FROM scenes WHERE id = ?", [scene_id]).fetchone()
    assert row == (title,)


# --------------------------------------------------------------------------------------------- 5
def test_two_runs_launched_together_are_serialised_and_both_succeed(stack: E2EStack) -> None:
    _ensure_synced(stack)
    gql = stack.gql
    assert gql.pool_limit("duckdb_writer") == 1
    gql.wait_until_idle(180)
    tags = {**stack.range_tags, "stash/launched_by": "e2e"}
    first = gql.launch_run("stash_sync", tags=tags, run_config=_full_sync_config("full"))
    second = gql.launch_run(
        "stash_sync", tags=tags, run_config=_full_sync_config("incremental"), assets=["scenes"]
    )
    runs = [gql.wait_for_run(run_id, 180) for run_id in (first, second)]
    for run in runs:
        assert run["status"] == "SUCCESS", gql.describe_run(run["runId"])
    a, b = runs
    assert not _overlaps(a, b), (
        f"the runs overlapped: {a['runId'][:8]} {a['startTime']:.2f}-{a['endTime']:.2f}, "
        f"{b['runId'][:8]} {b['startTime']:.2f}-{b['endTime']:.2f}"
    )

    # One writer through the whole session: no two runs of this instance ever overlapped
    # (the cancelled sync, the backfill, the sensor's, the derived automation's, these two).
    finished = [r for r in gql.runs(limit=200) if r["startTime"] and r["endTime"]]
    clashes = [
        (x["runId"][:8], y["runId"][:8])
        for i, x in enumerate(finished)
        for y in finished[i + 1 :]
        if _overlaps(x, y)
    ]
    assert clashes == [], f"runs that ran at the same time: {clashes}"
    _mirror_equals_truth(stack)


# --------------------------------------------------------------------------------------------- 6
def _label_matches(label: str, name: str) -> bool:
    """The graph shortens long names in the middle when zoomed out (``scene_inheri…_tags``)."""
    if label == name:
        return True
    head, sep, tail = label.partition("…")
    return bool(sep) and name.startswith(head) and name.endswith(tail) and len(head + tail) < len(name)


def test_ui_shows_the_asset_graph_and_the_latest_scenes_metadata(
    stack: E2EStack, chromium: Path, artifacts: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    _ensure_synced(stack)
    stack.gql.wait_until_idle(180)
    latest = stack.gql.latest_materialization("scenes")
    assert latest is not None
    meta = latest["metadata"]
    names = ENTITY_ASSETS + DERIVED_ASSETS

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(chromium),
            headless=True,
            args=BROWSER_ARGS,
            viewport={"width": 1600, "height": 2400},
        )
        # Dagster greets a new browser with a "join the community" dialog; it remembers the answer here.
        browser.add_init_script("window.localStorage.setItem('communityNux', '1')")
        page = browser.new_page()
        page.set_default_timeout(60_000)
        try:
            # The global asset graph, every group expanded (the UI's "Expand all groups", ⌥E).
            page.goto(stack.procs.url + "/asset-groups")
            page.wait_for_selector("svg foreignObject", timeout=60_000)
            page.keyboard.press("Alt+e")
            page.wait_for_function(
                """([names, sep]) => {
                     const labels = Array.from(document.querySelectorAll('svg foreignObject [class*=assetName]'))
                       .map(e => e.textContent.trim());
                     return names.every(n => labels.some(l => l === n || (l.includes(sep)
                       && n.startsWith(l.split(sep)[0]) && n.endsWith(l.split(sep)[1]))));
                   }""",
                arg=[names, "…"],
                timeout=60_000,
            )
            labels = page.locator("svg foreignObject [class*=assetName]").all_inner_texts()
            labels = [label.strip() for label in labels]
            for name in names:
                matching = [label for label in labels if _label_matches(label, name)]
                assert len(matching) == 1, f"asset {name}: graph labels {matching} (all: {labels})"
            assert len(labels) == len(names), f"unexpected nodes in the graph: {labels}"
            # Once the live status has loaded, every node shows "materialized" (green).
            page.wait_for_function(
                """(n) => {
                     const boxes = document.querySelectorAll('svg foreignObject [class*=minimalAssetNodeBox]');
                     return boxes.length === n
                       && Array.from(boxes).every(b => (b.getAttribute('style') || '').includes('green'));
                   }""",
                arg=len(names),
                timeout=90_000,
            )
            page.screenshot(path=str(artifacts / "asset-graph.png"))

            # The scenes asset page: the latest materialization's metadata.
            page.goto(stack.procs.url + "/assets/scenes")
            expect(page.get_by_text("Latest materialization").first).to_be_visible()
            for key in ("sync_type", "rows_per_second", "local_count", "cursor"):
                expect(page.locator("tr", has_text=key).first).to_be_visible()
            expect(page.locator("tr", has_text="local_count").first).to_contain_text(str(meta["local_count"]))
            expect(page.locator("tr", has_text="sync_type").first).to_contain_text(str(meta["sync_type"]))
            expect(page.locator("tr", has_text="cursor").first).to_contain_text(str(meta["cursor"]))
            page.screenshot(path=str(artifacts / "asset-scenes.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(artifacts / "ui-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
