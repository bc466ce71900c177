"""The derived tables equal the contract (computed independently, in plain Python, from the fake's
truth) after a full sync, after incremental runs that change one kind of input, and after every
sync path; the tag closure survives cycles; the automation condition recomputes them after any
upstream materialization."""

import time

import dagster as dg
import duckdb
import pytest

from stash_pipeline.mirror.derived import (
    DERIVED_BY_NAME,
    DERIVED_TABLES,
    TAG_ANCESTORS,
    changed_by,
    rebuild,
    refresh,
)
from stash_pipeline.mirror.schema import ensure_schema
from stash_pipeline_tests.expected_derived import expected_tag_ancestors


def snapshot(env, table: str) -> set[tuple]:
    return set(env.query(f"SELECT * FROM {table}"))


def synced(env):
    env.full()
    env.assert_consistent()
    return env


def test_full_sync_derived_tables(derived_env):
    env = derived_env()
    outcome = env.full()
    assert sorted(outcome.derived) == sorted(k.to_user_string() for k in env.derived_keys())
    env.assert_consistent()
    # The generated library exercises every rule: inherited values and links, scene tags carried
    # by performers, studios and groups, multi-level tag ancestry.
    assert env.query("SELECT count(*) FROM images_effective WHERE inherited_from_gallery_id IS NOT NULL")[0][
        0
    ]
    for kind in ("performer", "tag"):
        assert env.query(f"SELECT count(*) FROM image_{kind}s_effective WHERE inherited")[0][0]
    assert env.query("SELECT count(*) FROM scene_inherited_tags")[0][0]
    assert env.query("SELECT max(depth) FROM tag_ancestors")[0][0] >= 2


# ------------------------------------------------------------------------ incremental scenarios
def _members_first_in(truth: dict, gallery_id: int) -> list[dict]:
    """Images whose first (lowest-id) gallery is ``gallery_id``."""
    return [i for i in truth["images"] if i["gallery_ids"] and min(i["gallery_ids"]) == gallery_id]


def _inheriting_gallery(truth: dict) -> dict:
    """A gallery with member images that inherit (no own performers, tags, studio, photographer)."""
    best = max(
        truth["galleries"],
        key=lambda g: sum(
            1
            for i in _members_first_in(truth, g["id"])
            if not i["performer_ids"]
            and not i["tag_ids"]
            and i["studio_id"] is None
            and not i["photographer"]
        ),
    )
    assert _members_first_in(truth, best["id"]), "the library has no gallery with members"
    return best


def change_galleries(fake) -> set[str]:
    truth = fake.truth()
    gallery = _inheriting_gallery(truth)
    performers = [p["id"] for p in truth["performers"] if p["id"] not in gallery["performer_ids"]][:2]
    tags = [t["id"] for t in truth["tags"] if t["id"] not in gallery["tag_ids"]][:3]
    studio = next(s["id"] for s in truth["studios"] if s["id"] != gallery["studio_id"])
    fake.mutations.gallery_update(
        gallery["id"],
        studio_id=studio,
        photographer="Gallery Photographer",
        details="gallery details",
        date="2019-06",
        performer_ids=performers,
        tag_ids=tags,
    )
    return {"images_effective", "image_performers_effective", "image_tags_effective", "entity_counts"}


def change_gallery_membership(fake) -> set[str]:
    truth = fake.truth()
    gallery = _inheriting_gallery(truth)
    # Outsiders move in: where the gallery's id is lower than theirs, it becomes their first gallery.
    outsiders = [i["id"] for i in truth["images"] if gallery["id"] not in i["gallery_ids"]]
    later = [i["id"] for i in truth["images"] if i["gallery_ids"] and min(i["gallery_ids"]) > gallery["id"]]
    fake.mutations.add_gallery_images(gallery["id"], outsiders[:3] + later[:3])
    leaving = [i["id"] for i in _members_first_in(truth, gallery["id"])][:4]
    fake.mutations.remove_gallery_images(gallery["id"], leaving)
    return {"images_effective", "image_performers_effective", "image_tags_effective", "entity_counts"}


def change_performer_tags(fake) -> set[str]:
    truth = fake.truth()
    counts: dict[int, int] = {}
    for scene in truth["scenes"]:
        for p in scene["performer_ids"]:
            counts[p] = counts.get(p, 0) + 1
    busiest = sorted(counts, key=counts.get, reverse=True)[:2]
    tags = [t["id"] for t in truth["tags"]]
    fake.mutations.update("performer", busiest[0], tag_ids=tags[-4:])
    fake.mutations.update("performer", busiest[1], tag_ids=[])
    return {"scene_inherited_tags"}


def change_studio_tags(fake) -> set[str]:
    truth = fake.truth()
    used = sorted({s["studio_id"] for s in truth["scenes"] if s["studio_id"] is not None})
    tags = [t["id"] for t in truth["tags"]]
    fake.mutations.update("studio", used[0], tag_ids=tags[-3:])
    fake.mutations.update("studio", used[1], tag_ids=tags[5:7])
    return {"scene_inherited_tags"}


def change_tag_parents(fake) -> set[str]:
    truth = fake.truth()
    children = {
        t["id"]: [c["id"] for c in truth["tags"] if t["id"] in c["parent_ids"]] for t in truth["tags"]
    }
    # Re-parent a tag that has children (its whole subtree's ancestry changes), and orphan another.
    moved = next(t for t in truth["tags"] if children[t["id"]] and t["parent_ids"])
    below = set()
    stack = [moved["id"]]
    while stack:
        for c in children[stack.pop()]:
            if c not in below:
                below.add(c)
                stack.append(c)
    new_parent = next(
        t["id"] for t in truth["tags"] if t["id"] not in below | {moved["id"], *moved["parent_ids"]}
    )
    fake.mutations.update("tag", moved["id"], parent_ids=[new_parent])
    orphan = next(t for t in truth["tags"] if t["parent_ids"] and t["id"] != moved["id"])
    fake.mutations.update("tag", orphan["id"], parent_ids=[])
    return {"tag_ancestors"}


def change_files_and_markers(fake) -> set[str]:
    """A rescan that gives a scene's file another file's phash (a duplicate), a second file on a
    scene (its resolution and size), a new marker (counts)."""
    truth = fake.truth()
    videos = [
        f for s in truth["scenes"] for f in s["files"] if any(p["type"] == "phash" for p in f["fingerprints"])
    ]
    source, copy = videos[0], videos[1]
    phash = next(p["value"] for p in source["fingerprints"] if p["type"] == "phash")
    fake.mutations.file_rescan(copy["id"], fingerprints={"phash": phash})
    scene = next(s for s in truth["scenes"] if s["files"] and s["performer_ids"])
    fake.mutations.scene_add_file(scene["id"])
    tag = truth["scene_markers"][0]["primary_tag_id"]
    fake.mutations.marker_create(scene["id"], "counted", 2.0, tag)
    return {"file_duplicates", "scene_resolution", "entity_counts"}


def delete_gallery_images(fake) -> set[str]:
    """Deletes bump nothing: the sweep finds them, and the derived tables must follow."""
    truth = fake.truth()
    gallery = max(truth["galleries"], key=lambda g: len(_members_first_in(truth, g["id"])))
    fake.mutations.destroy("image", [i["id"] for i in _members_first_in(truth, gallery["id"])[:2]])
    return {"images_effective", "entity_counts"}


def delete_image_performer(fake) -> set[str]:
    """A performer deleted: its links go from the images' and galleries' tables (which no mark of
    theirs moved before), so the image tables must follow as well as the scene and count ones."""
    truth = fake.truth()
    on_images = {p for i in truth["images"] for p in i["performer_ids"]}
    on_galleries = {p for g in truth["galleries"] for p in g["performer_ids"]}
    performer = min(on_images & on_galleries)
    fake.mutations.destroy("performer", [performer])
    return {"image_performers_effective", "entity_counts"}


SCENARIOS = {
    "deletes": delete_gallery_images,
    "deleted_performer": delete_image_performer,
    "files_and_markers": change_files_and_markers,
    "galleries": change_galleries,
    "gallery_membership": change_gallery_membership,
    "performer_tags": change_performer_tags,
    "studio_tags": change_studio_tags,
    "tag_parents": change_tag_parents,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_incremental_change_recomputes_derived(derived_env, scenario):
    env = synced(derived_env())
    before = {t.name: snapshot(env, t.name) for t in DERIVED_TABLES}
    changed = SCENARIOS[scenario](env.fake)
    outcome = env.cli("incremental")  # ONE run: the entity assets, then the derived assets
    assert {t.metadata.sync_type for t in outcome.types} == {"incremental"}
    assert sorted(outcome.derived) == sorted(k.to_user_string() for k in env.derived_keys())
    env.assert_consistent()
    after = {t.name: snapshot(env, t.name) for t in DERIVED_TABLES}
    for table in changed:  # the scenario really moved the derived table it targets
        assert after[table] != before[table], table


def _materialized(env, table: str) -> dict:
    event = env.instance.get_latest_materialization_event(dg.AssetKey(table))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _plant_extra_rows(env) -> tuple[dict[str, int], dict[str, int]]:
    """One copied row in every derived table that has rows: a rebuild drops it, a table left alone
    keeps it.  Returns the row counts before and after."""
    with duckdb.connect(env.db_path) as con:

        def counts() -> dict[str, int]:
            return {
                t.name: con.execute(f"SELECT count(*) FROM {t.name}").fetchall()[0][0] for t in DERIVED_TABLES
            }

        before = counts()
        for t in DERIVED_TABLES:
            con.execute(f"INSERT INTO {t.name} SELECT * FROM {t.name} LIMIT 1")
        return before, counts()


def test_a_run_that_changes_nothing_leaves_the_derived_tables_as_they_are(derived_env):
    env = synced(derived_env())
    built, planted = _plant_extra_rows(env)
    assert sum(planted[t] > built[t] for t in built) >= len(built) - 1  # file_duplicates may be empty
    quiet = env.cli("incremental")
    assert sorted(quiet.derived) == sorted(
        k.to_user_string() for k in env.derived_keys()
    )  # still materialized
    for t in DERIVED_TABLES:
        assert env.query(f"SELECT count(*) FROM {t.name}")[0][0] == planted[t.name], t.name
        meta = _materialized(env, t.name)
        assert meta["rebuilt"] is False, t.name
        assert meta["dagster/row_count"] == built[t.name], t.name  # as built

    # A tag renamed (no derived row moves): the tables that read the tags' tables are rebuilt,
    # and only those; the others keep their planted row.
    tag = env.fake.truth()["tags"][0]["id"]
    env.fake.mutations.update("tag", tag, name="renamed, nothing derived moves")
    env.cli("incremental")
    reads_tags = {t.name for t in DERIVED_TABLES if "tags" in changed_by(t)}
    assert reads_tags == {"tag_ancestors", "entity_counts"}
    _assert_rebuilt_only(env, reads_tags, built, planted)

    # A scene played (an unbumped change of the scenes): the scene tables, not the image ones.
    scene = env.fake.truth()["scenes"][0]["id"]
    env.fake.mutations.scene_add_play(scene)
    env.cli("incremental")
    reads_scenes = {t.name for t in DERIVED_TABLES if "scenes" in changed_by(t)}
    assert reads_scenes == {"scene_inherited_tags", "entity_counts", "scene_resolution"}
    _assert_rebuilt_only(env, reads_scenes, built, planted, earlier=reads_tags)

    # Asked for (a table edited by hand), a rebuild does not wait for a change.
    env.materialize_derived(rebuild=True)
    env.assert_consistent()  # the planted rows are gone
    for t in DERIVED_TABLES:
        assert _materialized(env, t.name)["rebuilt"] is True, t.name


def _assert_rebuilt_only(env, rebuilt: set[str], built, planted, earlier: set[str] = frozenset()) -> None:
    """``rebuilt`` were rebuilt by the last run and equal the oracle; the tables rebuilt by neither
    it nor an ``earlier`` run still hold their planted row."""
    problems = env.differences()
    for t in DERIVED_TABLES:
        meta = _materialized(env, t.name)
        assert meta["rebuilt"] is (t.name in rebuilt), t.name
        rows = env.query(f"SELECT count(*) FROM {t.name}")[0][0]
        if t.name in rebuilt:
            assert [p for p in problems if p.startswith(t.name)] == [], t.name
            assert rows == meta["dagster/row_count"], t.name
        elif t.name not in earlier:
            assert rows == planted[t.name], t.name


def test_a_derived_table_is_rebuilt_when_it_is_missing_redefined_or_older_than_its_input(derived_env):
    env = synced(derived_env())
    counts = DERIVED_BY_NAME["entity_counts"]
    with duckdb.connect(env.db_path) as con:
        assert [refresh(con, t).rebuilt for t in DERIVED_TABLES] == [False] * len(DERIVED_TABLES)
        con.execute("DROP TABLE tag_ancestors")  # a user dropped it
        assert refresh(con, TAG_ANCESTORS).rebuilt
        con.execute("UPDATE derived_builds SET definition = 'older' WHERE table_name = 'tag_ancestors'")
        assert refresh(con, TAG_ANCESTORS).rebuilt  # a new version of its SQL or of the mirror
        assert not refresh(con, counts).rebuilt
        con.execute("UPDATE derived_builds SET definition = 'older' WHERE table_name = 'images_effective'")
        assert refresh(con, DERIVED_BY_NAME["images_effective"]).rebuilt
        assert refresh(con, counts).rebuilt  # it reads images_effective, rebuilt after it
        assert not refresh(con, counts).rebuilt
        # An older release opened the mirror (it records its own schema, and writes unmarked).
        con.execute("UPDATE mirror_schema SET fingerprint = 'an older release'")
        ensure_schema(con)
        assert [refresh(con, t).rebuilt for t in DERIVED_TABLES] == [True] * len(DERIVED_TABLES)


# ---------------------------------------------------------------- the case that broke a peer
def plant_gallery_performer(fake) -> tuple[int, int, list[int]]:
    """A new performer on a new gallery whose new images have no performer of their own."""
    m = fake.mutations
    performer = m.create("performer", name="Gallery Only Performer")
    gallery = m.create("gallery", title="Gallery with a performer", performer_ids=[performer])
    images = [m.create("image", title=f"no performer {n}", gallery_ids=[gallery]) for n in range(3)]
    return performer, gallery, images


def assert_found_through_gallery(env, performer: int, gallery: int, images: list[int]) -> None:
    rows = env.query(
        "SELECT image_id, inherited FROM image_performers_effective WHERE performer_id = ? ORDER BY 1",
        [performer],
    )
    assert rows == [(i, True) for i in sorted(images)]
    counts = env.query(
        "SELECT scene_count, image_count, gallery_count FROM entity_counts "
        "WHERE entity_type = 'performer' AND entity_id = ?",
        [performer],
    )
    assert counts == [(0, len(images), 1)]
    gallery_counts = env.query(
        "SELECT image_count FROM entity_counts WHERE entity_type = 'gallery' AND entity_id = ?", [gallery]
    )
    assert gallery_counts == [(len(images),)]
    env.assert_consistent()


def _path_full(env):
    planted = plant_gallery_performer(env.fake)
    env.full()
    return planted


def _path_incremental(env):
    synced(env)
    planted = plant_gallery_performer(env.fake)
    env.cli("incremental")
    return planted


def _path_window(env):
    synced(env)
    planted = plant_gallery_performer(env.fake)
    env.window()  # the latest month's partition: the UI's "materialize partition"
    return planted


def _path_sync_ids(env):
    synced(env)
    performer, gallery, images = planted = plant_gallery_performer(env.fake)
    for entity_type, ids in (("performers", [performer]), ("galleries", [gallery]), ("images", images)):
        outcome = env.cli("specific", types=[entity_type], ids=ids)  # stash-pipeline sync-ids
        assert outcome.derived, "sync-ids did not recompute the derived tables"
    return planted


def _path_resync_job(env):
    synced(env)
    env.automation_tick()  # the daemon's first tick: nothing to do
    performer, gallery, images = planted = plant_gallery_performer(env.fake)
    for entity_type, ids in (("performers", [performer]), ("galleries", [gallery]), ("images", images)):
        env.resync_job(entity_type, ids)
        assert env.automation_tick(), f"the resync of {entity_type} requested no derived asset"
    return planted


def _path_sensor_run(env):
    synced(env)
    env.automation_tick()
    planted = plant_gallery_performer(env.fake)
    env.entities_only(mode="incremental")  # what a sensor or schedule launches: entities only
    assert env.automation_tick() == env.derived_keys()
    return planted


SYNC_PATHS = {
    "full": _path_full,
    "incremental": _path_incremental,
    "window": _path_window,
    "sync_ids": _path_sync_ids,
    "resync_job": _path_resync_job,
    "sensor_then_automation": _path_sensor_run,
}


@pytest.mark.parametrize("path", list(SYNC_PATHS))
def test_gallery_performer_reaches_images_by_every_path(derived_env, path):
    env = derived_env()
    performer, gallery, images = SYNC_PATHS[path](env)
    assert_found_through_gallery(env, performer, gallery, images)


def test_gallery_performer_added_to_existing_gallery(derived_env):
    """Only the gallery changes: its existing, performer-less images gain the performer."""
    env = synced(derived_env())
    truth = env.fake.truth()
    gallery = _inheriting_gallery(truth)
    inheriting = sorted(i["id"] for i in _members_first_in(truth, gallery["id"]) if not i["performer_ids"])
    performer = env.fake.mutations.create("performer", name="Late Performer")
    env.fake.mutations.gallery_update(gallery["id"], performer_ids=[performer])
    env.cli("incremental")
    rows = env.query(
        "SELECT image_id FROM image_performers_effective WHERE performer_id = ? ORDER BY 1", [performer]
    )
    assert [r[0] for r in rows] == inheriting
    assert env.query(
        "SELECT image_count FROM entity_counts WHERE entity_type = 'performer' AND entity_id = ?", [performer]
    ) == [(len(inheriting),)]
    env.assert_consistent()


# --------------------------------------------------------------------------------- tag closure
def test_tag_cycles_in_bad_data_terminate(derived_env):
    """Stash refuses cycles, but a mirror must survive a database that has them anyway."""
    env = derived_env()
    tags = env.fake.store.tables["tag"]
    a, b, c, d, e, f, loop = (t for t in list(tags)[-7:])
    tags[a]["parent_ids"] = [b]  # a <-> b
    tags[b]["parent_ids"] = [a]
    tags[c]["parent_ids"] = [d]  # c -> d -> e -> c
    tags[d]["parent_ids"] = [e]
    tags[e]["parent_ids"] = [c]
    tags[f]["parent_ids"] = [c, a]  # f hangs below both cycles
    tags[loop]["parent_ids"] = [loop]  # its own parent
    env.fake.store.touch()
    started = time.monotonic()
    env.full()
    assert time.monotonic() - started < 60
    env.assert_consistent()  # equals the breadth-first closure computed in Python

    def ancestors(tag: int) -> dict[int, int]:
        rows = env.query("SELECT ancestor_id, depth FROM tag_ancestors WHERE tag_id = ?", [tag])
        return dict(rows)

    assert ancestors(a) == {a: 0, b: 1}
    assert ancestors(c) == {c: 0, d: 1, e: 2}
    assert ancestors(e) == {e: 0, c: 1, d: 2}
    assert ancestors(f) == {f: 0, c: 1, a: 1, d: 2, b: 2, e: 3}
    assert ancestors(loop) == {loop: 0}


def _closure_con(edges: list[tuple[int, int]], n: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE tags (id BIGINT PRIMARY KEY)")
    con.execute("CREATE TABLE tag_parents (tag_id BIGINT NOT NULL, parent_id BIGINT NOT NULL)")
    con.execute(f"INSERT INTO tags SELECT range FROM range(1, {n + 1})")
    if edges:
        con.executemany("INSERT INTO tag_parents VALUES (?, ?)", edges)
    return con


def _truth_of(edges: list[tuple[int, int]], n: int) -> dict:
    parents: dict[int, list[int]] = {i: [] for i in range(1, n + 1)}
    for tag, parent in edges:
        parents[tag].append(parent)
    return {"tags": [{"id": i, "parent_ids": p} for i, p in parents.items()]}


@pytest.mark.parametrize(
    "shape",
    ["deep_chain", "diamond_lattice", "cycles_and_lattice"],
)
def test_tag_closure_shapes(shape):
    """Deep chains are not cut off, and diamonds do not multiply: a 40-level lattice of width 3
    has 3^39 paths from bottom to top, and the closure is still one row per pair."""
    if shape == "deep_chain":
        n = 300
        edges = [(i + 1, i) for i in range(1, n)]
    else:
        levels, width = 40, 3
        n = levels * width
        edges = [
            (level * width + i + 1, (level - 1) * width + j + 1)
            for level in range(1, levels)
            for i in range(width)
            for j in range(width)
        ]
        if shape == "cycles_and_lattice":
            edges += [(1, n), (2, n - 1), (n // 2, n // 2)]  # top points back at the bottom
    con = _closure_con(edges, n)
    started = time.monotonic()
    rows = rebuild(con, TAG_ANCESTORS)
    assert time.monotonic() - started < 10
    got = set(con.execute("SELECT tag_id, ancestor_id, depth FROM tag_ancestors").fetchall())
    assert rows == len(got)
    assert got == expected_tag_ancestors(_truth_of(edges, n))
    if shape == "deep_chain":
        assert (n, 1, n - 1) in got


# ----------------------------------------------------------------------------------- automation
def test_derived_automation_sensor_runs_by_default(derived_env):
    env = derived_env()
    sensor = env.defs.resolve_sensor_def("derived_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    targeted = sensor.asset_selection.resolve(env.defs.resolve_asset_graph())
    assert sorted(targeted) == env.derived_keys()
    for key in env.derived_keys():
        assert env.defs.resolve_assets_def(key).automation_conditions_by_key[key] is not None


def test_automation_requests_derived_after_an_entity_materialization(derived_env):
    env = derived_env()
    assert env.automation_tick() == []  # first tick: the baseline
    env.entities_only(types=["tags"])
    # Downstream of tags; entity_counts waits: it reads images_effective & co, never built yet.
    assert env.automation_tick() == [dg.AssetKey("scene_inherited_tags"), dg.AssetKey("tag_ancestors")]
    assert env.automation_tick() == []  # satisfied: nothing more until the next change

    env.entities_only()  # every type (the untouched ones pay a full sync: no cursor yet)
    assert env.automation_tick() == env.derived_keys()
    env.assert_consistent()
    # The derived run of the previous tick has finished; an input written after it, before the next
    # tick, must not be swallowed by that run's own materialization (eager() in 1.13 drops it).
    env.fake.mutations.update("image", env.fake.truth()["images"][0]["id"], photographer="After the run")
    env.entities_only(types=["images"], mode="incremental")
    requested = env.automation_tick()
    assert dg.AssetKey("images_effective") in requested
    assert dg.AssetKey("tag_ancestors") not in requested
    env.assert_consistent()


def test_cli_run_with_derived_leaves_nothing_for_the_daemon(derived_env):
    env = derived_env()
    env.automation_tick()
    synced(env)
    assert env.automation_tick() == []  # the same run recomputed them: no second recompute
    env.fake.mutations.update("performer", env.fake.truth()["performers"][0]["id"], tag_ids=[1])
    env.cli("incremental", types=["performers"])
    assert env.automation_tick() == []
    env.assert_consistent()
