"""The asset-check tests drive the same environment as the derived-table tests."""

from stash_pipeline_tests.derived.conftest import derived_env

__all__ = ["derived_env"]
