"""Asset checks: is the mirror complete, free of duplicates, referentially sound, and are the derived
tables consistent with the tables they are computed from?

Every check runs in the same run as its asset (a check is selected with its asset), after it, in
the DuckDB writer pool: checks only read, but while a sync holds the file no other process may
open it, so they queue like writers instead of failing on the lock.  None of them is blocking: a
failed check is reported (red or yellow in the UI, with the first offending ids in its metadata)
and never stops the derived tables from being recomputed or the sync from finishing.  A check never
raises either: an error while checking (Stash unreachable, a missing table) is a failed check whose
metadata says why, so a CLI sync's exit status is decided by the sync alone.

Per entity asset (one step, three checks):

- ``count_matches_stash``: the local row count equals Stash's count, probed live (``per_page: 0``)
  when the check runs: only the live answer says whether the mirror is complete now (the count
  recorded by the sync in ``sync_state`` says what Stash had then, and is shown beside it).  On a
  mismatch an id-only sweep lists the first ids missing locally / extra locally.  Severity ERROR
  when the mirror does not even match the count Stash gave the last sync (the sync ended short, or
  the file was changed behind its back), WARN when only Stash moved since (edits during or after
  the run, or a targeted resync that did not read everything; the next sync catches up).
- ``no_duplicates`` (ERROR): no id twice in the entity table, no pair twice in its link tables
  (link tables have no key constraint, see ``mirror/schema.py``).
- ``links_resolve`` (WARN): every id in its link tables and reference columns names an existing
  row.  WARN, not ERROR, because a dangling id is legitimate for a while: a scene may name a
  performer created after the performers asset ran in the same run, a gallery's scene list (read
  from the gallery side) may name a scene the scenes asset has not fetched yet, and a run of some
  types only (``sync --types scenes``) leaves the others behind until their next sync.  A dangle
  that survives a full sync is a bug worth an issue.

Per derived asset, ``consistent_with_inputs`` (ERROR): invariants that follow from its definition
(every image once in ``images_effective``; effective links contain the direct ones; one
``entity_counts`` row per performer, tag, studio and gallery; a depth-0 ``tag_ancestors`` row per
tag; ...).  Run outside a derived run, it also reports derived tables gone stale.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from stash_pipeline.assets.entities import WRITER_POOL
from stash_pipeline.mirror.db import fetch_scalar
from stash_pipeline.mirror.schema import ensure_schema
from stash_pipeline.mirror.state import read_state
from stash_pipeline.model import ENTITY_SPECS, EntitySpec
from stash_pipeline.resources import StashResource, mirror_connection

SAMPLE = 10  # offending ids listed per problem in a failed check's metadata

COUNT_CHECK = "count_matches_stash"
DUPLICATES_CHECK = "no_duplicates"
LINKS_CHECK = "links_resolve"
DERIVED_CHECK = "consistent_with_inputs"


@dataclass(frozen=True)
class Probe:
    """One invariant: ``sql`` selects the offending rows (ids first) and is empty when it holds."""

    name: str  # metadata key of the sample; the count goes under ``<name>_count``
    sql: str


def _plain(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def run_probes(con: duckdb.DuckDBPyConnection, probes: Sequence[Probe]) -> tuple[bool, dict[str, Any]]:
    """Evaluate ``probes``: (all held, metadata with each count and the first offending rows)."""
    metadata: dict[str, Any] = {}
    ok = True
    for probe in probes:
        rows = con.execute(f"SELECT * FROM ({probe.sql}) ORDER BY ALL LIMIT {SAMPLE}").fetchall()
        count = len(rows)
        if count == SAMPLE:
            count = fetch_scalar(con, f"SELECT count(*) FROM ({probe.sql})")
        metadata[f"{probe.name}_count"] = dg.MetadataValue.int(count)
        if rows:
            ok = False
            sample = [_plain(r[0]) if len(r) == 1 else [_plain(v) for v in r] for r in rows]
            metadata[probe.name] = dg.MetadataValue.json(sample)
    return ok, metadata


def _error_result(check: str, asset: str, exc: BaseException, severity: dg.AssetCheckSeverity):
    return dg.AssetCheckResult(
        check_name=check,
        asset_key=asset,
        passed=False,
        severity=severity,
        metadata={"error": f"{type(exc).__name__}: {str(exc)[:500]}"},
        description="The check itself could not run; see the error.",
    )


# ---------------------------------------------------------------------------------- entity probes
def _owned_links(spec: EntitySpec):
    return [rel for rel in spec.relations if not rel.reverse]


def duplicate_probes(spec: EntitySpec) -> list[Probe]:
    probes = [Probe("duplicate_ids", f"SELECT id FROM {spec.name} GROUP BY id HAVING count(*) > 1")]
    for rel in _owned_links(spec):
        a, b = rel.owner_column, rel.target_column
        if rel.distinct:  # a child table's rows may repeat (two plays in one second)
            probes.append(
                Probe(
                    f"{rel.table}_duplicates",
                    f"SELECT {a}, {b} FROM {rel.table} GROUP BY {a}, {b} HAVING count(*) > 1",
                )
            )
        if rel.primary_column:  # Stash lists exactly one primary file first
            probes.append(
                Probe(
                    f"{rel.table}_primary",
                    f"SELECT {a} FROM {rel.table} GROUP BY {a} HAVING count(*) FILTER ({rel.primary_column}) <> 1",
                )
            )
        if rel.embedded is not None:
            table = rel.embedded.name
            probes.append(
                Probe(f"{table}_duplicate_ids", f"SELECT id FROM {table} GROUP BY id HAVING count(*) > 1")
            )
    return probes


def dangling_probes(spec: EntitySpec) -> list[Probe]:
    probes = []
    for rel in _owned_links(spec):
        a, b = rel.owner_column, rel.target_column
        targets = ((a, spec.name), (b, rel.target_type)) if rel.target_type else ((a, spec.name),)
        for column, table in targets:
            probes.append(
                Probe(
                    f"{rel.table}_dangling_{column}",
                    f"SELECT DISTINCT l.{a}, l.{b} FROM {rel.table} l "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {table} x WHERE x.id = l.{column})",
                )
            )
    for ref in spec.refs:
        probes.append(
            Probe(
                f"{ref.column}_dangling",
                f"SELECT e.id, e.{ref.column} FROM {spec.name} e WHERE e.{ref.column} IS NOT NULL "
                f"AND NOT EXISTS (SELECT 1 FROM {ref.target} x WHERE x.id = e.{ref.column})",
            )
        )
    return probes


def _count_result(
    spec: EntitySpec, stash: StashResource, con: duckdb.DuckDBPyConnection
) -> dg.AssetCheckResult:
    local = fetch_scalar(con, f"SELECT count(*) FROM {spec.name}")
    state = read_state(con, spec.name)
    with stash.client() as client:
        live = client.count(spec)
        metadata: dict[str, Any] = {
            "local_count": dg.MetadataValue.int(local),
            "stash_count": dg.MetadataValue.int(live),
            "stash_count_at_last_sync": dg.MetadataValue.int(
                state.stash_count if state.stash_count is not None else -1
            ),
        }
        if local == live:
            return dg.AssetCheckResult(
                check_name=COUNT_CHECK, asset_key=spec.name, passed=True, metadata=metadata
            )
        metadata["difference"] = dg.MetadataValue.int(local - live)
        try:
            stash_ids = client.sweep_ids(spec)
        except Exception as exc:  # the counts alone still tell the story
            metadata["sweep_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        else:
            local_ids = {r[0] for r in con.execute(f"SELECT id FROM {spec.name}").fetchall()}
            remote = set(stash_ids)
            metadata["missing_locally"] = dg.MetadataValue.json(sorted(remote - local_ids)[:SAMPLE])
            metadata["extra_locally"] = dg.MetadataValue.json(sorted(local_ids - remote)[:SAMPLE])
    # The count Stash gave the last sync: if the mirror does not even match that, the sync ended
    # short (or the file was changed behind its back); if it does, only Stash moved since.
    broken = state.stash_count is not None and local != state.stash_count
    return dg.AssetCheckResult(
        check_name=COUNT_CHECK,
        asset_key=spec.name,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR if broken else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=(
            f"{spec.name}: {local} rows locally, {live} in Stash"
            + (
                " (not even the count Stash gave the last sync)"
                if broken
                else " (Stash changed since the sync)"
            )
        ),
    )


def entity_check_specs(spec: EntitySpec) -> list[dg.AssetCheckSpec]:
    asset = dg.AssetKey(spec.name)
    return [
        dg.AssetCheckSpec(
            COUNT_CHECK,
            asset=asset,
            blocking=False,
            description=f"The mirror holds as many {spec.name} as Stash (probed live); on a mismatch, the "
            "first ids missing or extra locally. ERROR if it does not even match the count Stash gave the "
            "last sync, WARN if only Stash changed since.",
        ),
        dg.AssetCheckSpec(
            DUPLICATES_CHECK,
            asset=asset,
            blocking=False,
            description=f"No id twice in `{spec.name}`, no pair twice in "
            f"{', '.join(f'`{r.table}`' for r in _owned_links(spec)) or 'its link tables'}.",
        ),
        dg.AssetCheckSpec(
            LINKS_CHECK,
            asset=asset,
            blocking=False,
            description="Every id in the link tables and reference columns of "
            f"`{spec.name}` names an existing row (first offending pairs in metadata). WARN only: a "
            "dangling id is legitimate until the other type's next sync (an entity created after "
            "its type was synced in the same run, or a run of some types only).",
        ),
    ]


def entity_check_results(
    spec: EntitySpec, selected: set[str], stash: StashResource, con: duckdb.DuckDBPyConnection
) -> Iterator[dg.AssetCheckResult]:
    if COUNT_CHECK in selected:
        try:
            yield _count_result(spec, stash, con)
        except Exception as exc:
            yield _error_result(COUNT_CHECK, spec.name, exc, dg.AssetCheckSeverity.WARN)
    for check, probes, severity in (
        (DUPLICATES_CHECK, duplicate_probes(spec), dg.AssetCheckSeverity.ERROR),
        (LINKS_CHECK, dangling_probes(spec), dg.AssetCheckSeverity.WARN),
    ):
        if check not in selected:
            continue
        try:
            ok, metadata = run_probes(con, probes)
        except Exception as exc:
            yield _error_result(check, spec.name, exc, severity)
            continue
        yield dg.AssetCheckResult(
            check_name=check, asset_key=spec.name, passed=ok, severity=severity, metadata=metadata
        )


def build_entity_checks() -> dg.AssetChecksDefinition:
    """Every entity type's checks in ONE subsettable step (a step per type cost Dagster more
    than the checks themselves)."""

    @dg.multi_asset_check(
        name="entity_checks",
        specs=[check for spec in ENTITY_SPECS for check in entity_check_specs(spec)],
        can_subset=True,
        pool=WRITER_POOL,
        description="Completeness, uniqueness and referential checks of the entity tables.",
    )
    def entity_checks(
        context: dg.AssetCheckExecutionContext, stash: StashResource, mirror: DuckDBResource
    ) -> Iterator[dg.AssetCheckResult]:
        selected: dict[str, set[str]] = {}
        for key in context.selected_asset_check_keys:
            selected.setdefault(key.asset_key.path[-1], set()).add(key.name)
        with mirror_connection(mirror, context.log.warning) as con:
            ensure_schema(con)
            for spec in ENTITY_SPECS:
                if spec.name in selected:
                    yield from entity_check_results(spec, selected[spec.name], stash, con)

    return entity_checks


# --------------------------------------------------------------------------------- derived probes
def _effective_link_probes(kind: str) -> list[Probe]:
    table, direct = f"image_{kind}s_effective", f"image_{kind}s"
    col = f"{kind}_id"
    return [
        Probe("duplicate_rows", f"SELECT image_id, {col} FROM {table} GROUP BY ALL HAVING count(*) > 1"),
        Probe(
            "direct_links_missing",
            f"SELECT DISTINCT d.image_id, d.{col} FROM {direct} d WHERE NOT EXISTS (SELECT 1 FROM {table} e "
            f"WHERE e.image_id = d.image_id AND e.{col} = d.{col} AND NOT e.inherited)",
        ),
        Probe(
            "inherited_despite_direct_links",
            f"SELECT DISTINCT e.image_id FROM {table} e WHERE e.inherited "
            f"AND EXISTS (SELECT 1 FROM {direct} d WHERE d.image_id = e.image_id)",
        ),
        Probe(
            "unknown_images",
            f"SELECT DISTINCT e.image_id FROM {table} e WHERE e.inherited "
            "AND NOT EXISTS (SELECT 1 FROM images i WHERE i.id = e.image_id)",
        ),
        Probe(
            "inherited_not_from_first_gallery",
            f"SELECT DISTINCT e.image_id, e.{col} FROM {table} e WHERE e.inherited AND NOT EXISTS ("
            "SELECT 1 FROM (SELECT image_id, min(gallery_id) AS gallery_id FROM image_galleries "
            f"GROUP BY image_id) fg JOIN gallery_{kind}s g ON g.gallery_id = fg.gallery_id "
            f"WHERE fg.image_id = e.image_id AND g.{col} = e.{col})",
        ),
    ]


_ENTITY_COUNT_TYPES = (
    ("performer", "performers"),
    ("tag", "tags"),
    ("studio", "studios"),
    ("gallery", "galleries"),
)

DERIVED_PROBES: dict[str, list[Probe]] = {
    "images_effective": [
        Probe(
            "images_missing",
            "SELECT id FROM images i WHERE NOT EXISTS (SELECT 1 FROM images_effective e WHERE e.image_id = i.id)",
        ),
        Probe(
            "images_repeated", "SELECT image_id FROM images_effective GROUP BY image_id HAVING count(*) > 1"
        ),
        Probe(
            "unknown_images",
            "SELECT image_id FROM images_effective e WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.id = e.image_id)",
        ),
        Probe(
            "own_value_overridden",
            "SELECT i.id FROM images i JOIN images_effective e ON e.image_id = i.id "
            "WHERE e.studio_id IS DISTINCT FROM coalesce(i.studio_id, e.studio_id) "
            "OR e.date IS DISTINCT FROM coalesce(i.date, e.date) "
            "OR e.photographer IS DISTINCT FROM coalesce(i.photographer, e.photographer) "
            "OR e.details IS DISTINCT FROM coalesce(i.details, e.details)",
        ),
    ],
    "image_performers_effective": _effective_link_probes("performer"),
    "image_tags_effective": _effective_link_probes("tag"),
    "scene_inherited_tags": [
        Probe(
            "duplicate_rows",
            "SELECT scene_id, tag_id FROM scene_inherited_tags GROUP BY ALL HAVING count(*) > 1",
        ),
        Probe(
            "direct_tags_repeated",
            "SELECT DISTINCT t.scene_id, t.tag_id FROM scene_inherited_tags t JOIN scene_tags d "
            "ON d.scene_id = t.scene_id AND d.tag_id = t.tag_id",
        ),
        Probe(
            "unknown_scenes",
            "SELECT DISTINCT scene_id FROM scene_inherited_tags t "
            "WHERE NOT EXISTS (SELECT 1 FROM scenes s WHERE s.id = t.scene_id)",
        ),
        Probe(
            "performer_tags_missing",
            "SELECT DISTINCT sp.scene_id, pt.tag_id FROM scene_performers sp "
            "JOIN performer_tags pt ON pt.performer_id = sp.performer_id "
            "WHERE NOT EXISTS (SELECT 1 FROM scene_tags d WHERE d.scene_id = sp.scene_id AND d.tag_id = pt.tag_id) "
            "AND NOT EXISTS (SELECT 1 FROM scene_inherited_tags t "
            "WHERE t.scene_id = sp.scene_id AND t.tag_id = pt.tag_id)",
        ),
    ],
    "tag_ancestors": [
        Probe(
            "tags_without_self_row",
            "SELECT id FROM tags t WHERE NOT EXISTS "
            "(SELECT 1 FROM tag_ancestors a WHERE a.tag_id = t.id AND a.ancestor_id = t.id AND a.depth = 0)",
        ),
        Probe(
            "duplicate_pairs",
            "SELECT tag_id, ancestor_id FROM tag_ancestors GROUP BY ALL HAVING count(*) > 1",
        ),
        Probe(
            "parents_not_at_depth_1",
            "SELECT DISTINCT p.tag_id, p.parent_id FROM tag_parents p "
            "WHERE p.tag_id <> p.parent_id AND EXISTS (SELECT 1 FROM tags t WHERE t.id = p.tag_id) "
            "AND NOT EXISTS (SELECT 1 FROM tag_ancestors a "
            "WHERE a.tag_id = p.tag_id AND a.ancestor_id = p.parent_id AND a.depth = 1)",
        ),
        Probe(
            "bad_depths",
            "SELECT tag_id, ancestor_id, depth FROM tag_ancestors "
            "WHERE depth < 0 OR (depth = 0) <> (tag_id = ancestor_id)",
        ),
    ],
    "entity_counts": [
        Probe(
            "duplicate_rows",
            "SELECT entity_type, entity_id FROM entity_counts GROUP BY ALL HAVING count(*) > 1",
        ),
        *(
            Probe(
                f"{kind}s_missing",
                f"SELECT id FROM {table} x WHERE NOT EXISTS "
                f"(SELECT 1 FROM entity_counts c WHERE c.entity_type = '{kind}' AND c.entity_id = x.id)",
            )
            for kind, table in _ENTITY_COUNT_TYPES
        ),
        Probe(
            "unknown_entities",
            "SELECT entity_type, entity_id FROM entity_counts c WHERE NOT EXISTS ("
            + " UNION ALL ".join(
                f"SELECT 1 FROM {table} x WHERE c.entity_type = '{kind}' AND x.id = c.entity_id"
                for kind, table in _ENTITY_COUNT_TYPES
            )
            + ")",
        ),
        Probe(
            "gallery_image_counts_wrong",
            "SELECT c.entity_id, c.image_count FROM entity_counts c WHERE c.entity_type = 'gallery' "
            "AND c.image_count <> (SELECT count(*) FROM image_galleries ig WHERE ig.gallery_id = c.entity_id)",
        ),
        Probe(
            "negative_totals",
            "SELECT entity_type, entity_id FROM entity_counts WHERE marker_count < 0 OR file_count < 0 OR file_size < 0",
        ),
    ],
    "scene_resolution": [
        Probe(
            "scenes_missing",
            "SELECT id FROM scenes s WHERE NOT EXISTS (SELECT 1 FROM scene_resolution r WHERE r.scene_id = s.id)",
        ),
        Probe("scenes_repeated", "SELECT scene_id FROM scene_resolution GROUP BY 1 HAVING count(*) > 1"),
        Probe(
            "not_the_primary_file",
            "SELECT r.scene_id, r.file_id FROM scene_resolution r WHERE r.file_id IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM scene_files l WHERE l.scene_id = r.scene_id AND l.file_id = r.file_id AND l.is_primary)",
        ),
    ],
    "file_duplicates": [
        Probe(
            "unknown_files",
            "SELECT file_id FROM file_duplicates d WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.id = d.file_id)",
        ),
        Probe(
            "copies_wrong",
            "SELECT fingerprint_type, fingerprint FROM file_duplicates GROUP BY 1, 2 "
            "HAVING count(*) <> any_value(copies) OR count(*) < 2",
        ),
    ],
}


def build_derived_checks() -> dg.AssetChecksDefinition:
    """Every derived table's check in ONE subsettable step."""

    @dg.multi_asset_check(
        name="derived_checks",
        specs=[
            dg.AssetCheckSpec(
                DERIVED_CHECK,
                asset=dg.AssetKey(name),
                blocking=False,
                description=f"`{name}` agrees with the tables it is computed from: "
                + "; ".join(p.name.replace("_", " ") for p in probes)
                + " must all be empty (first offending ids in metadata).",
            )
            for name, probes in DERIVED_PROBES.items()
        ],
        can_subset=True,
        pool=WRITER_POOL,
        description="Each derived table agrees with the tables it is computed from.",
    )
    def derived_checks(
        context: dg.AssetCheckExecutionContext, mirror: DuckDBResource
    ) -> Iterator[dg.AssetCheckResult]:
        selected = {key.asset_key.path[-1] for key in context.selected_asset_check_keys}
        with mirror_connection(mirror, context.log.warning) as con:
            for name, probes in DERIVED_PROBES.items():
                if name not in selected:
                    continue
                try:
                    ok, metadata = run_probes(con, probes)
                except Exception as exc:
                    yield _error_result(DERIVED_CHECK, name, exc, dg.AssetCheckSeverity.ERROR)
                    continue
                yield dg.AssetCheckResult(
                    check_name=DERIVED_CHECK, asset_key=name, passed=ok, metadata=metadata
                )

    return derived_checks


CHECKS_JOB = "mirror_checks"


def build_checks_job():
    """Every check, without materializing anything: audit the mirror on demand."""
    return dg.define_asset_job(
        CHECKS_JOB,
        selection=dg.AssetSelection.all_asset_checks(),
        description="Run every asset check of the mirror (counts against Stash, duplicates, dangling "
        "ids, derived tables) without syncing.",
    )


def build_asset_checks() -> list[dg.AssetChecksDefinition]:
    return [build_entity_checks(), build_derived_checks()]


__all__ = [
    "CHECKS_JOB",
    "COUNT_CHECK",
    "DERIVED_CHECK",
    "DUPLICATES_CHECK",
    "LINKS_CHECK",
    "build_asset_checks",
    "build_checks_job",
    "build_derived_checks",
    "build_entity_checks",
]
