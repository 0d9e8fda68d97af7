"""daily partitions for service_health_checks: expired days dropped, not deleted

Revision ID: f6a1c3e5b7d9
Revises: f4a6c8e0b2d4
Create Date: 2026-12-03 09:00:00

A frozen snapshot: explicit SQL, never the live models.

- ``service_health_checks`` becomes a table range-partitioned on ``created_at``, one partition
  per UTC day (``service_health_checks_pYYYYMMDD``), plus a default partition
  (``service_health_checks_default``) for a row of any day that has none: a backfill older than
  the oldest partition, a clock running past the partitions made ahead. No insert fails for a
  missing partition.
- The existing table is not copied. It is renamed and attached as ONE partition covering its
  own days, from the UTC day of its oldest row to the day after the later of now and its newest
  row (a single day on an empty table, which then looks like any other day). Attaching it as
  the default partition instead would need no range, but every later partition created beside
  a default has to prove that the default holds none of its rows: a scan of up to 30 days of
  checks under an ACCESS EXCLUSIVE lock on the default for each new day, or a CHECK on the
  default to maintain. As a range partition it is dropped whole once its last day expires
  (until then the purge deletes its expired rows, as before this revision), and the default
  stays small. The range is proved by a CHECK added ``NOT VALID`` and validated (one read of
  the table, no write), so ATTACH does not scan; the CHECK is dropped once attached.
- Partitioning needs the key in every unique constraint: the primary key becomes
  ``(id, created_at)``. The old table gets its unique index on those columns (built here,
  unless an index ``service_health_checks_id_created_at`` was built beforehand with
  ``CREATE UNIQUE INDEX CONCURRENTLY``: on a big table that keeps the build out of the lock);
  its other indexes are attached to the parent's partitioned indexes as they are. The identity
  moves to the parent, whose sequence continues where the old one stood (never below the
  largest id). PostgreSQL 15 keeps the identity on the parent only (a row inserted straight
  into a partition gets no id); 17 and later share it with the partitions.
- The append-only, rollup, track and totals triggers move to the parent, unchanged. Statement-level
  AFTER INSERT triggers with transition tables on a partitioned table see every row routed to
  any partition, for INSERT, executemany and COPY alike.
- A partition does not inherit row level security, policies or privileges, and on Supabase a
  new table is granted to ``anon`` when it is created. The parent takes the old table's
  protection; every partition created later gets the parent's: RLS enabled and forced, the
  same policies, exactly the parent's grants (whatever default privileges granted is revoked).
- Partitions are made and dropped by two SECURITY DEFINER functions in the private schema,
  EXECUTE for ``monitoring_admin`` only, ``search_path`` and ``TimeZone`` pinned:
  ``service_health_checks_add_partitions(first_day, days)`` creates the default (if missing)
  and every missing day of ``first_day`` and the days after; rows of such a day found in the
  default move into its partition. A new day is made standalone, protected, then attached,
  under a SHARE lock on the parent: reads carry on, inserts wait the few milliseconds it takes
  (a writer that routed a row of the new day to the default before the ATTACH would otherwise
  fail on the default's new partition constraint after it). When the default holds a row of
  the day that cannot be moved (an ATTACH check_violation), that day is left to the default.
  ``service_health_checks_drop_partitions(before)`` drops every day partition that ends by
  ``before`` and returns how many rows went with them, counted under the lock; NULL when the
  parent could not be locked within ``lock_timeout`` (then nothing is dropped, and the purge
  deletes those rows instead). Both return at once when there is nothing to do, without a
  lock; otherwise they take a transaction-level advisory lock, or, when another upkeep holds
  it, leave the work to that one (a purge never waits for another purge's transaction).
  Both are idempotent.
- This revision makes today and the next 7 days; every ``migrate`` and every purge does so again.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from cim_monitoring.errors import IrreversibleMigration

revision: str = "f6a1c3e5b7d9"
down_revision: str | Sequence[str] | None = "f4a6c8e0b2d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "cim_monitoring"
# Stands for the tables' schema, quoted; replaced when the revision runs (_in_table_schema).
TABLE_SCHEMA = "@table_schema@"
CHECKS = f"{TABLE_SCHEMA}.service_health_checks"
PREFIX = "service_health_checks_p"
DEFAULT_PARTITION = "service_health_checks_default"
DAYS_AHEAD = 7
# "cim-part" in ASCII: the partition upkeep of every process queues on it.
UPKEEP_LOCK_KEY = 0x63696D2D70617274
# As 3f1c9a7e2b10 declares it.
SERVICE_NAME_VALID = (
    "char_length(service_name) BETWEEN 1 AND 100 "
    "AND service_name !~ '[\\u0001-\\u001f\\u007f-\\u009f]'"
)

SQUAWK_EXCEPTIONS = {
    "require-statement-timeout": (
        "the old table is validated against its own range (one read, no write) and, unless "
        "built beforehand, gets its (id, created_at) index under the lock; both must finish"
    ),
    "prefer-robust-stmts": (
        "the revision runs in one transaction: it applies whole or not at all, never half"
    ),
    "constraint-missing-not-valid": (
        "the range CHECK on the old table is added NOT VALID and validated right after, in "
        "the same transaction, to let ATTACH skip its own scan"
    ),
    "disallowed-unique-constraint": (
        "the primary key of the old table is rebuilt on (id, created_at), as partitioning "
        "requires; an index of that name built CONCURRENTLY beforehand is used instead"
    ),
}

# One row per day partition of the checks: its bounds, read back from the catalogue (in UTC,
# the functions' pinned TimeZone, so the literals read back exactly). The default has none.
BOUNDS = f"""
    SELECT i.inhrelid::regclass AS partition, m[1]::timestamptz AS from_at,
           m[2]::timestamptz AS to_at
      FROM pg_catalog.pg_inherits AS i
      JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid,
           pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                   'FROM \\(''([^'']*)''\\) TO \\(''([^'']*)''\\)') AS m
     WHERE i.inhparent = '{CHECKS}'::regclass AND m IS NOT NULL
"""  # noqa: S608 - assembled from this revision's constants

# PL/pgSQL: ``target`` gets exactly the protection of ``source`` (regclass variables): RLS
# enabled and forced, the same policies, the same grants and nothing else (a new table on
# Supabase starts out granted to anon, authenticated and service_role).
COPY_PROTECTION = """
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC', target);
    FOR statement IN
        SELECT DISTINCT pg_catalog.format('REVOKE ALL ON %s FROM %s', target,
                                          a.grantee::regrole)
          FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS a
         WHERE c.oid = target AND a.grantee <> c.relowner AND a.grantee <> 0
        UNION ALL
        SELECT pg_catalog.format('GRANT %s ON %s TO %s', a.privilege_type, target,
                                 CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                      ELSE a.grantee::regrole::text END)
          FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS a
         WHERE c.oid = source AND a.grantee <> c.relowner
        UNION ALL
        SELECT pg_catalog.format(
                   'CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, target,
                   CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                   CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                 WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                   (SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'PUBLIC'
                                                      ELSE r::regrole::text END, ', ')
                      FROM pg_catalog.unnest(p.polroles) AS r),
                   ' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')',
                   ' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')')
          FROM pg_catalog.pg_policy AS p
         WHERE p.polrelid = source
    LOOP
        EXECUTE statement;
    END LOOP;
"""

ADD_PARTITIONS = f"""
CREATE FUNCTION {SCHEMA}.service_health_checks_add_partitions(first_day date, days integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = '' SET "TimeZone" = 'UTC' SET lock_timeout = '5s'
AS $body$
DECLARE
    source regclass := '{CHECKS}'::regclass;
    target regclass;
    fallback regclass;
    statement text;
    day date;
    lower_at timestamptz;
    created integer := 0;
BEGIN
    IF days IS NULL OR first_day IS NULL OR days NOT BETWEEN 1 AND 366 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'service_health_checks_add_partitions: days must be 1..366, not '
                      || coalesce(days::text, 'NULL');
    END IF;
    SELECT NULLIF(t.partdefid, 0)::regclass INTO fallback
      FROM pg_catalog.pg_partitioned_table AS t WHERE t.partrelid = source;
    -- Nothing missing (the common case): no lock at all. Otherwise the upkeep already running
    -- elsewhere makes them (or committed them after this snapshot): leave it to that one.
    IF fallback IS NOT NULL AND NOT EXISTS (
        SELECT FROM pg_catalog.generate_series(0, days - 1) AS d
         WHERE NOT EXISTS (
            SELECT FROM ({BOUNDS}) AS b
             WHERE b.from_at < (first_day + d + 1)::timestamp AT TIME ZONE 'UTC'
               AND b.to_at > (first_day + d)::timestamp AT TIME ZONE 'UTC'))
       OR NOT pg_catalog.pg_try_advisory_xact_lock({UPKEEP_LOCK_KEY}) THEN
        RETURN 0;
    END IF;
    -- Parent first, as writers and the purge lock it. SHARE holds inserts back (reads go on)
    -- for the few ms the new tables take: a writer that had routed a row of a new day to the
    -- default before the ATTACH would fail on the default's new constraint after it.
    LOCK TABLE {CHECKS} IN SHARE MODE;
    IF fallback IS NULL THEN
        EXECUTE 'CREATE TABLE {TABLE_SCHEMA}.{DEFAULT_PARTITION} (LIKE {CHECKS} '
                'INCLUDING DEFAULTS INCLUDING CONSTRAINTS)';
        target := '{TABLE_SCHEMA}.{DEFAULT_PARTITION}'::regclass;
{COPY_PROTECTION}
        EXECUTE pg_catalog.format('ALTER TABLE %s ATTACH PARTITION %s DEFAULT', source, target);
        fallback := target;
        created := created + 1;
    END IF;
    FOR day IN SELECT d::date FROM pg_catalog.generate_series(
                   first_day::timestamp, (first_day + days - 1)::timestamp, '1 day') AS d LOOP
        lower_at := day::timestamp AT TIME ZONE 'UTC';
        CONTINUE WHEN EXISTS (
            SELECT FROM ({BOUNDS}) AS b
             WHERE b.from_at < lower_at + interval '1 day' AND b.to_at > lower_at
        );
        BEGIN
            EXECUTE pg_catalog.format(
                'CREATE TABLE {TABLE_SCHEMA}.%I (LIKE {CHECKS} '
                'INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                '{PREFIX}' || pg_catalog.to_char(day, 'YYYYMMDD'));
            target := pg_catalog.format('{TABLE_SCHEMA}.%I',
                                        '{PREFIX}' || pg_catalog.to_char(day, 'YYYYMMDD'));
            -- Before its RLS is on: the owner moves the rows in without a policy.
            EXECUTE pg_catalog.format(
                'WITH moved AS (DELETE FROM %s WHERE created_at >= $1 AND created_at < $2 '
                'RETURNING *) INSERT INTO %s SELECT * FROM moved', fallback, target)
                USING lower_at, lower_at + interval '1 day';
{COPY_PROTECTION}
            EXECUTE pg_catalog.format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
                                      source, target, lower_at, lower_at + interval '1 day');
            created := created + 1;
        EXCEPTION WHEN check_violation THEN
            -- The default holds a row of the day this transaction cannot move (written
            -- meanwhile, or hidden from the owner by RLS): the day stays in the default.
            RAISE WARNING 'service_health_checks: no partition for %, its rows stay in the default',
                day;
        END;
    END LOOP;
    RETURN created;
END
$body$
"""  # noqa: S608, E501 - assembled from this revision's constants

DROP_PARTITIONS = f"""
CREATE FUNCTION {SCHEMA}.service_health_checks_drop_partitions(before timestamptz)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = '' SET "TimeZone" = 'UTC' SET lock_timeout = '2s' SET row_security = off
AS $body$
DECLARE
    expired regclass;
    rows_in bigint;
    dropped bigint := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM ({BOUNDS}) AS b WHERE b.to_at <= before) THEN
        RETURN 0;
    END IF;
    -- Another upkeep is at work: drop nothing, the purge deletes instead.
    IF NOT pg_catalog.pg_try_advisory_xact_lock({UPKEEP_LOCK_KEY}) THEN
        RETURN NULL;
    END IF;
    BEGIN
        -- Dropping a partition locks its parent so; taken first, the counts below are exact:
        -- no row can reach an expired day between its count and its drop.
        LOCK TABLE {CHECKS} IN ACCESS EXCLUSIVE MODE;
    EXCEPTION WHEN lock_not_available THEN
        RETURN NULL;
    END;
    FOR expired IN SELECT b.partition FROM ({BOUNDS}) AS b WHERE b.to_at <= before
                    ORDER BY b.from_at LOOP
        EXECUTE pg_catalog.format('SELECT count(*) FROM %s', expired) INTO rows_in;
        EXECUTE pg_catalog.format('DROP TABLE %s', expired);
        dropped := dropped + rows_in;
    END LOOP;
    RETURN dropped;
END
$body$
"""  # noqa: S608 - assembled from this revision's constants

FUNCTIONS = (
    f"{SCHEMA}.service_health_checks_add_partitions(date, integer)",
    f"{SCHEMA}.service_health_checks_drop_partitions(timestamptz)",
)

# The old table becomes the partition of its own days: renamed with its indexes (their names
# go to the parent's), its primary key rebuilt on (id, created_at), its triggers and identity
# handed to the parent, its range proved by a CHECK, then attached.
CONVERT = f"""
DO $convert$
DECLARE
    legacy text;
    sequence_name text;
    last_id bigint;
    called boolean;
    first_at timestamptz;
    end_at timestamptz;
    target regclass;
    source regclass;
    statement text;
BEGIN
    LOCK TABLE {CHECKS} IN ACCESS EXCLUSIVE MODE;
    SELECT date_bin('1 day', min(created_at), TIMESTAMPTZ '1970-01-01 00:00:00+00'),
           date_bin('1 day', greatest(max(created_at), now()), TIMESTAMPTZ '1970-01-01 00:00:00+00')
               + interval '1 day'
      INTO first_at, end_at FROM {CHECKS};
    first_at := coalesce(first_at, end_at - interval '1 day');
    legacy := '{PREFIX}' || to_char(first_at AT TIME ZONE 'UTC', 'YYYYMMDD')
              || CASE WHEN end_at - first_at > interval '1 day'
                      THEN '_' || to_char((end_at - interval '1 day') AT TIME ZONE 'UTC',
                                          'YYYYMMDD')
                      ELSE '' END;
    sequence_name := pg_get_serial_sequence('{CHECKS}', 'id');
    EXECUTE 'SELECT last_value, is_called FROM ' || sequence_name INTO last_id, called;
    SELECT greatest(last_id, max(id)), called OR coalesce(max(id) >= last_id, false) INTO last_id, called
      FROM {CHECKS};

    CREATE UNIQUE INDEX IF NOT EXISTS service_health_checks_id_created_at
        ON {CHECKS} (id, created_at);
    ALTER TABLE {CHECKS} DROP CONSTRAINT pk_service_health_checks;
    EXECUTE format('ALTER TABLE {CHECKS} ADD CONSTRAINT %I PRIMARY KEY '
                   'USING INDEX service_health_checks_id_created_at', legacy || '_pkey');
    EXECUTE format('ALTER INDEX {TABLE_SCHEMA}.ix_service_health_checks_created_at RENAME TO %I',
                   legacy || '_created_at_idx');
    EXECUTE format('ALTER INDEX {TABLE_SCHEMA}.ix_service_health_checks_service_name_created_at '
                   'RENAME TO %I', left(legacy || '_service_name_created_at_idx', 63));
    DROP TRIGGER service_health_checks_append_only ON {CHECKS};
    DROP TRIGGER service_health_checks_rollup ON {CHECKS};
    DROP TRIGGER service_health_checks_track ON {CHECKS};
    DROP TRIGGER service_health_checks_track_totals ON {CHECKS};
    ALTER TABLE {CHECKS} ALTER COLUMN id DROP IDENTITY;
    EXECUTE format('ALTER TABLE {CHECKS} RENAME TO %I', legacy);
    EXECUTE format('ALTER TABLE {TABLE_SCHEMA}.%I ADD CONSTRAINT %I '
                   'CHECK (created_at >= %L AND created_at < %L) NOT VALID',
                   legacy, legacy || '_range', first_at, end_at);
    EXECUTE format('ALTER TABLE {TABLE_SCHEMA}.%I VALIDATE CONSTRAINT %I',
                   legacy, legacy || '_range');

    CREATE TABLE {CHECKS} (
        id bigint GENERATED ALWAYS AS IDENTITY,
        service_name text NOT NULL,
        status text NOT NULL,
        latency_ms integer,
        probe_details jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        error_message text,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_service_health_checks PRIMARY KEY (id, created_at),
        CONSTRAINT ck_service_health_checks_service_name_valid CHECK ({SERVICE_NAME_VALID}),
        CONSTRAINT ck_service_health_checks_status_valid
            CHECK (status IN ('healthy', 'degraded', 'down')),
        CONSTRAINT ck_service_health_checks_latency_ms_non_negative CHECK (latency_ms >= 0),
        CONSTRAINT ck_service_health_checks_probe_details_is_object
            CHECK (jsonb_typeof(probe_details) = 'object')
    ) PARTITION BY RANGE (created_at);
    CREATE INDEX ix_service_health_checks_created_at ON {CHECKS} (created_at);
    CREATE INDEX ix_service_health_checks_service_name_created_at
        ON {CHECKS} (service_name, created_at DESC);
    PERFORM setval(pg_get_serial_sequence('{CHECKS}', 'id'), last_id, called);

    source := format('{TABLE_SCHEMA}.%I', legacy)::regclass;
    target := '{CHECKS}'::regclass;
{COPY_PROTECTION}
    CREATE TRIGGER service_health_checks_append_only BEFORE UPDATE ON {CHECKS}
        FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.service_health_checks_refuse_update();
    CREATE TRIGGER service_health_checks_rollup AFTER INSERT ON {CHECKS}
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
        EXECUTE FUNCTION {SCHEMA}.service_health_rollup();
    CREATE TRIGGER service_health_checks_track AFTER INSERT ON {CHECKS}
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
        EXECUTE FUNCTION {SCHEMA}.service_health_track();
    CREATE TRIGGER service_health_checks_track_totals AFTER INSERT ON {CHECKS}
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
        EXECUTE FUNCTION {SCHEMA}.service_health_track_totals();

    EXECUTE format('ALTER TABLE {CHECKS} ATTACH PARTITION {TABLE_SCHEMA}.%I '
                   'FOR VALUES FROM (%L) TO (%L)', legacy, first_at, end_at);
    EXECUTE format('ALTER TABLE {TABLE_SCHEMA}.%I DROP CONSTRAINT %I', legacy, legacy || '_range');
END
$convert$
"""  # noqa: S608, E501 - assembled from this revision's constants

# The new identity sequence: nobody but its owner (an identity needs no sequence privilege);
# Supabase's default privileges granted it to the API roles. The functions: EXECUTE for
# monitoring_admin alone (PostgreSQL grants it to PUBLIC by default).
LOCK_DOWN = f"""
DO $$
DECLARE
    revocation text;
BEGIN
    FOR revocation IN
        SELECT 'REVOKE ALL ON SEQUENCE ' || c.oid::regclass::text || ' FROM '
               || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
          FROM pg_class AS c, aclexplode(c.relacl) AS a
         WHERE c.oid = pg_get_serial_sequence(
                   format('%I.service_health_checks', current_schema()), 'id')::regclass
           AND a.grantee <> c.relowner
    LOOP
        EXECUTE revocation;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION {", ".join(FUNCTIONS)} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {", ".join(FUNCTIONS)} TO monitoring_admin;
"""  # noqa: S608 - assembled from this revision's constants

ADD_DAYS_AHEAD = f"""
SELECT {SCHEMA}.service_health_checks_add_partitions(
    CAST(now() AT TIME ZONE 'UTC' AS date), {DAYS_AHEAD + 1})
"""


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
    op.execute(_in_table_schema(CONVERT))
    op.execute(_in_table_schema(ADD_PARTITIONS))
    op.execute(_in_table_schema(DROP_PARTITIONS))
    op.execute(LOCK_DOWN)
    op.execute(ADD_DAYS_AHEAD)


def downgrade() -> None:
    raise IrreversibleMigration(revision)
