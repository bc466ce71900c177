"""Transport, health queries and GraphQL features of the fake server, over real HTTP."""

import socket

import httpx

from stash_pipeline.fakestash.app import FakeStash
from stash_pipeline.fakestash.server import serve
from stash_pipeline.model import ENTITY_SPECS


def test_healthz_needs_no_key(make_fake_server) -> None:
    server = make_fake_server(FakeStash(api_key="secret"))
    response = httpx.get(server.url + "/healthz")
    assert response.status_code == 200
    assert response.text == "."


def test_serve_context_manager_closes_the_port() -> None:
    with serve(FakeStash()) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url + "/healthz").status_code == 200
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0


def test_keep_alive_reuses_one_connection(gql) -> None:
    ports = set()
    for _ in range(5):
        with gql.client.stream("POST", "/graphql", json={"query": "{ stats { scene_count } }"}) as response:
            assert response.headers["Cache-Control"] == "no-store"
            stream = response.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr")[1])
            response.read()
    assert len(ports) == 1


def test_version_status_and_stats(gql, small_fake) -> None:
    data = gql.data(
        "{ version { version hash build_time } systemStatus { status databaseSchema appSchema os }"
        " stats { scene_count image_count gallery_count performer_count studio_count group_count tag_count } }"
    )
    assert (
        data["version"]["version"] == small_fake.release.version == "v0.30.1-19-gfa6e5a5"
    )  # a development build
    assert data["version"]["hash"]
    build_time = data["version"]["build_time"]
    assert len(build_time) == 19
    assert build_time[10] == " "
    assert build_time[4] == "-"
    assert data["systemStatus"] == {"status": "OK", "databaseSchema": 75, "appSchema": 75, "os": "linux"}
    counts = small_fake.store.counts()
    # Stash's stats count the seven types, not markers.
    assert data["stats"] == {f"{kind}_count": counts[kind] for kind in counts if kind != "scene_marker"}


def test_every_entity_spec_selection_is_served(gql, small_fake) -> None:
    for spec in ENTITY_SPECS:
        query = (
            f'{{ {spec.query}(filter: {{per_page: -1, sort: "id"}}) '
            f"{{ count {spec.result_key} {{ {spec.selection} }} }} }}"
        )
        result = gql.data(query)[spec.query]
        table = small_fake.store.tables[spec.singular]
        assert result["count"] == len(table)
        items = result[spec.result_key]
        assert [int(item["id"]) for item in items] == sorted(table)
        assert all(isinstance(item["id"], str) for item in items)
        first = items[0]
        row = table[int(first["id"])]
        assert first["updated_at"] == row["updated_at"]
        for column in spec.columns:
            if column.source is None:
                assert first[column.name] == row[column.name], (spec.name, column.name)


def test_scene_relations_and_files(gql, small_fake) -> None:
    scene = next(
        s for s in small_fake.store.tables["scene"].values() if s["tag_ids"] and s["files"] and s["studio_id"]
    )
    data = gql.data(
        """query($id: ID!) { findScene(id: $id) {
             id studio { id name } tags { id name } performers { id name }
             groups { group { id name } scene_index }
             files { id size path fingerprints { type value } } } }""",
        {"id": str(scene["id"])},
    )["findScene"]
    store = small_fake.store
    assert data["studio"] == {
        "id": str(scene["studio_id"]),
        "name": store.tables["studio"][scene["studio_id"]]["name"],
    }
    assert [t["name"] for t in data["tags"]] == [store.tables["tag"][t]["name"] for t in scene["tag_ids"]]
    assert [int(g["group"]["id"]) for g in data["groups"]] == [g for g, _ in scene["groups"]]
    assert isinstance(data["files"][0]["size"], int)  # Int64: a JSON number, not a string
    assert data["files"][0]["path"] == scene["files"][0]["path"]
    assert gql.data('{ findScene(id: "999999") { id } }') == {"findScene": None}


def test_gallery_studio_tag_group_relations(gql, small_fake) -> None:
    store = small_fake.store
    gallery = next(g for g in store.tables["gallery"].values() if store.gallery_images.get(g["id"]))
    data = gql.data(
        f'{{ findGallery(id: "{gallery["id"]}") {{ image_count scenes {{ id }} cover {{ id }} }} }}'
    )["findGallery"]
    assert data["image_count"] == len(store.gallery_images[gallery["id"]])
    assert [int(s["id"]) for s in data["scenes"]] == sorted(store.gallery_scenes.get(gallery["id"], ()))
    assert data["cover"] is not None

    child = next(s for s in store.tables["studio"].values() if s["parent_id"])
    parent = gql.data(
        f'{{ findStudio(id: "{child["parent_id"]}") {{ child_studios {{ id }} parent_studio {{ id }} }} }}'
    )["findStudio"]
    assert {"id": str(child["id"])} in parent["child_studios"]

    tag = next(t for t in store.tables["tag"].values() if t["parent_ids"])
    parent_tag = gql.data(f'{{ findTag(id: "{tag["parent_ids"][0]}") {{ children {{ id name }} }} }}')[
        "findTag"
    ]
    assert {"id": str(tag["id"]), "name": tag["name"]} in parent_tag["children"]

    mut = small_fake.mutations
    mut.add_group_sub_groups(1, [2])
    groups = gql.data(
        '{ findGroups(ids: ["1", "2"]) { groups { id sub_groups { group { id name } description }'
        " containing_groups { group { id } description } } } }"
    )["findGroups"]["groups"]
    assert groups[0]["sub_groups"][0]["group"]["id"] == "2"
    assert groups[0]["sub_groups"][0]["group"]["name"] == store.tables["group"][2]["name"]
    assert groups[1]["containing_groups"][0]["group"] == {"id": "1"}


def test_aliases_fragments_typename_and_nested_variables(gql, small_fake) -> None:
    image = next(i for i in small_fake.store.tables["image"].values() if i["files"])
    query = """
      fragment Bits on Image { key: id __typename ...on Image { t: title } }
      query Q($ids: [ID!], $fp: String!) {
        first: findImages(ids: $ids) { n: count images { ...Bits
          visual_files { __typename ... on ImageFile { p: path md5: fingerprint(type: $fp) }
                                    ... on VideoFile { p: path duration } } } }
        __typename
      }"""
    data = gql.data(query, {"ids": [str(image["id"])], "fp": "md5"})
    assert data["__typename"] == "Query"
    result = data["first"]
    assert result["n"] == 1
    item = result["images"][0]
    assert item["key"] == str(image["id"])
    assert item["__typename"] == "Image"
    assert item["t"] == image["title"]
    visual = item["visual_files"][0]
    assert visual["__typename"] == image["files"][0]["__typename"]
    assert visual["p"] == image["files"][0]["path"]
    if visual["__typename"] == "ImageFile":
        md5 = next(fp["value"] for fp in image["files"][0]["fingerprints"] if fp["type"] == "md5")
        assert visual["md5"] == md5


def test_skip_and_include_directives(gql) -> None:
    query = 'query($s: Boolean!) { findScenes(filter: {per_page: 1, sort: "id"}) { count @skip(if: $s) scenes { id } } }'
    assert "count" not in gql.data(query, {"s": True})["findScenes"]
    assert "count" in gql.data(query, {"s": False})["findScenes"]


def test_introspection_is_answered(gql) -> None:
    data = gql.data('{ __type(name: "Scene") { name fields { name } } }')
    assert data["__type"]["name"] == "Scene"
    assert "updated_at" in {f["name"] for f in data["__type"]["fields"]}


def test_validation_and_parse_errors_are_422(gql) -> None:
    errors = gql.errors("{ findScenes { count nonsense } }", status=422)
    assert "nonsense" in errors[0]
    assert gql.errors("{ findScenes { ", status=422)
    errors = gql.errors(
        "query($d: SortDirectionEnum) { findScenes(filter: {direction: $d}) { count } }",
        {"d": "UP"},
        status=422,
    )
    assert "UP" in errors[0]
    bad_json = gql.client.post("/graphql", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400


def test_execution_error_shape(gql) -> None:
    response = gql.post('{ findScenes(filter: {sort: "bogus"}) { count } }')
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"] == [{"message": "invalid sort: bogus", "path": ["findScenes"]}]


def test_stats_totals_follow_every_write(gql, small_fake) -> None:
    """The totals are cached until the next write: each answer is the store's sums at that moment."""
    totals = (
        "stats { total_o_count total_play_count total_play_duration scenes_played scenes_size images_size }"
    )

    def expected() -> dict:
        scenes = small_fake.store.tables["scene"].values()
        images = small_fake.store.tables["image"].values()
        size = lambda rows: float(sum(r["files"][0]["size"] for r in rows if r["files"]))  # noqa: E731
        return {
            "total_o_count": sum(r["o_counter"] or 0 for r in scenes)
            + sum(r["o_counter"] or 0 for r in images),
            "total_play_count": sum(r["play_count"] or 0 for r in scenes),
            "total_play_duration": float(sum(r["play_duration"] or 0 for r in scenes)),
            "scenes_played": sum(1 for r in scenes if r["play_count"]),
            "scenes_size": size(scenes),
            "images_size": size(images),
        }

    before = gql.data("{ " + totals + " }")["stats"]
    assert before == expected()
    scene = next(r["id"] for r in small_fake.store.tables["scene"].values() if not r["play_count"])
    image = next(iter(small_fake.store.tables["image"]))
    small_fake.mutations.scene_add_o(scene)
    small_fake.mutations.scene_add_play(scene)
    small_fake.mutations.image_increment_o(image)
    after = gql.data("{ " + totals + " }")["stats"]
    assert after == expected()
    assert after["total_o_count"] == before["total_o_count"] + 2
    assert after["total_play_count"] == before["total_play_count"] + 1
    assert after["scenes_played"] == before["scenes_played"] + 1
