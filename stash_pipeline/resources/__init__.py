"""Dagster resources: the Stash client and the DuckDB mirror file."""

from stash_pipeline.resources.stash_resource import StashResource, mirror_connection, mirror_database_resource

__all__ = ["StashResource", "mirror_connection", "mirror_database_resource"]
