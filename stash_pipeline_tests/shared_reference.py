"""Stash's real schema and example queries: reference files the project must not copy.

They live in the team's ``shared/`` folder beside the project (``../shared``), or wherever
``STASH_SHARED_DIR`` points.  A clone without them (anyone's but the team's) skips the six tests
that compare our documents and our fake's SDL with Stash's own, saying where it looked: those
comparisons cannot be made without Stash's files, and every other test still runs.
"""

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("STASH_SHARED_DIR") or PROJECT_ROOT.parent / "shared")


def shared_file(relative: str) -> Path:
    """The reference file, or a skip that names the path it looked at."""
    path = shared_dir() / relative
    if not path.is_file():
        pytest.skip(
            f"Stash's reference file is not at {path} (it is never copied into the project): "
            "put the shared/ folder beside the project or set STASH_SHARED_DIR"
        )
    return path


REAL_SCHEMA = "stash-schema/schema.graphql"
EXAMPLE_QUERIES = "stash-example-queries.graphql"
