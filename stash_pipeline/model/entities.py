"""The seven Stash entity types, each declared once: the single source the client, the mirror and
the assets are generated from (like a Singer stream or a dlt resource).

Adding a field that Stash serves is one ``Column`` here: the GraphQL selection, the Arrow decoding,
the shaping, the mirror's column (added in place to existing mirrors, ``mirror.schema``) and the
checks follow from it.
"""

from stash_pipeline.model.kinds import BOOL, DATE, FLOAT, INT, MAP, STR, STR_LIST, TIMESTAMP
from stash_pipeline.model.records import Column, Element, EntitySpec, LinkExtra, MembersFrom, Ref, Relation

SPEC_SINGULAR = {
    "studios": "studio",
    "tags": "tag",
    "performers": "performer",
    "groups": "group",
    "galleries": "gallery",
    "scenes": "scene",
    "images": "image",
    "scene_markers": "scene_marker",
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


def _child(
    owner: str,
    field: str,
    table: str,
    target: tuple[str, Column] | None,
    *extras: LinkExtra,
    element_type: str | None = None,
    target_kind=STR,
    distinct: bool = False,
    unbumped: bool = False,
) -> Relation:
    """A child table: rows that are the owner's own data, read from a list field and replaced
    whenever the owner is read.  ``target`` is (key, column) of the element's leading value, or
    None for a list of scalars (the element is the value: a play's time)."""
    owner_column = f"{owner}_id"
    if target is None:
        return Relation(
            table=table,
            field=field,
            owner_column=owner_column,
            target_column=extras[0].column,
            target_type=None,
            selection=field,
            target_path=(),
            target_kind=extras[0].kind,
            distinct=distinct,
        )
    key, column = target
    keys = " ".join(dict.fromkeys([key, *(e.key for e in extras)]))
    return Relation(
        table=table,
        field=field,
        owner_column=owner_column,
        target_column=column.name,
        target_type=None,
        selection=f"{field} {{ {keys} }}",
        target_path=(key,),
        extra=extras,
        target_kind=target_kind,
        distinct=distinct,
        element_type=element_type,
        unbumped=unbumped,
    )


def _stash_ids(owner: str) -> Relation:
    """Identifiers at stash-box endpoints (StashDB, ...): ``<owner>_stash_ids``."""
    return _child(
        owner,
        "stash_ids",
        f"{owner}_stash_ids",
        ("stash_id", Column("stash_id", STR)),
        LinkExtra("endpoint", "endpoint", STR),
        LinkExtra("updated_at", "updated_at", TIMESTAMP),
        element_type="StashID",
    )


C = Column
_SCENE_FILES = "files { path size duration }"
_IMAGE_FILES = "visual_files { ... on ImageFile { path size } ... on VideoFile { path size } }"

_BASE = ("VideoFile", "ImageFile", "GalleryFile")
_VISUAL = ("VideoFile", "ImageFile")
_VIDEO = ("VideoFile",)

FILES = EntitySpec(
    name="files",
    singular="file",
    query="findFiles",
    filter_arg="file_filter",
    filter_type="FileFilterType",
    result_key="files",
    keyset=False,
    order=8,
    element_types=_BASE,
    columns=(
        C("file_type", STR, source="file_type: __typename", on=()),  # VideoFile, ImageFile, GalleryFile
        C("path", STR, on=_BASE),
        C("basename", STR, on=_BASE),
        C(
            "parent_folder",
            STR,
            source="parent_folder { path }",
            element=Element("parent_folder", None, "path"),
            on=_BASE,
        ),
        C("zip_file", STR, source="zip_file { path }", element=Element("zip_file", None, "path"), on=_BASE),
        C("size", INT, on=_BASE),
        C("mod_time", TIMESTAMP, on=_BASE),
        # Fingerprints as Stash gives them (phash as unsigned hex), one column per type.
        C("oshash", STR, source='oshash: fingerprint(type: "oshash")', on=_BASE),
        C("md5", STR, source='md5: fingerprint(type: "md5")', on=_BASE),
        C("phash", STR, source='phash: fingerprint(type: "phash")', on=_BASE),
        C("format", STR, on=_VISUAL),
        C("width", INT, on=_VISUAL),
        C("height", INT, on=_VISUAL),
        C("duration", FLOAT, on=_VIDEO),
        C("video_codec", STR, on=_VIDEO),
        C("audio_codec", STR, on=_VIDEO),
        C("frame_rate", FLOAT, on=_VIDEO),
        C("bit_rate", INT, on=_VIDEO),
    ),
    description="Video, image and gallery (zip) files with their fingerprints and media properties; "
    "read with their owners, and on their own where Stash offers findFiles (renames, rescans).",
)


def _files(owner: str, field: str, element_types: tuple[str, ...]) -> Relation:
    """An owner's files (``<owner>_files``, primary first): the file rows go to ``files``."""
    return Relation(
        table=f"{owner}_files",
        field=field,
        owner_column=f"{owner}_id",
        target_column="file_id",
        target_type="files",
        selection=f"{field} {{ {FILES.embedded_selection(element_types)} }}",
        primary_column="is_primary",
        embedded=FILES,
        element_types=element_types,
    )


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
    relations=(*_links("studio", "studio_id", "tags"), _stash_ids("studio")),
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
        _stash_ids("tag"),  # from v0.30
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
        C("custom_fields", MAP),  # from v0.28
    ),
    relations=(*_links("performer", "performer_id", "tags"), _stash_ids("performer")),
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
        # A folder gallery's folder (a zip gallery's zip is in gallery_files).
        C("folder_path", STR, source="folder { path }", element=Element("folder", None, "path")),
    ),
    refs=(Ref("studio_id", "studio", "studios"),),
    relations=(
        *_links(
            "gallery",
            "gallery_id",
            "performers",
            "tags",
        ),
        _files("gallery", "files", ("GalleryFile",)),
        Relation(
            table="gallery_chapters",
            field="chapters",
            owner_column="gallery_id",
            target_column="chapter_id",
            target_type=None,
            selection="chapters { id title image_index created_at updated_at }",
            extra=(
                LinkExtra("title", "title", STR),
                LinkExtra("image_index", "image_index", INT),
                LinkExtra("created_at", "created_at", TIMESTAMP),
                LinkExtra("updated_at", "updated_at", TIMESTAMP),
            ),
            element_type="GalleryChapter",
            unbumped=True,  # galleryChapterCreate/Update/Destroy write the chapter row only
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
        C("interactive", BOOL),  # a funscript beside the video
        C("interactive_speed", INT),
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
        _files("scene", "files", ("VideoFile",)),
        _stash_ids("scene"),
        _child(
            "scene",
            "captions",
            "scene_captions",
            ("language_code", Column("language_code", STR)),
            LinkExtra("caption_type", "caption_type", STR),
            element_type="VideoCaption",
        ),
        # One row per event (Stash keeps them in UTC), so "plays per month" is a GROUP BY.
        _child("scene", "play_history", "scene_play_history", None, LinkExtra("played_at", "", TIMESTAMP)),
        _child("scene", "o_history", "scene_o_history", None, LinkExtra("o_at", "", TIMESTAMP)),
    ),
    activity_totals=("total_o_count", "total_play_count", "total_play_duration"),
    listed_activity=("resume_time",),
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
    relations=(
        *_links(
            "image",
            "image_id",
            "performers",
            "tags",
            "galleries",
        ),
        _files("image", "visual_files", _VISUAL),
    ),
    activity_totals=("total_o_count",),
    description="Images with their studio, performers, tags and galleries.",
)

SCENE_MARKERS = EntitySpec(
    name="scene_markers",
    singular="scene_marker",
    query="findSceneMarkers",
    filter_arg="scene_marker_filter",
    filter_type="SceneMarkerFilterType",
    result_key="scene_markers",
    keyset=False,
    order=7,
    in_stats=False,
    columns=(
        C("title", STR),
        C("seconds", FLOAT),
        C("end_seconds", FLOAT),  # from v0.28
    ),
    refs=(Ref("scene_id", "scene", "scenes"), Ref("primary_tag_id", "primary_tag", "tags")),
    relations=_links("scene_marker", "scene_marker_id", "tags"),
    description="Scene markers: a scene's moments with their title, start and end, primary tag and tags.",
)

ENTITY_SPECS: tuple[EntitySpec, ...] = (
    STUDIOS,
    TAGS,
    PERFORMERS,
    GROUPS,
    GALLERIES,
    SCENES,
    IMAGES,
    SCENE_MARKERS,
)
EMBEDDED_SPECS: tuple[EntitySpec, ...] = (FILES,)
"""Types read inside their owners' pages, with a table of their own but no asset of their own."""
SPECS_BY_NAME: dict[str, EntitySpec] = {s.name: s for s in ENTITY_SPECS}


def any_spec(name: str) -> EntitySpec:
    """A synced or an embedded type by plural name (the sensor probes files too)."""
    return next(s for s in (*ENTITY_SPECS, *EMBEDDED_SPECS) if s.name == name)


def spec_for(name: str) -> EntitySpec:
    """Look a spec up by plural or singular name, with a clear error for a typo."""
    for spec in ENTITY_SPECS:
        if name in (spec.name, spec.singular):
            return spec
    known = ", ".join(SPECS_BY_NAME)
    raise KeyError(f"unknown entity type {name!r}; expected one of: {known}")


__all__ = [
    "EMBEDDED_SPECS",
    "ENTITY_SPECS",
    "FILES",
    "SCENE_MARKERS",
    "SPECS_BY_NAME",
    "any_spec",
    "spec_for",
]
