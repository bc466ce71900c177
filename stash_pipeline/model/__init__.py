"""The typed entity model: column kinds (``kinds``), the records a type is declared with
(``records``) and the seven declarations (``entities``).  Everything else iterates it."""

from stash_pipeline.model.entities import (
    EMBEDDED_SPECS,
    ENTITY_SPECS,
    FILES,
    GALLERIES,
    GROUPS,
    IMAGES,
    PERFORMERS,
    SCENE_MARKERS,
    SCENES,
    SPECS_BY_NAME,
    STUDIOS,
    TAGS,
    spec_for,
)
from stash_pipeline.model.kinds import Kind
from stash_pipeline.model.records import Column, Element, EntitySpec, LinkExtra, MembersFrom, Ref, Relation

__all__ = [
    "EMBEDDED_SPECS",
    "ENTITY_SPECS",
    "FILES",
    "GALLERIES",
    "GROUPS",
    "IMAGES",
    "PERFORMERS",
    "SCENES",
    "SCENE_MARKERS",
    "SPECS_BY_NAME",
    "STUDIOS",
    "TAGS",
    "Column",
    "Element",
    "EntitySpec",
    "Kind",
    "LinkExtra",
    "MembersFrom",
    "Ref",
    "Relation",
    "spec_for",
]
