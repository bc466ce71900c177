"""One declarative description per Stash entity type: the single source the client, the mirror and
the assets are generated from (like a Singer stream or a dlt resource).

Adding a field is an edit here: the GraphQL selection, the mirror's columns and the link tables all
follow from these specs.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """A scalar column of the mirror table, read from GraphQL field ``source`` (default: ``name``)."""

    name: str
    kind: str  # str | int | float | bool | date | timestamp | str_list
    source: str | None = None  # GraphQL selection producing it, if not the same name
    path: tuple[str | int, ...] | None = None  # where to read it in one entity, if not (name,)
    # Stash changes this field without bumping updated_at: only full syncs refresh it (DESIGN §3).
    unbumped: bool = False

    @property
    def selection(self) -> str:
        return self.source or self.name


@dataclass(frozen=True)
class Relation:
    """A link table owned by this entity, replaced wholesale whenever the owner is fetched.

    ``selection`` is the GraphQL sub-selection; ``target_path`` reads the target id from one list
    element; ``extra`` names additional link columns (e.g. ``scene_index``) read from the element.
    """

    table: str  # mirror link table, e.g. scene_tags
    field: str  # GraphQL field on the owner, e.g. tags
    owner_column: str  # e.g. scene_id
    target_column: str  # e.g. tag_id
    target_type: str  # entity type name of the target (plural), e.g. tags
    selection: str  # e.g. "tags { id }"
    target_path: tuple[str, ...] = ("id",)
    extra: tuple[tuple[str, str, str], ...] = ()  # (column, element key, kind)
    # The join table belongs to the other side in Stash; this side refreshes it too, because Stash
    # bumps only this side when the link changes here (galleryUpdate(scene_ids), tag child_ids, ...).
    reverse: bool = False


@dataclass(frozen=True)
class EntitySpec:
    name: str  # plural, also the mirror table and asset name: scenes
    singular: str  # scene
    query: str  # findScenes
    filter_arg: str  # scene_filter
    filter_type: str  # SceneFilterType
    result_key: str  # scenes
    keyset: bool  # Stash offers an `id` criterion: page with id > last
    order: int  # dependency order (referenced types first)
    columns: tuple[Column, ...]
    relations: tuple[Relation, ...] = ()
    # Single-reference columns stored on the entity row (e.g. studio_id from studio { id }).
    refs: tuple[tuple[str, str, str], ...] = ()  # (column, GraphQL field, target type)
    description: str = ""

    @property
    def selection(self) -> str:
        """The GraphQL selection for one entity of this type (what the mirror reads)."""
        parts = ["id", "created_at", "updated_at"]
        parts += [c.selection for c in self.columns]
        parts += [f"{gql} {{ id }}" for _col, gql, _target in self.refs]
        parts += [r.selection for r in self.relations]
        return " ".join(dict.fromkeys(parts))


def _links(owner: str, owner_col: str, *items: tuple[str, str, str, str]) -> tuple[Relation, ...]:
    return tuple(
        Relation(
            table=f"{owner}_{gql}",
            field=gql,
            owner_column=owner_col,
            target_column=target_col,
            target_type=target,
            selection=f"{gql} {{ id }}",
        )
        for gql, target_col, target, _ in items
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
    order=0,
    columns=(
        C("name", "str"),
        C("aliases", "str_list"),
        C("urls", "str_list"),
        C("details", "str"),
        C("rating100", "int"),
        C("favorite", "bool"),
        C("ignore_auto_tag", "bool"),
        C("image_path", "str"),
    ),
    refs=(("parent_id", "parent_studio", "studios"),),
    relations=_links("studio", "studio_id", ("tags", "tag_id", "tags", "")),
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
    order=1,
    columns=(
        C("name", "str"),
        C("sort_name", "str"),
        C("description", "str"),
        C("aliases", "str_list"),
        C("favorite", "bool"),
        C("ignore_auto_tag", "bool"),
        C("image_path", "str"),
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
    order=2,
    columns=(
        C("name", "str"),
        C("disambiguation", "str"),
        C("gender", "str"),
        C("birthdate", "date"),
        C("death_date", "date"),
        C("ethnicity", "str"),
        C("country", "str"),
        C("eye_color", "str"),
        C("hair_color", "str"),
        C("height_cm", "int"),
        C("weight", "int"),
        C("measurements", "str"),
        C("fake_tits", "str"),
        C("penis_length", "float"),
        C("circumcised", "str"),
        C("career_length", "str"),
        C("tattoos", "str"),
        C("piercings", "str"),
        C("alias_list", "str_list"),
        C("urls", "str_list"),
        C("favorite", "bool"),
        C("ignore_auto_tag", "bool"),
        C("rating100", "int"),
        C("details", "str"),
        C("image_path", "str"),
    ),
    relations=_links("performer", "performer_id", ("tags", "tag_id", "tags", "")),
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
    order=3,
    columns=(
        C("name", "str"),
        C("aliases", "str"),
        C("duration", "int"),
        C("date", "date"),
        C("rating100", "int"),
        C("director", "str"),
        C("synopsis", "str"),
        C("urls", "str_list"),
    ),
    refs=(("studio_id", "studio", "studios"),),
    relations=(
        *_links("group", "group_id", ("tags", "tag_id", "tags", "")),
        Relation(
            table="group_parents",
            field="containing_groups",
            owner_column="group_id",
            target_column="parent_id",
            target_type="groups",
            selection="containing_groups { group { id } description }",
            target_path=("group", "id"),
            extra=(("description", "description", "str"),),
        ),
        Relation(
            table="group_parents",
            field="sub_groups",
            owner_column="parent_id",
            target_column="group_id",
            target_type="groups",
            selection="sub_groups { group { id } description }",
            target_path=("group", "id"),
            extra=(("description", "description", "str"),),
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
        C("title", "str"),
        C("code", "str"),
        C("date", "date"),
        C("details", "str"),
        C("photographer", "str"),
        C("urls", "str_list"),
        C("rating100", "int"),
        C("organized", "bool"),
    ),
    refs=(("studio_id", "studio", "studios"),),
    relations=(
        *_links(
            "gallery",
            "gallery_id",
            ("performers", "performer_id", "performers", ""),
            ("tags", "tag_id", "tags", ""),
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
        C("title", "str"),
        C("code", "str"),
        C("details", "str"),
        C("director", "str"),
        C("date", "date"),
        C("urls", "str_list"),
        C("rating100", "int"),
        C("organized", "bool"),
        C("o_counter", "int", unbumped=True),
        C("play_count", "int", unbumped=True),
        C("play_duration", "float", unbumped=True),
        C("resume_time", "float", unbumped=True),
        C("last_played_at", "timestamp", unbumped=True),
        # The primary file (files[0]) gives path, size and duration.
        C("path", "str", source=_SCENE_FILES, path=("files", 0, "path")),
        C("filesize", "int", source=_SCENE_FILES, path=("files", 0, "size")),
        C("duration", "float", source=_SCENE_FILES, path=("files", 0, "duration")),
    ),
    refs=(("studio_id", "studio", "studios"),),
    relations=(
        *_links(
            "scene",
            "scene_id",
            ("performers", "performer_id", "performers", ""),
            ("tags", "tag_id", "tags", ""),
            ("galleries", "gallery_id", "galleries", ""),
        ),
        Relation(
            table="scene_groups",
            field="groups",
            owner_column="scene_id",
            target_column="group_id",
            target_type="groups",
            selection="groups { group { id } scene_index }",
            target_path=("group", "id"),
            extra=(("scene_index", "scene_index", "int"),),
        ),
    ),
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
        C("title", "str"),
        C("code", "str"),
        C("date", "date"),
        C("details", "str"),
        C("photographer", "str"),
        C("urls", "str_list"),
        C("rating100", "int"),
        C("organized", "bool"),
        C("o_counter", "int", unbumped=True),
        C("path", "str", source=_IMAGE_FILES, path=("visual_files", 0, "path")),
        C("filesize", "int", source=_IMAGE_FILES, path=("visual_files", 0, "size")),
    ),
    refs=(("studio_id", "studio", "studios"),),
    relations=_links(
        "image",
        "image_id",
        ("performers", "performer_id", "performers", ""),
        ("tags", "tag_id", "tags", ""),
        ("galleries", "gallery_id", "galleries", ""),
    ),
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


__all__ = ["ENTITY_SPECS", "SPECS_BY_NAME", "Column", "EntitySpec", "Relation", "spec_for"]
