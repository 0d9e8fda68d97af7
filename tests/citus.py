"""What a move to Citus, distributed by ``service_name``, would meet in each object of ours.

Everything is read from the catalogue (constraints and unique indexes, foreign keys, triggers,
identity columns, policies, function bodies), never from a list of what we think exists, so a
schema change that breaks or fixes compatibility shows up as a changed finding. The rules are
Citus's, as docs/SCALING.md cites them: a unique or exclusion constraint of a distributed table
must include the distribution column, and so must a foreign key between distributed tables;
triggers on distributed tables need ``citus.enable_unsafe_triggers`` and run on the shards;
a policy on a distributed table may not contain a subquery.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, text

DISTRIBUTION_COLUMN = "service_name"


class Plan(StrEnum):
    """Where a table goes in a Citus cluster, or where a function runs."""

    DISTRIBUTE = "distributed by service_name"
    REFERENCE = "reference table (one shard, copied to every node)"
    COORDINATOR = "local to the coordinator"
    EVERY_NODE = "created on every node"
    SHARDS = "runs on the shards (a trigger function)"


@dataclass(frozen=True)
class Expectation:
    """What docs/SCALING.md says of one object: its plan, what the catalogue shows that a move
    must deal with (empty: compatible as it is), and why."""

    plan: Plan
    findings: frozenset[str]
    why: str


def table_findings(connection: Connection, table: str, ours: list[str]) -> frozenset[str]:
    """What ``table`` would meet as a table distributed by service_name (or, without that
    column, that it has none); ``ours`` are the names of our tables, for the trigger bodies."""
    found: set[str] = set()
    names = {"table": table, "column": DISTRIBUTION_COLUMN}
    if not connection.execute(_HAS_COLUMN, names).scalar():
        found.add(f"no {DISTRIBUTION_COLUMN} column")
    else:
        found.update(
            f"{row.kind} {row.name} does not include {DISTRIBUTION_COLUMN}"
            for row in connection.execute(_UNIQUE, names)
            if not row.includes
        )
    found.update(
        f"foreign key {row.name} to {row.target} does not pair {DISTRIBUTION_COLUMN}"
        for row in connection.execute(_FOREIGN_KEYS, names)
        if not row.paired
    )
    for row in connection.execute(_TRIGGERS, {"table": table}):
        level = "row" if row.row_level else "statement"
        transition = " with a transition table" if row.transition else ""
        named = ", ".join(tables_named(row.body, ours)) or "no table of ours"
        found.add(f"{level} trigger {row.name}{transition}, naming {named}")
    found.update(
        f"identity column {name}"
        for name in connection.execute(_IDENTITY, {"table": table}).scalars()
    )
    found.update(
        f"policy {name} has a subquery"
        for name in connection.execute(_SUBQUERY_POLICIES, {"table": table}).scalars()
    )
    return frozenset(found)


def function_findings(connection: Connection, oid: int, ours: list[str]) -> frozenset[str]:
    """A function's kind, whether it runs as its owner, and which of our tables it names."""
    row = connection.execute(_FUNCTION, {"oid": oid}).one()
    found = {"trigger function" if row.trigger else "function"}
    if row.definer:
        found.add("SECURITY DEFINER")
    found.update(f"names {name}" for name in tables_named(row.body, ours))
    return frozenset(found)


def function_plan(findings: frozenset[str]) -> Plan:
    """Where a function runs once the tables are distributed: a trigger function on the
    shards, one that names no table of ours on every node, any other on the coordinator."""
    if "trigger function" in findings:
        return Plan.SHARDS
    if any(finding.startswith("names ") for finding in findings):
        return Plan.COORDINATOR
    return Plan.EVERY_NODE


def tables_named(body: str, ours: list[str]) -> list[str]:
    """Which of ``ours`` a function body names as a whole word, sorted."""
    return sorted(name for name in ours if re.search(rf"\b{re.escape(name)}\b", body))


_HAS_COLUMN = text(
    """
    SELECT EXISTS (
        SELECT FROM pg_attribute
         WHERE attrelid = CAST(:table AS regclass) AND attname = :column
           AND NOT attisdropped AND attnotnull
    )
    """
)
# Primary keys, unique constraints and unique indexes (partial ones too), and exclusion
# constraints: each needs the distribution column among its key columns.
_UNIQUE = text(
    """
    SELECT CASE WHEN i.indisprimary THEN 'primary key'
                WHEN i.indisexclusion THEN 'exclusion constraint'
                ELSE 'unique index' END AS kind,
           c.relname AS name,
           EXISTS (
               SELECT FROM unnest(CAST(i.indkey AS int2[])) WITH ORDINALITY AS k(attnum, position)
                 JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                WHERE k.position <= i.indnkeyatts AND a.attname = :column
           ) AS includes
      FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
     WHERE i.indrelid = CAST(:table AS regclass) AND (i.indisunique OR i.indisexclusion)
    """
)
# A foreign key between distributed tables must map the distribution column onto itself.
_FOREIGN_KEYS = text(
    """
    SELECT f.conname AS name, CAST(f.confrelid AS regclass) AS target,
           EXISTS (
               SELECT FROM unnest(f.conkey, f.confkey) AS k(here, there)
                 JOIN pg_attribute AS a ON a.attrelid = f.conrelid AND a.attnum = k.here
                 JOIN pg_attribute AS b ON b.attrelid = f.confrelid AND b.attnum = k.there
                WHERE a.attname = :column AND b.attname = :column
           ) AS paired
      FROM pg_constraint AS f
     WHERE f.conrelid = CAST(:table AS regclass) AND f.contype = 'f'
    """
)
_TRIGGERS = text(
    """
    SELECT t.tgname AS name, (t.tgtype & 1) = 1 AS row_level,
           t.tgnewtable IS NOT NULL OR t.tgoldtable IS NOT NULL AS transition,
           p.prosrc AS body
      FROM pg_trigger AS t JOIN pg_proc AS p ON p.oid = t.tgfoid
     WHERE t.tgrelid = CAST(:table AS regclass) AND NOT t.tgisinternal
    """
)
_IDENTITY = text(
    """
    SELECT attname FROM pg_attribute
     WHERE attrelid = CAST(:table AS regclass) AND attidentity <> '' AND NOT attisdropped
    """
)
# The stored expression tree names a subquery as a SUBLINK node.
_SUBQUERY_POLICIES = text(
    """
    SELECT polname FROM pg_policy
     WHERE polrelid = CAST(:table AS regclass)
       AND (CAST(polqual AS text) LIKE '%{SUBLINK %'
            OR CAST(polwithcheck AS text) LIKE '%{SUBLINK %')
    """
)
_FUNCTION = text(
    """
    SELECT prorettype = CAST('trigger' AS regtype) AS trigger, prosecdef AS definer,
           prosrc AS body
      FROM pg_proc WHERE oid = :oid
    """
)
