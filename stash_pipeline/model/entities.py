"""The seven Stash entity types, each declared once: the single source the client, the mirror and
the assets are generated from (like a Singer stream or a dlt resource).

Adding a field that Stash serves is one ``Column`` here: the GraphQL selection, the Arrow decoding,
the shaping, the mirror's column (added in place to existing mirrors, ``mirror.schema``) and the
checks follow from it.
"""

from stash_pipeline.model.kinds import BOOL, DATE, FLOAT, INT, STR, STR_LIST, TIMESTAMP
from stash_pipeline.model.records import Column, Element, EntitySpec, LinkExtra, MembersFrom, Ref, Relation

SPEC_SINGULAR = {
    "studios": "studio",
    "tags": "tag",
    "performers": "performer",
    "groups": "group",
    "galleries": "gallery",
    "scenes": "scene",
    "images": "image",
}


def _links(owner: str, owner_col: str, *targets: str) -> tuple[Relation, ...]:
    """Plain id links named after the owner and the target type: scene_tags(scene_id, tag_id)."""
    return tuple(
        Relation(
            table=f"{owner}_{target}",
            field=target,
            owner_column=owner_col,
            target_column=f"{SPEC_SINGULAR[target]}_id",
            target_type=target,
            selection=f"{target} {{ id }}",
        )
        for target in targets
    )


C = Column
_SCENE_FILES = "files { path size duration }"
_IMAGE_FILES = "visual_files { ... on ImageFile { path size } ... on VideoFile { path size } }"

STUDIOS = EntitySpec(
    name="studios",
    singular="studio",
    query="findStudios",
    filter_arg="studio_filter",
    filter_type="StudioFilterType",
    result_key="studios",
    keyset=False,
    reread_all_after_delete=True,
    order=0,
    columns=(
        C("name", STR),
        C("aliases", STR_LIST),
        C("urls", STR_LIST, fallback="url"),
        C("details", STR),
        C("rating100", INT),
        C("favorite", BOOL),
        C("ignore_auto_tag", BOOL),
        C("image_path", STR),
    ),
    refs=(Ref("parent_id", "parent_studio", "studios"),),
    relations=_links("studio", "studio_id", "tags"),
    description="Studios, with their parent studio and tags.",
)

TAGS = EntitySpec(
    name="tags",
    singular="tag",
    query="findTags",
    filter_arg="tag_filter",
    filter_type="TagFilterType",
    result_key="tags",
    keyset=False,
    reread_all_after_delete=True,
    order=1,
    columns=(
        C("name", STR),
        C("sort_name", STR),
        C("description", STR),
        C("aliases", STR_LIST),
        C("favorite", BOOL),
        C("ignore_auto_tag", BOOL),
        C("image_path", STR),
    ),
    relations=(
        Relation(
            table="tag_parents",
            field="parents",
            owner_column="tag_id",
            target_column="parent_id",
            target_type="tags",
            selection="parents { id }",
        ),
        Relation(
            table="tag_parents",
            field="children",
            owner_column="parent_id",
            target_column="tag_id",
            target_type="tags",
            selection="children { id }",
            reverse=True,
        ),
    ),
    description="Tags and their parent DAG.",
)

PERFORMERS = EntitySpec(
    name="performers",
    singular="performer",
    query="findPerformers",
    filter_arg="performer_filter",
    filter_type="PerformerFilterType",
    result_key="performers",
    keyset=False,
    reread_all_after_delete=True,
    order=2,
    columns=(
        C("name", STR),
        C("disambiguation", STR),
        C("gender", STR),
        C("birthdate", DATE),
        C("death_date", DATE),
        C("ethnicity", STR),
        C("country", STR),
        C("eye_color", STR),
        C("hair_color", STR),
        C("height_cm", INT),
        C("weight", INT),
        C("measurements", STR),
        C("fake_tits", STR),
        C("penis_length", FLOAT),
        C("circumcised", STR),
        C("career_length", STR),
        C("tattoos", STR),
        C("piercings", STR),
        C("alias_list", STR_LIST),
        C("urls", STR_LIST),
        C("favorite", BOOL),
        C("ignore_auto_tag", BOOL),
        C("rating100", INT),
        C("details", STR),
        C("image_path", STR),
    ),
    relations=_links("performer", "performer_id", "tags"),
    description="Performers and their tags.",
)

GROUPS = EntitySpec(
    name="groups",
    singular="group",
    query="findGroups",
    filter_arg="group_filter",
    filter_type="GroupFilterType",
    result_key="groups",
    keyset=False,
    reread_all_after_delete=True,
    order=3,
    columns=(
        C("name", STR),
        C("aliases", STR),
        C("duration", INT),
        C("date", DATE),
        C("rating100", INT),
        C("director", STR),
        C("synopsis", STR),
        C("urls", STR_LIST),
    ),
    refs=(Ref("studio_id", "studio", "studios"),),
    relations=(
        *_links("group", "group_id", "tags"),
        Relation(
            table="group_parents",
            field="containing_groups",
            owner_column="group_id",
            target_column="parent_id",
            target_type="groups",
            selection="containing_groups { group { id } description }",
            target_path=("group", "id"),
            extra=(LinkExtra("description", "description", STR),),
            unbumped=True,  # addGroupSubGroups / removeGroupSubGroups bump neither group
        ),
        Relation(
            table="group_parents",
            field="sub_groups",
            owner_column="parent_id",
            target_column="group_id",
            target_type="groups",
            selection="sub_groups { group { id } description }",
            target_path=("group", "id"),
            extra=(LinkExtra("description", "description", STR),),
            reverse=True,
        ),
    ),
    description="Groups (formerly movies), their studio, tags and containing groups.",
)

GALLERIES = EntitySpec(
    name="galleries",
    singular="gallery",
    query="findGalleries",
    filter_arg="gallery_filter",
    filter_type="GalleryFilterType",
    result_key="galleries",
    keyset=True,
    order=4,
    columns=(
        C("title", STR),
        C("code", STR),
        C("date", DATE),
        C("details", STR),
        C("photographer", STR),
        C("urls", STR_LIST),
        C("rating100", INT),
        C("organized", BOOL),
    ),
    refs=(Ref("studio_id", "studio", "studios"),),
    relations=(
        *_links(
            "gallery",
            "gallery_id",
            "performers",
            "tags",
        ),
        Relation(
            table="scene_galleries",
            field="scenes",
            owner_column="gallery_id",
            target_column="scene_id",
            target_type="scenes",
            selection="scenes { id }",
            reverse=True,
        ),
    ),
    members_from=MembersFrom("images", "galleries"),
    description="Galleries with their studio, performers, tags and scenes; image membership is on images.",
)

SCENES = EntitySpec(
    name="scenes",
    singular="scene",
    query="findScenes",
    filter_arg="scene_filter",
    filter_type="SceneFilterType",
    result_key="scenes",
    keyset=True,
    order=5,
    columns=(
        C("title", STR),
        C("code", STR),
        C("details", STR),
        C("director", STR),
        C("date", DATE),
        C("urls", STR_LIST),
        C("rating100", INT),
        C("organized", BOOL),
        C("o_counter", INT, unbumped=True),
        C("play_count", INT, unbumped=True),
        C("play_duration", FLOAT, unbumped=True),
        C("resume_time", FLOAT, unbumped=True),
        C("last_played_at", TIMESTAMP, unbumped=True),
        # The primary file (files[0]) gives path, size and duration.
        C("path", STR, source=_SCENE_FILES, element=Element("files", 0, "path")),
        C("filesize", INT, source=_SCENE_FILES, element=Element("files", 0, "size")),
        C("duration", FLOAT, source=_SCENE_FILES, element=Element("files", 0, "duration")),
    ),
    refs=(Ref("studio_id", "studio", "studios"),),
    relations=(
        *_links(
            "scene",
            "scene_id",
            "performers",
            "tags",
            "galleries",
        ),
        Relation(
            table="scene_groups",
            field="groups",
            owner_column="scene_id",
            target_column="group_id",
            target_type="groups",
            selection="groups { group { id } scene_index }",
            target_path=("group", "id"),
            extra=(LinkExtra("scene_index", "scene_index", INT),),
        ),
    ),
    activity_totals=("total_o_count", "total_play_count", "total_play_duration"),
    description="Scenes with their studio, performers, tags, galleries, groups and primary file.",
)

IMAGES = EntitySpec(
    name="images",
    singular="image",
    query="findImages",
    filter_arg="image_filter",
    filter_type="ImageFilterType",
    result_key="images",
    keyset=True,
    order=6,
    columns=(
        C("title", STR),
        C("code", STR),
        C("date", DATE),
        C("details", STR),
        C("photographer", STR),
        C("urls", STR_LIST),
        C("rating100", INT),
        C("organized", BOOL),
        C("o_counter", INT, unbumped=True),
        C("path", STR, source=_IMAGE_FILES, element=Element("visual_files", 0, "path")),
        C("filesize", INT, source=_IMAGE_FILES, element=Element("visual_files", 0, "size")),
    ),
    refs=(Ref("studio_id", "studio", "studios"),),
    relations=_links(
        "image",
        "image_id",
        "performers",
        "tags",
        "galleries",
    ),
    activity_totals=("total_o_count",),
    description="Images with their studio, performers, tags and galleries.",
)

ENTITY_SPECS: tuple[EntitySpec, ...] = (STUDIOS, TAGS, PERFORMERS, GROUPS, GALLERIES, SCENES, IMAGES)
SPECS_BY_NAME: dict[str, EntitySpec] = {s.name: s for s in ENTITY_SPECS}


def spec_for(name: str) -> EntitySpec:
    """Look a spec up by plural or singular name, with a clear error for a typo."""
    for spec in ENTITY_SPECS:
        if name in (spec.name, spec.singular):
            return spec
    known = ", ".join(SPECS_BY_NAME)
    raise KeyError(f"unknown entity type {name!r}; expected one of: {known}")


__all__ = ["ENTITY_SPECS", "SPECS_BY_NAME", "spec_for"]
