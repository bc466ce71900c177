"""The smart-sync sensor against a real fake Stash and a real Dagster test instance."""

import dagster as dg
import duckdb
import pytest

from stash_pipeline.assets.entities import ENTITY_OP
from stash_pipeline.definitions import build_definitions
from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.generator import LibrarySize
from stash_pipeline.settings import Settings
from stash_pipeline_tests.dagster_instance import project_test_instance
from stash_pipeline_tests.expected_mirror import mirror_differences
from stash_pipeline_tests.sync_harness import ENTITY_NAMES, PARTITION_START, all_partition_tags


@pytest.fixture
def world(tmp_path, make_fake_server):
    fake = FakeStash.generated(LibrarySize(scenes=80, images=240), seed=11)
    server = make_fake_server(fake)
    settings = Settings(
        stash_url=server.url,
        db_path=str(tmp_path / "m.duckdb"),
        partition_start=PARTITION_START,
        page_size=100,
    )
    defs = build_definitions(settings)
    with project_test_instance() as instance:
        yield fake, defs, instance, settings


def full_sync(defs, instance):
    job = defs.resolve_job_def("stash_sync")
    config = {"ops": {ENTITY_OP: {"config": {"mode": "full"}}}}
    result = job.execute_in_process(instance=instance, run_config=config, tags=all_partition_tags())
    assert result.success


def tick(defs, instance, sensor_name="stash_smart_sync"):
    sensor = defs.resolve_sensor_def(sensor_name)
    context = dg.build_sensor_context(
        instance=instance, definitions=defs, resources={"stash": defs.resources["stash"]}
    )
    return sensor.evaluate_tick(context)


def launch(defs, instance, request):
    job = defs.resolve_job_def("stash_sync")
    return job.execute_in_process(
        instance=instance,
        asset_selection=request.asset_selection,
        run_config=request.run_config,
        tags=request.tags,
    )


def one_run_then_quiet(world, types: list[str]) -> str:
    """One tick (one request) asks for one run of exactly ``types``; the run makes the mirror
    equal to Stash, and the next tick is quiet.  Returns the request's run key."""
    fake, defs, instance, settings = world
    before = fake.request_count
    (request,) = tick(defs, instance).run_requests
    assert fake.request_count - before == 1
    assert [k.path[-1] for k in request.asset_selection] == types
    assert launch(defs, instance, request).success
    with duckdb.connect(settings.db_path, read_only=True) as con:
        assert mirror_differences(con, fake.truth()) == []
    assert tick(defs, instance).run_requests == []
    return request.run_key


def test_unchanged_stash_costs_one_request_and_launches_nothing(world):
    fake, defs, instance, _settings = world
    full_sync(defs, instance)
    before = fake.request_count
    result = tick(defs, instance)
    assert fake.request_count - before <= 2
    assert result.run_requests == []
    assert "no change" in result.skip_message


def test_one_scene_edit_launches_one_scenes_run_and_derived_follow(world):
    fake, defs, instance, settings = world
    derived = dg.AssetKey("scene_inherited_tags")
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    full_sync(defs, instance)
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
    assert evaluation.get_num_requested(derived) == 1
    derived_job = defs.resolve_implicit_global_asset_job_def()
    derived_keys = [
        k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[-1] not in set(ENTITY_NAMES)
    ]
    assert derived_job.execute_in_process(instance=instance, asset_selection=derived_keys).success
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
    assert evaluation.get_num_requested(derived) == 0
    scene = fake.truth()["scenes"][3]["id"]
    fake.mutations.update("scene", scene, title="edited for the sensor")
    result = tick(defs, instance)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.asset_selection == [dg.AssetKey("scenes")]
    assert (
        request.tags["dagster/asset_partition_range_end"] == request.tags["dagster/asset_partition_range_end"]
    )
    run = launch(defs, instance, request)
    assert run.success
    with duckdb.connect(settings.db_path, read_only=True) as con:
        assert mirror_differences(con, fake.truth()) == []
    # The derived tables follow any upstream materialization, whoever launched it.
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
    assert evaluation.get_num_requested(derived) == 1
    # And the next tick sees nothing new.
    assert tick(defs, instance).run_requests == []


def test_performer_deletion_launches_a_run_that_removes_it(world):
    fake, defs, instance, settings = world
    full_sync(defs, instance)
    performer = fake.truth()["performers"][2]["id"]
    fake.mutations.destroy("performer", [performer])
    result = tick(defs, instance)
    assert [r.asset_selection for r in result.run_requests] == [[dg.AssetKey("performers")]]
    assert launch(defs, instance, result.run_requests[0]).success
    with duckdb.connect(settings.db_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM performers WHERE id = ?", [performer]).fetchall() == [(0,)]
        assert mirror_differences(con, fake.truth()) == []


def test_same_state_gives_the_same_run_key(world):
    fake, defs, instance, _settings = world
    full_sync(defs, instance)
    fake.mutations.update("tag", fake.truth()["tags"][0]["id"], description="x")
    first, second = tick(defs, instance), tick(defs, instance)
    assert first.run_requests[0].run_key == second.run_requests[0].run_key


def test_stash_down_skips_with_a_reason(world):
    _fake, defs, instance, settings = world
    full_sync(defs, instance)
    dead = build_definitions(
        Settings(
            stash_url="http://127.0.0.1:9",
            db_path=settings.db_path,
            partition_start=PARTITION_START,
            retries=0,
        )
    )
    result = tick(dead, instance)
    assert result.run_requests == []
    assert "unreachable" in result.skip_message


def test_no_request_while_a_sync_run_is_active(world):
    fake, defs, instance, _settings = world
    full_sync(defs, instance)
    fake.mutations.update("scene", fake.truth()["scenes"][0]["id"], title="changed")
    job = defs.resolve_job_def("stash_sync")
    instance.create_run_for_job(
        job_def=job, status=dg.DagsterRunStatus.STARTED, asset_selection=frozenset({dg.AssetKey("scenes")})
    )
    result = tick(defs, instance)
    assert result.run_requests == []
    assert "queued or running" in result.skip_message


def test_sensors_and_schedules_defaults(world):
    _fake, defs, _instance, _settings = world
    assert defs.resolve_sensor_def("stash_smart_sync").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_sensor_def("derived_automation").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_schedule_def("nightly_full_sync").default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.resolve_schedule_def("nightly_full_sync").cron_schedule == "0 3 * * *"
    assert (
        defs.resolve_schedule_def("interval_incremental_sync").default_status
        == dg.DefaultScheduleStatus.STOPPED
    )


@pytest.mark.parametrize(
    ("name", "mode"), [("nightly_full_sync", "full"), ("interval_incremental_sync", "incremental")]
)
def test_schedules_request_every_type_over_every_partition(world, name, mode):
    _fake, defs, instance, settings = world
    schedule = defs.resolve_schedule_def(name)
    context = dg.build_schedule_context(instance=instance)
    request = schedule.evaluate_tick(context).run_requests[0]
    keys = defs.resolve_assets_def(dg.AssetKey("scenes")).partitions_def.get_partition_keys()
    assert request.tags["dagster/asset_partition_range_start"] == keys[0]
    assert request.tags["dagster/asset_partition_range_end"] == keys[-1]
    assert request.run_config["ops"] == {ENTITY_OP: {"config": {"mode": mode}}}
    assert request.asset_selection is None  # the job's selection: every entity type
    assert schedule.execution_timezone == settings.schedule_timezone


def test_a_single_play_or_image_o_launches_a_run_of_that_type(world):
    """Plays and O counts bump nothing; Stash's stats totals in the same probe request move."""
    fake, defs, instance, settings = world
    full_sync(defs, instance)
    scene = fake.truth()["scenes"][0]["id"]
    fake.mutations.scene_add_play(scene)
    result = tick(defs, instance)
    (request,) = result.run_requests
    assert [k.path[-1] for k in request.asset_selection] == ["scenes"]
    assert launch(defs, instance, request).success
    with duckdb.connect(settings.db_path, read_only=True) as con:
        assert mirror_differences(con, fake.truth()) == []
    before = fake.request_count
    assert tick(defs, instance).run_requests == []
    assert fake.request_count - before == 1

    fake.mutations.image_increment_o(fake.truth()["images"][3]["id"])
    (request,) = tick(defs, instance).run_requests
    # total_o_count counts scenes and images alike: both are checked, one finds the change.
    assert {k.path[-1] for k in request.asset_selection} == {"scenes", "images"}
    assert launch(defs, instance, request).success
    with duckdb.connect(settings.db_path, read_only=True) as con:
        assert mirror_differences(con, fake.truth()) == []
    assert tick(defs, instance).run_requests == []


def test_a_sub_group_added_without_a_bump_launches_a_groups_run(world):
    fake, defs, instance, _settings = world
    full_sync(defs, instance)
    groups = [g["id"] for g in fake.truth()["groups"] if not g["containing"]]
    keys = []
    for change in (
        lambda: fake.mutations.add_group_sub_groups(groups[0], [groups[-1]]),
        lambda: fake.mutations.remove_group_sub_groups(groups[0], [groups[-1]]),
        lambda: fake.mutations.add_group_sub_groups(groups[0], [groups[-1]]),  # a state seen before
    ):
        change()
        keys.append(one_run_then_quiet(world, ["groups"]))
    assert len(set(keys)) == 3  # the daemon would drop a request whose key it has seen


def test_a_file_rename_launches_a_run_of_its_owner(world):
    """A rename bumps only the file: the file stamps in the same probe request differ."""
    fake, defs, instance, settings = world
    full_sync(defs, instance)
    scene = next(s for s in fake.truth()["scenes"] if s["files"])
    fake.mutations.file_rename(scene["files"][0]["id"], "/data/videos/moved/renamed.mp4")
    before = fake.request_count
    (request,) = tick(defs, instance).run_requests
    assert fake.request_count - before == 1
    assert [k.path[-1] for k in request.asset_selection] == ["scenes"]
    assert launch(defs, instance, request).success
    with duckdb.connect(settings.db_path, read_only=True) as con:
        assert mirror_differences(con, fake.truth()) == []
        assert con.execute("SELECT path FROM files WHERE id = ?", [scene["files"][0]["id"]]).fetchall() == [
            ("/data/videos/moved/renamed.mp4",)
        ]
    before = fake.request_count
    assert tick(defs, instance).run_requests == []
    assert fake.request_count - before == 1


def test_a_new_marker_launches_a_markers_run(world):
    fake, defs, instance, settings = world
    full_sync(defs, instance)
    truth = fake.truth()
    fake.mutations.marker_create(
        truth["scenes"][0]["id"], "sensor marker", 4.0, truth["scene_markers"][0]["primary_tag_id"]
    )
    (request,) = tick(defs, instance).run_requests
    assert [k.path[-1] for k in request.asset_selection] == ["scene_markers"]
    assert launch(defs, instance, request).success
    with duckdb.connect(settings.db_path, read_only=True) as con:
        assert mirror_differences(con, fake.truth()) == []
    assert tick(defs, instance).run_requests == []


def test_a_gallery_chapter_added_without_a_bump_launches_a_galleries_run_then_quiet(world):
    """The chapter's timestamps come as Stash's text and are mirrored as TIMESTAMPTZ: the link
    digest must treat both as the same instant, or every later tick would launch a run."""
    fake, defs, instance, settings = world
    full_sync(defs, instance)
    fake.mutations.chapter_create(fake.truth()["galleries"][0]["id"], "Sensor chapter", 1)
    (request,) = tick(defs, instance).run_requests
    assert [k.path[-1] for k in request.asset_selection] == ["galleries"]
    assert launch(defs, instance, request).success
    with duckdb.connect(settings.db_path, read_only=True) as con:
        assert mirror_differences(con, fake.truth()) == []
    before = fake.request_count
    assert tick(defs, instance).run_requests == []
    assert fake.request_count - before <= 2


def test_a_resume_point_saved_without_a_play_launches_a_scenes_run(world):
    """A resume point saved or reset moves none of Stash's stats totals: the sensor lists the
    scenes with one, in the same probe request, and compares their digest with the last sync's."""
    fake, defs, instance, _settings = world
    full_sync(defs, instance)
    scenes = fake.truth()["scenes"]
    resumed = next(s for s in scenes if s["resume_time"])
    idle = next(s for s in scenes if not s["resume_time"] and not s["play_duration"])

    def stats_totals():
        with defs.resources["stash"].client() as client:
            return client.activity_totals()

    totals = stats_totals()
    keys = []
    for change in (
        lambda: fake.mutations.scene_save_activity(resumed["id"], resume_time=resumed["resume_time"] + 17.5),
        lambda: fake.mutations.scene_reset_activity(resumed["id"]),  # back to none
        lambda: fake.mutations.scene_save_activity(idle["id"], resume_time=42.0),  # a first one
        lambda: fake.mutations.scene_reset_activity(idle["id"]),
        lambda: fake.mutations.scene_save_activity(idle["id"], resume_time=42.0),  # a state seen before
    ):
        change()
        assert stats_totals() == totals  # nothing the totals probe could see
        keys.append(one_run_then_quiet(world, ["scenes"]))
    assert len(set(keys)) == len(keys)  # each a new run, none deduplicated by its key


def test_an_upgrade_of_stash_pipeline_that_changes_the_tables_launches_a_run_of_every_type(
    world, monkeypatch
):
    """The sensor never opens the mirror: it tells an upgrade by the tables' layout the last sync
    recorded (a new version's ``layout_digest`` differs), and the run brings the mirror to it."""
    _fake, defs, instance, _settings = world
    full_sync(defs, instance)  # nothing changes in Stash after it: the layout is the only reason
    assert tick(defs, instance).run_requests == []
    monkeypatch.setattr("stash_pipeline.automation.probe.layout_digest", lambda: "a-newer-layout")
    (request,) = tick(defs, instance).run_requests
    assert [k.path[-1] for k in request.asset_selection] == ENTITY_NAMES
    monkeypatch.setattr("stash_pipeline.assets.metadata.layout_digest", lambda: "a-newer-layout")
    assert launch(defs, instance, request).success
    assert tick(defs, instance).run_requests == []
