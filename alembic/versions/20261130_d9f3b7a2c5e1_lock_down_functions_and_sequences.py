"""lock down functions and sequences: private function schema, pinned search_path


Revision ID: d9f3b7a2c5e1
Revises: c4a8e2f6b913
Create Date: 2026-11-30 18:00:00

A frozen snapshot: explicit SQL, never the live models.

- Our functions move into the schema ``cim_monitoring``, which PostgREST does not expose (no
  ``/rpc/...`` for them). Only its owner may create in it; ``monitoring_admin`` and, where they
  exist, ``service_role`` and ``authenticated`` may use it: the rollup trigger runs as the
  inserting role, and calls the two histogram helpers.
- Every function pins ``search_path = ''`` and names every object of ours with its schema; the
  tables stay in the schema the migration runs in (``current_schema()``, formatted in when this
  revision runs, so the ``--sql`` rendering works for any schema).
- The histogram helpers refuse bucket indexes outside the histogram and arrays of unequal
  length: an assignment past an array's end grows it, and ``[100000000]`` cost 900 MB.
- ``service_health_latency_bucket`` is dropped: a function with a pinned ``search_path`` is
  never inlined, and calling it per row cost 2-4 us a row (a third more time for a 24 h
  ``service_stats``). The trigger and the repository compute ``width_bucket`` over the bounds
  themselves.
- Grants: EXECUTE on the helpers (and USAGE on the schema) for ``monitoring_admin``,
  ``service_role`` and ``authenticated`` only; nothing on the trigger functions (a trigger fires
  without EXECUTE), nothing on the sequences (an identity column needs no sequence privilege),
  and on the tables nothing beyond SELECT, INSERT, UPDATE, DELETE for any role but the owner:
  Supabase's default privileges gave ``service_role`` (and ``postgres``, when ``supabase_admin``
  migrates) TRUNCATE, REFERENCES and TRIGGER, which RLS does not police. The version table keeps
  nothing for anybody but its owner and ``monitoring_admin``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from cim_monitoring.errors import IrreversibleMigration

revision: str = "d9f3b7a2c5e1"
down_revision: str | Sequence[str] | None = "c4a8e2f6b913"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "cim_monitoring"
# Stands for the tables' schema, quoted; replaced when the revision runs (_in_table_schema).
TABLE_SCHEMA = "@table_schema@"
TABLES = ("service_health_checks", "alert_events", "service_health_hourly", "service_health_daily")
# Called by the rollup trigger as the inserting role; the trigger functions themselves need no
# EXECUTE privilege to fire.
HELPERS = (
    f"{SCHEMA}.service_health_dense_histogram(integer[], integer[])",
    f"{SCHEMA}.service_health_histogram_sum(integer[], integer[])",
)
MOVED_FUNCTIONS = (
    "service_health_dense_histogram(integer[], integer[])",
    "service_health_histogram_sum(integer[], integer[])",
    "service_health_rollup()",
    "service_health_checks_refuse_update()",
)

SQUAWK_EXCEPTIONS = {
    "require-statement-timeout": (
        "a new schema, functions moved and replaced, GRANT and REVOKE: catalog changes only, "
        "no table is rewritten or scanned"
    ),
}

# Lower bounds in ms, as b7e5d3c1a902 froze them (cim_monitoring.histogram.BOUNDS).
LATENCY_BOUNDS = (
    "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14, 17, 21, 26, 32, 39, 47, 57, 69, 84, 103, 126, 154, "
    "188, 229, 279, 341, 417, 509, 622, 761, 931, 1138, 1391, 1701, 2079, 2541, 3106, 3796, "
    "4639, 5669, 6928, 8467, 10348, 12647, 15457, 18892, 23091, 28223, 34495, 42161, 51531, "
    "62983, 76979, 94085, 114993, 140547, 171779, 209952, 256608, 313632, 383328, 468512, "
    "572626, 699876, 855404, 1045494, 1277826, 1561787, 1908851, 2333041, 2851495, 3485161, "
    "4259642, 5206229, 6363168, 7777205, 9505473, 11617801, 14199535, 17354987, 21211651, "
    "25925352, 31686542, 38727996, 47334217, 57852932, 70709139, 86422281, 105627233, "
    "129099952, 157788831, 192853016, 235709242, 288089074, 352108868, 430355283, 525989791, "
    "642876412, 785737837, 960346245, 1173756522, 1434591305, 1753389373, 2143031456"
)
BUCKETS = LATENCY_BOUNDS.count(",") + 1
LATENCY_BUCKET = f"width_bucket(latency_ms, '{{{LATENCY_BOUNDS.replace(' ', '')}}}'::integer[])"
EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
ROLLUPS = (
    ("service_health_hourly", "hour", "1 hour"),
    ("service_health_daily", "day", "1 day"),
)

DENSE_HISTOGRAM = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.service_health_dense_histogram(
    buckets integer[], counts integer[]
) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $body$
DECLARE
    histogram integer[] := array_fill(0, ARRAY[{BUCKETS}]);
BEGIN
    IF cardinality(buckets) IS DISTINCT FROM cardinality(counts)
       OR cardinality(buckets) > {BUCKETS} THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'service_health_dense_histogram: ' || coalesce(cardinality(buckets), 0)
                      || ' buckets and ' || coalesce(cardinality(counts), 0)
                      || ' counts, expected as many of each and at most {BUCKETS}';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(buckets), 0) LOOP
        -- Assigning past the end would grow the array to that index.
        IF buckets[i] IS NULL OR buckets[i] NOT BETWEEN 1 AND {BUCKETS} THEN
            RAISE EXCEPTION USING ERRCODE = 'array_subscript_error',
                MESSAGE = 'service_health_dense_histogram: bucket '
                          || coalesce(buckets[i]::text, 'NULL') || ' is outside 1..{BUCKETS}';
        END IF;
        histogram[buckets[i]] := counts[i];
    END LOOP;
    RETURN histogram;
END
$body$
"""

HISTOGRAM_SUM = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.service_health_histogram_sum(a integer[], b integer[])
RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $body$
BEGIN
    IF cardinality(a) IS DISTINCT FROM {BUCKETS} OR cardinality(b) IS DISTINCT FROM {BUCKETS} THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'service_health_histogram_sum: histograms of '
                      || coalesce(cardinality(a), 0) || ' and ' || coalesce(cardinality(b), 0)
                      || ' buckets, expected {BUCKETS} each';
    END IF;
    RETURN ARRAY(SELECT x + y FROM unnest(a, b) WITH ORDINALITY AS u(x, y, i) ORDER BY i);
END
$body$
"""  # noqa: S608 - assembled from this revision's constants

# b7e5d3c1a902's upserts with every name of ours qualified and the latency bucket inline (see
# that revision for why there is no join); {table}, {column}, {stride} from ROLLUPS.
UPSERT = f"""
    INSERT INTO {TABLE_SCHEMA}.{{table}} AS r (service_name, {{column}}, healthy, degraded, down,
                              latency_count, latency_min, latency_max, latency_sum,
                              latency_histogram)
    SELECT service_name, {{column}}, sum(healthy)::integer, sum(degraded)::integer,
           sum(down)::integer, sum(latency_count)::integer, min(latency_min), max(latency_max),
           coalesce(sum(latency_sum), 0)::bigint,
           {SCHEMA}.service_health_dense_histogram(
               array_agg(bucket) FILTER (WHERE bucket IS NOT NULL),
               array_agg(latency_count) FILTER (WHERE bucket IS NOT NULL))
      FROM (
        SELECT service_name, date_bin('{{stride}}', created_at, {EPOCH}) AS {{column}},
               {LATENCY_BUCKET.replace("{", "{{").replace("}", "}}")} AS bucket,
               count(*) FILTER (WHERE status = 'healthy')::integer AS healthy,
               count(*) FILTER (WHERE status = 'degraded')::integer AS degraded,
               count(*) FILTER (WHERE status = 'down')::integer AS down,
               count(latency_ms)::integer AS latency_count,
               min(latency_ms) AS latency_min, max(latency_ms) AS latency_max,
               sum(latency_ms) AS latency_sum
          FROM new_rows
         GROUP BY 1, 2, 3
      ) AS sparse
     GROUP BY service_name, {{column}}
     ORDER BY service_name, {{column}}
    ON CONFLICT (service_name, {{column}}) DO UPDATE SET
        healthy = r.healthy + excluded.healthy,
        degraded = r.degraded + excluded.degraded,
        down = r.down + excluded.down,
        latency_count = r.latency_count + excluded.latency_count,
        latency_min = least(r.latency_min, excluded.latency_min),
        latency_max = greatest(r.latency_max, excluded.latency_max),
        latency_sum = r.latency_sum + excluded.latency_sum,
        latency_histogram = {SCHEMA}.service_health_histogram_sum(
            r.latency_histogram, excluded.latency_histogram);
"""  # noqa: S608 - assembled from this revision's constants

# As in b7e5d3c1a902: past this many rows the upserts are planned afresh for the statement.
REPLAN_ROWS = 10_000
_STATIC_UPSERTS = "".join(UPSERT.format(table=t, column=c, stride=s) for t, c, s in ROLLUPS)
_DYNAMIC_UPSERTS = "".join(
    f"        EXECUTE $upsert${UPSERT.format(table=t, column=c, stride=s).rstrip()[:-1]}$upsert$;\n"
    for t, c, s in ROLLUPS
)
ROLLUP_TRIGGER_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.service_health_rollup() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $body$
BEGIN
    IF EXISTS (SELECT FROM new_rows OFFSET {REPLAN_ROWS}) THEN
{_DYNAMIC_UPSERTS}    ELSE
{_STATIC_UPSERTS}    END IF;
    RETURN NULL;
END
$body$
"""

REFUSE_UPDATE = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.service_health_checks_refuse_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $body$
BEGIN
    RAISE EXCEPTION 'service_health_checks is append-only: insert a new check instead'
        USING ERRCODE = 'restrict_violation';
END
$body$
"""

# Every grant on our objects that the documented set does not hold, from the catalogue (so
# whatever Supabase's default privileges or anybody else granted goes too). A NULL ACL stands
# for the default one, which for a function includes EXECUTE for PUBLIC. The owner keeps its
# own. Kept: SELECT, INSERT, UPDATE, DELETE on the monitoring tables for any role but PUBLIC and
# anon, and what monitoring_admin holds on the version table; the schema's USAGE and the
# helpers' EXECUTE are granted afresh below.
REVOKE_UNDOCUMENTED = """
DO $$
DECLARE
    revocation text;
BEGIN
    FOR revocation IN
        WITH tables AS (
            SELECT c.oid, c.relname = {version_table} AS is_version_table
              FROM pg_class AS c
             WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
               AND c.relname IN ({tables}, {version_table})
        ),
        granted AS (
            SELECT 'TABLE' AS kind, c.oid::regclass::text AS identity, c.relowner AS owner, a.*,
                   CASE WHEN t.is_version_table THEN a.grantee = to_regrole('monitoring_admin')
                        ELSE a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
                             AND a.grantee <> 0
                             AND a.grantee IS DISTINCT FROM to_regrole('anon')
                   END AS documented
              FROM tables AS t JOIN pg_class AS c ON c.oid = t.oid,
                   aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) AS a
            UNION ALL
            SELECT 'SEQUENCE', c.oid::regclass::text, c.relowner, a.*, false
              FROM tables AS t
              JOIN pg_depend AS d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid
                                 AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
              JOIN pg_class AS c ON c.oid = d.objid AND c.relkind = 'S',
                   aclexplode(coalesce(c.relacl, acldefault('s', c.relowner))) AS a
            UNION ALL
            SELECT 'FUNCTION', p.oid::regprocedure::text, p.proowner, a.*, false
              FROM pg_proc AS p,
                   aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
             WHERE p.pronamespace = '{schema}'::regnamespace
            UNION ALL
            SELECT 'SCHEMA', quote_ident(n.nspname), n.nspowner, a.*, false
              FROM pg_namespace AS n,
                   aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
             WHERE n.nspname = '{schema}'
        )
        SELECT 'REVOKE ' || privilege_type || ' ON ' || kind || ' ' || identity || ' FROM '
               || CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END
          FROM granted
         WHERE grantee <> owner AND NOT documented
    LOOP
        EXECUTE revocation;
    END LOOP;
END
$$
"""

GRANT_HELPERS = f"""
DO $$
DECLARE
    grantee text;
BEGIN
    FOREACH grantee IN ARRAY ARRAY['monitoring_admin', 'service_role', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = grantee) THEN
            EXECUTE 'GRANT USAGE ON SCHEMA {SCHEMA} TO ' || quote_ident(grantee);
            EXECUTE 'GRANT EXECUTE ON FUNCTION {", ".join(HELPERS)} TO ' || quote_ident(grantee);
        END IF;
    END LOOP;
END
$$
"""  # noqa: S608 - assembled from this revision's constants


def _in_table_schema(statement: str) -> str:
    """``statement`` run with TABLE_SCHEMA replaced by the quoted ``current_schema()``."""
    return (
        "DO $migration$ BEGIN EXECUTE replace("
        f"$statement${statement}$statement$, '{TABLE_SCHEMA}', quote_ident(current_schema())"
        "); END $migration$"
    )


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def upgrade() -> None:
    # Fail fast instead of queueing every query on the table behind a blocked ALTER.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(f"CREATE SCHEMA {SCHEMA}")
    # Moved, not recreated: the triggers keep pointing at the same functions, so the tables are
    # never locked; the bodies are then replaced in place.
    for function in MOVED_FUNCTIONS:
        op.execute(
            _in_table_schema(f"ALTER FUNCTION {TABLE_SCHEMA}.{function} SET SCHEMA {SCHEMA}")
        )
    op.execute(DENSE_HISTOGRAM)
    op.execute(HISTOGRAM_SUM)
    op.execute(_in_table_schema(ROLLUP_TRIGGER_FUNCTION))
    op.execute(REFUSE_UPDATE)
    op.execute(
        _in_table_schema(f"DROP FUNCTION {TABLE_SCHEMA}.service_health_latency_bucket(integer)")
    )
    version_table = op.get_context().version_table
    op.execute(
        REVOKE_UNDOCUMENTED.format(
            tables=", ".join(_literal(table) for table in TABLES),
            version_table=_literal(version_table),
            schema=SCHEMA,
        )
    )
    op.execute(GRANT_HELPERS)


def downgrade() -> None:
    raise IrreversibleMigration(revision)
