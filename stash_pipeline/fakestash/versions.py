"""The Stash releases the fake can pretend to be, and what each one lacks.

Our own table, of what the fake's schema (``schema.graphql``, Stash's development branch of January
2026) has and a release does not, read by comparing the releases' published schemas.  A release's
schema is the fake's with these fields (``Type.field``, of object and input types) removed, so a
document that selects one is refused exactly as that release refuses it: HTTP 422, a validation
error naming the field.  Behaviour follows: a release without ``Studio.urls`` holds one URL per
studio (its ``url``).
"""

from dataclasses import dataclass

CURRENT = "current"

_FILE_FOLDERS = frozenset(
    f"{t}.{f}"
    for t in ("BaseFile", "VideoFile", "ImageFile", "GalleryFile", "Folder")
    for f in ("parent_folder", "zip_file")
)
_BASIC_FILE = frozenset(
    f"BasicFile.{f}"
    for f in (
        "id",
        "path",
        "basename",
        "parent_folder",
        "zip_file",
        "mod_time",
        "size",
        "fingerprint",
        "fingerprints",
        "created_at",
        "updated_at",
    )
)
_FILE_FILTER = frozenset(
    f"FileFilterType.{f}"
    for f in (
        "AND",
        "OR",
        "NOT",
        "mod_time",
        "scene_count",
        "image_count",
        "gallery_count",
        "created_at",
        "updated_at",
    )
) | {"Query.findFiles", "FindFilesResultType.count", "FindFilesResultType.files"}

_V30 = frozenset()
_V29 = _V30 | {
    "Studio.urls",
    "Tag.stash_ids",
    "SceneFilterType.files_filter",
    "ImageFilterType.files_filter",
    "GalleryFilterType.files_filter",
}
_V28 = _V29 | _FILE_FOLDERS | _BASIC_FILE | _FILE_FILTER | {"ImageFile.format"}
_V27 = _V28 | {
    "Tag.sort_name",
    "Performer.custom_fields",
    "StashID.updated_at",
    "SceneMarker.end_seconds",
    "Query.findSceneMarkers(ids)",  # an argument: its query takes no ids before v0.28
}


@dataclass(frozen=True)
class Release:
    name: str  # what ``fake-stash --version`` takes
    version: str  # what ``version { version }`` answers
    database_schema: int  # what ``systemStatus`` answers (the fake's value; the client ignores it)
    lacks: frozenset[str]


RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        Release("v0.27.2", "v0.27.2", 67, _V27),
        Release("v0.28.1", "v0.28.1", 70, _V28),
        Release("v0.29.3", "v0.29.3", 72, _V29),
        Release("v0.30.1", "v0.30.1", 75, _V30),
        Release(CURRENT, "v0.30.1-19-gfa6e5a5", 75, _V30),
    )
}


def release(name: str) -> Release:
    try:
        return RELEASES[name]
    except KeyError:
        raise ValueError(f"unknown Stash version {name!r}; the fake serves: {', '.join(RELEASES)}") from None
