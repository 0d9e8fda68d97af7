"""hourly and daily health rollups kept by a trigger; append-only checks; open-alert index

Revision ID: b7e5d3c1a902
Revises: 8d2e4b6a1c55
Create Date: 2026-11-30 09:00:00

A frozen snapshot: explicit columns and op.* calls, never the live models.

``service_health_hourly`` and ``service_health_daily`` hold, per service and UTC hour/day, the
counts by status and the latency count, min, max, sum and a fixed histogram (the bounds in
``LATENCY_BOUNDS``: bucket i counts latencies in [bound i, bound i+1)). A statement-level AFTER
INSERT trigger with a transition table folds every insert into both, in the same transaction,
for every insert path (INSERT, executemany, COPY). It aggregates the whole statement first and
upserts in (service_name, bucket) order, so concurrent writers lock rollup rows in one order
and cannot deadlock within a statement. The function runs as the inserting role
(SECURITY INVOKER): whoever may insert a check may, through the same RLS policies, write the
rollups. A BEFORE UPDATE row trigger makes ``service_health_checks`` append-only (the rollups
would otherwise drift); retention still deletes. Rollups are never updated by deletes: they
outlive the raw rows on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cim_monitoring.errors import IrreversibleMigration

revision: str = "b7e5d3c1a902"
down_revision: str | Sequence[str] | None = "8d2e4b6a1c55"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Lower bounds in ms; every latency within 10 % of one integer of its bucket. Frozen here, so
# a later change of cim_monitoring.histogram needs a new revision (a test compares the two).
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
EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
# (table, bucket column, stride): date_bin on timestamptz strides absolute time, so the
# buckets are UTC hours and days whatever the session's TimeZone.
ROLLUPS = (
    ("service_health_hourly", "hour", "1 hour"),
    ("service_health_daily", "day", "1 day"),
)
POLICED_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"

SQUAWK_EXCEPTIONS = {
    "require-statement-timeout": (
        "the rollup tables are new and empty; the functions, triggers and policies are catalog "
        "changes; the partial index covers the few open alerts (its build reads alert_events "
        "once, which holds only alerts within retention)"
    ),
    "require-concurrent-index-creation": (
        "CREATE INDEX CONCURRENTLY cannot run inside the revision's transaction; the partial "
        "index is built from a table pruned by retention, and blocks only alert writes"
    ),
    "prefer-bigint-over-int": (
        "per-bucket counts of one service's checks in one hour or day, and latencies that are "
        "integer in service_health_checks; the sum of latencies is bigint"
    ),
}

LATENCY_BUCKET = f"""
CREATE FUNCTION service_health_latency_bucket(latency_ms integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN width_bucket(latency_ms, '{{{LATENCY_BOUNDS.replace(" ", "")}}}'::integer[])
"""

HISTOGRAM_SUM = """
CREATE FUNCTION service_health_histogram_sum(a integer[], b integer[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(SELECT x + y FROM unnest(a, b) WITH ORDINALITY AS u(x, y, i) ORDER BY i)
"""

# The dense histogram of one rollup key from its sparse (bucket, count) pairs, the buckets
# distinct. PL/pgSQL without a query: no plan to go stale, and about 3 us a call where the same
# in SQL (a subquery over generate_series) takes 20-30 us.
DENSE_HISTOGRAM = f"""
CREATE FUNCTION service_health_dense_histogram(buckets integer[], counts integer[])
RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    histogram integer[] := array_fill(0, ARRAY[{BUCKETS}]);
BEGIN
    FOR i IN 1 .. coalesce(cardinality(buckets), 0) LOOP
        histogram[buckets[i]] := counts[i];
    END LOOP;
    RETURN histogram;
END
$$
"""

# One statement per rollup level; {table}, {column}, {stride} from ROLLUPS.
#
# PL/pgSQL plans the trigger's statements on a connection's first insert and keeps the plan for
# the connection's life, so the plan made for a one-row transition table also serves later
# batches of thousands of rows (and the other way round). Hence no join anywhere: two grouping
# steps over the transition table, (key, latency bucket) then key, each linear or n log n
# whatever the plan, and the dense histogram built per key by a function. (A join of the keys
# with the sparse histogram, planned as a nested loop for one row, took 100+ ms for 500.)
UPSERT = f"""
    INSERT INTO {{table}} AS r (service_name, {{column}}, healthy, degraded, down, latency_count,
                              latency_min, latency_max, latency_sum, latency_histogram)
    SELECT service_name, {{column}}, sum(healthy)::integer, sum(degraded)::integer,
           sum(down)::integer, sum(latency_count)::integer, min(latency_min), max(latency_max),
           coalesce(sum(latency_sum), 0)::bigint,
           service_health_dense_histogram(
               array_agg(bucket) FILTER (WHERE bucket IS NOT NULL),
               array_agg(latency_count) FILTER (WHERE bucket IS NOT NULL))
      FROM (
        SELECT service_name, date_bin('{{stride}}', created_at, {EPOCH}) AS {{column}},
               service_health_latency_bucket(latency_ms) AS bucket,
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
        latency_histogram = service_health_histogram_sum(
            r.latency_histogram, excluded.latency_histogram);
"""  # noqa: S608 - assembled from this revision's constants

# Past this many rows a statement's upserts are planned afresh (EXECUTE), for its own size:
# planning costs under a millisecond there, while a plan cached from a one-row insert would
# sort hundreds of thousands of rows on disk instead of hashing them (2.5x slower at 200k rows).
# Up to it, the plan cached on the connection serves: every shape of the upserts is cheap at
# that size, and a single-row insert pays no planning.
REPLAN_ROWS = 10_000
_STATIC_UPSERTS = "".join(UPSERT.format(table=t, column=c, stride=s) for t, c, s in ROLLUPS)
_DYNAMIC_UPSERTS = "".join(
    f"        EXECUTE $upsert${UPSERT.format(table=t, column=c, stride=s).rstrip()[:-1]}$upsert$;\n"
    for t, c, s in ROLLUPS
)
ROLLUP_TRIGGER_FUNCTION = f"""
CREATE FUNCTION service_health_rollup() RETURNS trigger
LANGUAGE plpgsql
-- Resolve the rollup tables as the migration did, whatever the inserting session's path.
SET search_path FROM CURRENT
AS $$
BEGIN
    IF EXISTS (SELECT FROM new_rows OFFSET {REPLAN_ROWS}) THEN
{_DYNAMIC_UPSERTS}    ELSE
{_STATIC_UPSERTS}    END IF;
    RETURN NULL;
END
$$
"""

REFUSE_UPDATE = """
CREATE FUNCTION service_health_checks_refuse_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'service_health_checks is append-only: insert a new check instead'
        USING ERRCODE = 'restrict_violation';
END
$$
"""

SUPABASE_ACCESS = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON {table} FROM anon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT {privileges} ON {table} TO service_role;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE ALL ON {table} FROM authenticated;
        GRANT {privileges} ON {table} TO authenticated;
        IF to_regprocedure('auth.jwt()') IS NOT NULL THEN
            CREATE POLICY {table}_jwt_admin ON {table} FOR ALL TO authenticated
                USING (coalesce((SELECT auth.jwt()) -> 'app_metadata' ->> 'role', '') = 'admin')
                WITH CHECK (
                    coalesce((SELECT auth.jwt()) -> 'app_metadata' ->> 'role', '') = 'admin'
                );
        END IF;
    END IF;
END
$$
"""


def _create_rollup(table: str, column: str) -> None:
    count = sa.Integer()
    op.create_table(
        table,
        sa.Column("service_name", sa.Text(), nullable=False),
        sa.Column(column, sa.DateTime(timezone=True), nullable=False),
        sa.Column("healthy", count, nullable=False),
        sa.Column("degraded", count, nullable=False),
        sa.Column("down", count, nullable=False),
        sa.Column("latency_count", count, nullable=False),
        sa.Column("latency_min", sa.Integer(), nullable=True),
        sa.Column("latency_max", sa.Integer(), nullable=True),
        sa.Column("latency_sum", sa.BigInteger(), nullable=False),
        sa.Column("latency_histogram", sa.ARRAY(sa.Integer()), nullable=False),
        sa.PrimaryKeyConstraint("service_name", column, name=op.f(f"pk_{table}")),
        sa.CheckConstraint(
            f"cardinality(latency_histogram) = {BUCKETS}",
            name=op.f(f"ck_{table}_latency_histogram_buckets"),
        ),
    )
    # All services over a time range (service_stats) reads by time first.
    op.create_index(op.f(f"ix_{table}_{column}"), table, [column])
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON {table} FROM PUBLIC")
    op.execute(f"GRANT {POLICED_PRIVILEGES} ON {table} TO monitoring_admin")
    op.execute(
        f"CREATE POLICY {table}_admin_all ON {table} FOR ALL TO monitoring_admin "
        "USING (true) WITH CHECK (true)"
    )
    op.execute(SUPABASE_ACCESS.format(table=table, privileges=POLICED_PRIVILEGES))


def upgrade() -> None:
    # Fail fast instead of queueing every query on the table behind a blocked ALTER.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(LATENCY_BUCKET)
    op.execute(HISTOGRAM_SUM)
    op.execute(DENSE_HISTOGRAM)
    for table, column, _ in ROLLUPS:
        _create_rollup(table, column)
    op.execute(ROLLUP_TRIGGER_FUNCTION)
    op.execute(
        "CREATE TRIGGER service_health_checks_rollup AFTER INSERT ON service_health_checks "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION service_health_rollup()"
    )
    # Fold in what was inserted before this revision, so rollups and raw rows agree from here.
    # The temporary table stands in for the trigger's transition table; COMMIT drops it.
    op.execute(
        "CREATE TEMPORARY TABLE new_rows ON COMMIT DROP AS "
        "SELECT service_name, status, latency_ms, created_at FROM service_health_checks"
    )
    for table, column, stride in ROLLUPS:
        op.execute(UPSERT.format(table=table, column=column, stride=stride))
    op.execute(REFUSE_UPDATE)
    op.execute(
        "CREATE TRIGGER service_health_checks_append_only BEFORE UPDATE ON service_health_checks "
        "FOR EACH ROW EXECUTE FUNCTION service_health_checks_refuse_update()"
    )
    # active_alerts: the few open alerts, newest first, without reading the resolved ones.
    op.create_index(
        op.f("ix_alert_events_open_created_at"),
        "alert_events",
        [sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        postgresql_where=sa.text("status <> 'resolved'"),
    )


def downgrade() -> None:
    raise IrreversibleMigration(revision)
