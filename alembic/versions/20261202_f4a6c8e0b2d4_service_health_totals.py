"""per-service running totals by hour, kept by a trigger: a window is two rows per service

Revision ID: f4a6c8e0b2d4
Revises: e3b9f1d7a4c6
Create Date: 2026-12-02 09:00:00

A frozen snapshot: explicit SQL, never the live models.

- ``service_health_totals``: per service and UTC hour, the running totals of its checks up to
  the end of that hour: counts by status and the latency histogram, as bigint (a running count
  never overflows), without its trailing empty buckets (a service's histogram ends where its
  slowest check was: about a third of the 106 buckets). One row for every row of
  ``service_health_hourly``, so the checks of whole hours ``[a, b)`` are the row before ``b``
  minus the row before ``a``: two index probes per service, however long the window (summing
  the hourly histograms cost PostgreSQL 2-3 us a row: 115k rows for a day of 5,000 services).
- Kept by a third statement-level AFTER INSERT trigger, ``service_health_checks_track_totals``:
  triggers fire in name order, so it runs after the rollup trigger (the hourly rows hold the
  new checks) and after the track trigger (the statement's state rows are locked, so concurrent
  writers of one service are serialized and each sees what the other committed). Per service
  it rewrites the rows from the statement's earliest hour on as the previous row plus the
  running sum of the hourly rows: an append rewrites the current hour's row, a backfill every
  row after it. Without a previous row (a new service, or one whose older rows were purged)
  the totals start from zero there: only differences between rows of a service mean anything.
- Purged with the hourly rollups. Readers take a window's starting totals from the row before
  it, or, when there is none, from its first row minus that hour's rollup.
- The existing hourly rollups are summed in under the trigger's lock (inserts wait for it),
  in hour order, as the trigger lays them out: the rows one window reads lie together.
- The rollups' time indexes also hold each row's service and latency extremes: the exact
  extremes of a window, and its services, come from an index-only scan (a day of 5,000
  services: 20 ms instead of 58 ms reading the wide rollup rows).
- Access as for the other derived tables; the histogram helper, as the rollup helpers, may be
  run by the roles that insert checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from cim_monitoring.errors import IrreversibleMigration

revision: str = "f4a6c8e0b2d4"
down_revision: str | Sequence[str] | None = "e3b9f1d7a4c6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "cim_monitoring"
# Stands for the tables' schema, quoted; replaced when the revision runs (_in_table_schema).
TABLE_SCHEMA = "@table_schema@"
TABLE = "service_health_totals"
BUCKETS = 106
EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
POLICED_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
# As 3f1c9a7e2b10 declares it for the checks.
SERVICE_NAME_VALID = (
    "char_length(service_name) BETWEEN 1 AND 100 "
    "AND service_name !~ '[\\u0001-\\u001f\\u007f-\\u009f]'"
)
HELPERS = (f"{SCHEMA}.service_health_histogram_add(bigint[], bigint[])",)

SQUAWK_EXCEPTIONS = {
    "require-concurrent-index-creation": (
        "CREATE INDEX CONCURRENTLY cannot run inside the revision's transaction; the rollups "
        "index builds take seconds and hold back only the rollup trigger's writes"
    ),
    "require-statement-timeout": (
        "a new table filled from service_health_hourly while the new trigger's lock holds "
        "inserts back: the fill reads the rollups once and must finish, however long it takes; "
        "so must the rollups' two index builds"
    ),
    "prefer-robust-stmts": (
        "the revision runs in one transaction: it applies whole or not at all, never half"
    ),
}

CREATE_TABLE = f"""
CREATE TABLE {TABLE_SCHEMA}.{TABLE} (
    service_name text NOT NULL,
    hour timestamptz NOT NULL,
    healthy bigint NOT NULL,
    degraded bigint NOT NULL,
    down bigint NOT NULL,
    latency_histogram bigint[] NOT NULL,
    CONSTRAINT pk_{TABLE} PRIMARY KEY (service_name, hour),
    CONSTRAINT ck_{TABLE}_service_name_valid CHECK ({SERVICE_NAME_VALID}),
    CONSTRAINT ck_{TABLE}_counts_non_negative CHECK (LEAST(healthy, degraded, down) >= 0),
    CONSTRAINT ck_{TABLE}_latency_histogram_buckets
        CHECK (cardinality(latency_histogram) <= {BUCKETS})
) WITH (fillfactor = 70)
"""
# A window's base rows are nearly always those of one hour, for every service at once. Built
# after the fill: once, rather than one entry at a time for millions of filled rows.
HOUR_INDEX = f"CREATE INDEX ix_{TABLE}_hour ON {TABLE_SCHEMA}.{TABLE} (hour)"

# PL/pgSQL without a query: no plan to go stale; assigning one element of an array variable
# is done in place. Trailing empty buckets of ``cells`` are not added, so a total is as long as
# its highest non-empty bucket.
HISTOGRAM_ADD = f"""
CREATE FUNCTION {SCHEMA}.service_health_histogram_add(total bigint[], cells bigint[])
RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $body$
DECLARE
    last integer := coalesce(cardinality(cells), 0);
BEGIN
    IF last > {BUCKETS} OR cardinality(total) > {BUCKETS} THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'service_health_histogram_add: histograms of ' || cardinality(total)
                      || ' and ' || last || ' buckets, expected at most {BUCKETS} each';
    END IF;
    WHILE last > 0 AND cells[last] = 0 LOOP
        last := last - 1;
    END LOOP;
    total := coalesce(total, '{{}}');
    FOR i IN 1 .. last LOOP
        total[i] := coalesce(total[i], 0) + cells[i];
    END LOOP;
    RETURN total;
END
$body$
"""

# Per service of the statement, the rows from its earliest new hour on, in hour order: the
# last row before that hour (the base; none for a new service) and the hourly rollups from it.
# A LATERAL probe and an index range per service: cheap whatever plan PL/pgSQL keeps.
SERIES = f"""
    WITH touched AS (
        SELECT service_name, min(date_bin('1 hour', created_at, {EPOCH})) AS since
          FROM new_rows
         GROUP BY service_name
    )
    SELECT b.service_name, b.hour, true AS base, b.healthy, b.degraded, b.down,
           b.latency_histogram
      FROM touched AS n
      JOIN LATERAL (
        SELECT p.service_name, p.hour, p.healthy, p.degraded, p.down, p.latency_histogram
          FROM {TABLE_SCHEMA}.{TABLE} AS p
         WHERE p.service_name = n.service_name AND p.hour < n.since
         ORDER BY p.hour DESC
         LIMIT 1
      ) AS b ON true
    UNION ALL
    SELECT r.service_name, r.hour, false, r.healthy, r.degraded, r.down,
           r.latency_histogram::bigint[]
      FROM touched AS n
      JOIN {TABLE_SCHEMA}.service_health_hourly AS r
        ON r.service_name = n.service_name AND r.hour >= n.since
     ORDER BY 1, 2
"""  # noqa: S608 - assembled from this revision's constants
UPSERT_TOTALS = f"""
    INSERT INTO {TABLE_SCHEMA}.{TABLE} AS t
           (service_name, hour, healthy, degraded, down, latency_histogram)
    SELECT u.service_name, u.hour, u.healthy, u.degraded, u.down, u.latency_histogram::bigint[]
      FROM unnest(out_names, out_hours, out_healthy, out_degraded, out_down, out_histograms)
           AS u(service_name, hour, healthy, degraded, down, latency_histogram)
        ON CONFLICT (service_name, hour) DO UPDATE SET
           healthy = excluded.healthy, degraded = excluded.degraded, down = excluded.down,
           latency_histogram = excluded.latency_histogram
"""  # noqa: S608 - assembled from this revision's constants

# As the other trigger functions (b7e5d3c1a902, e3b9f1d7a4c6): PL/pgSQL keeps the plan made on
# a connection's first insert; past this many rows the series is planned for its size.
# The running sums are a loop, not a window aggregate: an aggregate cannot pin its
# search_path, and Supabase's linter flags every function that does not.
REPLAN_ROWS = 10_000
TOTALS_FUNCTION = f"""
CREATE FUNCTION {SCHEMA}.service_health_track_totals() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $body$
DECLARE
    item record;
    series refcursor;
    current_service text;
    sum_healthy bigint;
    sum_degraded bigint;
    sum_down bigint;
    sum_histogram bigint[];
    written integer := 0;
    out_names text[] := '{{}}';
    out_hours timestamptz[] := '{{}}';
    out_healthy bigint[] := '{{}}';
    out_degraded bigint[] := '{{}}';
    out_down bigint[] := '{{}}';
    out_histograms text[] := '{{}}';
BEGIN
    IF EXISTS (SELECT FROM new_rows OFFSET {REPLAN_ROWS}) THEN
        OPEN series FOR EXECUTE $series${SERIES.strip()}$series$;
    ELSE
        OPEN series FOR {SERIES.strip()};
    END IF;
    LOOP
        FETCH series INTO item;
        EXIT WHEN NOT FOUND;
        IF item.service_name IS DISTINCT FROM current_service THEN
            current_service := item.service_name;
            sum_healthy := 0;
            sum_degraded := 0;
            sum_down := 0;
            sum_histogram := '{{}}';
        END IF;
        sum_healthy := sum_healthy + item.healthy;
        sum_degraded := sum_degraded + item.degraded;
        sum_down := sum_down + item.down;
        sum_histogram := {SCHEMA}.service_health_histogram_add(
            sum_histogram, item.latency_histogram);
        IF NOT item.base THEN
            written := written + 1;
            out_names[written] := current_service;
            out_hours[written] := item.hour;
            out_healthy[written] := sum_healthy;
            out_degraded[written] := sum_degraded;
            out_down[written] := sum_down;
            -- As text: the totals differ in length, and an array of arrays cannot.
            out_histograms[written] := sum_histogram::text;
        END IF;
    END LOOP;
    CLOSE series;
    {UPSERT_TOTALS.strip()};
    RETURN NULL;
END
$body$
"""  # noqa: S608 - assembled from this revision's constants

# After service_health_checks_rollup and service_health_checks_track: triggers fire in name
# order.
CREATE_TRIGGER = f"""
CREATE TRIGGER service_health_checks_track_totals
AFTER INSERT ON {TABLE_SCHEMA}.service_health_checks
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
EXECUTE FUNCTION {SCHEMA}.service_health_track_totals()
"""

# The fill sums the running histograms with a window aggregate made for the occasion in the
# session's temporary schema (gone with the session: no persistent aggregate, which could not
# pin its search_path), in hour order, as the trigger lays the rows out.
FILL = f"""
CREATE AGGREGATE pg_temp.service_health_histogram_total(bigint[]) (
    SFUNC = {SCHEMA}.service_health_histogram_add,
    STYPE = bigint[],
    INITCOND = '{{}}'
);
INSERT INTO {TABLE_SCHEMA}.{TABLE} (service_name, hour, healthy, degraded, down,
                                    latency_histogram)
SELECT service_name, hour,
       sum(healthy) OVER w, sum(degraded) OVER w, sum(down) OVER w,
       pg_temp.service_health_histogram_total(latency_histogram::bigint[]) OVER w
  FROM {TABLE_SCHEMA}.service_health_hourly
WINDOW w AS (PARTITION BY service_name ORDER BY hour ROWS UNBOUNDED PRECEDING)
 ORDER BY hour, service_name;
DROP AGGREGATE pg_temp.service_health_histogram_total(bigint[]);
"""  # noqa: S608 - assembled from this revision's constants

# Same names, so the models and every reader of them are unchanged; built inside the
# revision's transaction (the rollups take no writes meanwhile: seconds at 3.6M hourly rows).
COVERING_INDEXES = "".join(
    f"""
DROP INDEX {TABLE_SCHEMA}.ix_{table}_{column};
CREATE INDEX ix_{table}_{column} ON {TABLE_SCHEMA}.{table} ({column})
    INCLUDE (service_name, latency_min, latency_max);
"""
    for table, column in (("service_health_hourly", "hour"), ("service_health_daily", "day"))
)

# RLS and grants as e3b9f1d7a4c6 gives the state and the changes.
PROTECT = f"""
DO $$
DECLARE
    target text := format('%I.%I', current_schema(), '{TABLE}');
    admin_claim text := '(coalesce((SELECT auth.jwt()) -> ''app_metadata'' ->> ''role'', '''') '
                        '= ''admin'')';
BEGIN
    EXECUTE 'ALTER TABLE ' || target || ' ENABLE ROW LEVEL SECURITY';
    EXECUTE 'ALTER TABLE ' || target || ' FORCE ROW LEVEL SECURITY';
    EXECUTE 'REVOKE ALL ON ' || target || ' FROM PUBLIC';
    EXECUTE 'GRANT {POLICED_PRIVILEGES} ON ' || target || ' TO monitoring_admin';
    EXECUTE 'CREATE POLICY {TABLE}_admin_all ON ' || target
            || ' FOR ALL TO monitoring_admin USING (true) WITH CHECK (true)';
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        EXECUTE 'REVOKE ALL ON ' || target || ' FROM anon';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        EXECUTE 'GRANT {POLICED_PRIVILEGES} ON ' || target || ' TO service_role';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        EXECUTE 'REVOKE ALL ON ' || target || ' FROM authenticated';
        EXECUTE 'GRANT {POLICED_PRIVILEGES} ON ' || target || ' TO authenticated';
        IF to_regprocedure('auth.jwt()') IS NOT NULL THEN
            EXECUTE 'CREATE POLICY {TABLE}_jwt_admin ON ' || target
                    || ' FOR ALL TO authenticated USING ' || admin_claim
                    || ' WITH CHECK ' || admin_claim;
        END IF;
    END IF;
END
$$
"""  # noqa: S608 - assembled from this revision's constants

# Whatever else anybody holds on the new table and functions (Supabase's default privileges,
# the default EXECUTE for PUBLIC of a function, a NULL ACL standing for it): only the
# documented privileges stay; the helpers' EXECUTE is granted afresh below.
REVOKE_UNDOCUMENTED = f"""
DO $$
DECLARE
    revocation text;
BEGIN
    FOR revocation IN
        SELECT 'REVOKE ' || a.privilege_type || ' ON TABLE ' || c.oid::regclass::text || ' FROM '
               || a.grantee::regrole::text
          FROM pg_class AS c, aclexplode(c.relacl) AS a
         WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
           AND c.relname = '{TABLE}'
           AND a.grantee <> c.relowner AND a.grantee <> 0
           AND (a.privilege_type NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
                OR a.grantee::regrole::text NOT IN (
                    'monitoring_admin', 'service_role', 'authenticated'))
        UNION ALL
        SELECT 'REVOKE ALL ON FUNCTION ' || p.oid::regprocedure::text || ' FROM '
               || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
          FROM pg_proc AS p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
         WHERE p.oid IN ('{SCHEMA}.service_health_track_totals()'::regprocedure,
                         {", ".join(f"'{helper}'::regprocedure" for helper in HELPERS)})
           AND a.grantee <> p.proowner
    LOOP
        EXECUTE revocation;
    END LOOP;
END
$$
"""  # noqa: S608 - assembled from this revision's constants

GRANT_HELPERS = f"""
DO $$
DECLARE
    grantee text;
BEGIN
    FOREACH grantee IN ARRAY ARRAY['monitoring_admin', 'service_role', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = grantee) THEN
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


def upgrade() -> None:
    # Fail fast instead of queueing every query on the table behind a blocked ALTER.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(_in_table_schema(CREATE_TABLE))
    op.execute(HISTOGRAM_ADD)
    op.execute(_in_table_schema(TOTALS_FUNCTION))
    # The trigger's lock (SHARE ROW EXCLUSIVE) holds inserts back until the fill commits with it:
    # no check can fall between the fill and the trigger.
    op.execute(_in_table_schema(CREATE_TRIGGER))
    op.execute(_in_table_schema(FILL))
    op.execute(_in_table_schema(HOUR_INDEX))
    op.execute(_in_table_schema(COVERING_INDEXES))
    op.execute(PROTECT)
    op.execute(REVOKE_UNDOCUMENTED)
    op.execute(GRANT_HELPERS)


def downgrade() -> None:
    raise IrreversibleMigration(revision)
