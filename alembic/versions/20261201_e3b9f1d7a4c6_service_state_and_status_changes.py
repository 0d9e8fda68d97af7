"""per-service state and status changes, kept by a trigger in the inserting transaction

Revision ID: e3b9f1d7a4c6
Revises: d9f3b7a2c5e1
Create Date: 2026-12-01 09:00:00

A frozen snapshot: explicit SQL, never the live models.

- ``service_health_state``: one row per service, its newest check by ``(created_at, id)``.
  ``latest_status`` reads one small row per service instead of probing the checks' index once
  per service. A check older than the newest never overwrites the state.
- ``service_health_changes``: one row per check whose status differs from the previous check
  of its service by ``(created_at, id)``; a service's first check is a change from NULL.
  Incidents and downtime are read from it, so they outlive the raw rows (it is purged with the
  rollups, each service's newest change kept).
- A statement-level AFTER INSERT trigger keeps both, for every insert path (INSERT,
  executemany, COPY), as the inserting role (SECURITY INVOKER, like the rollup trigger). It
  locks the state rows of the statement's services in name order first: concurrent writers of
  one service are serialized there, so each sees what the other committed. In the common case
  (every new check newer than its service's state) the changes come from the transition table,
  each service's first new check compared with its last change. When a check lands before its
  service's newest (a backfill), the changes of every service of the statement are recomputed
  from the raw rows over the span the new checks can affect: from the first new check up to the
  first older check after the newest new one.
- The existing checks are folded in under the trigger's lock (inserts wait for it), so the
  tables agree with the raw rows from here on; checks already purged leave no changes.
- Access as for the rollups: RLS enabled and forced, ``monitoring_admin`` through a policy,
  on Supabase ``service_role`` and the admin claim of ``authenticated``; whatever Supabase's
  default privileges granted beyond that is revoked.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from cim_monitoring.errors import IrreversibleMigration

revision: str = "e3b9f1d7a4c6"
down_revision: str | Sequence[str] | None = "d9f3b7a2c5e1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "cim_monitoring"
# Stands for the tables' schema, quoted; replaced when the revision runs (_in_table_schema).
TABLE_SCHEMA = "@table_schema@"
TABLES = ("service_health_state", "service_health_changes")
POLICED_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
STATUSES = "'healthy', 'degraded', 'down'"
# As 3f1c9a7e2b10 declares it for the checks.
SERVICE_NAME_VALID = (
    "char_length(service_name) BETWEEN 1 AND 100 "
    "AND service_name !~ '[\\u0001-\\u001f\\u007f-\\u009f]'"
)

SQUAWK_EXCEPTIONS = {
    "require-statement-timeout": (
        "two new tables filled from service_health_checks while the new trigger's lock holds "
        "inserts back: the fill reads the table once and must finish, however long it takes"
    ),
    "prefer-robust-stmts": (
        "the revision runs in one transaction: it applies whole or not at all, never half"
    ),
}

CREATE_TABLES = f"""
CREATE TABLE {TABLE_SCHEMA}.service_health_state (
    service_name text NOT NULL,
    status text NOT NULL,
    latency_ms integer,
    checked_at timestamptz NOT NULL,
    check_id bigint NOT NULL,
    CONSTRAINT pk_service_health_state PRIMARY KEY (service_name),
    CONSTRAINT ck_service_health_state_service_name_valid CHECK ({SERVICE_NAME_VALID}),
    CONSTRAINT ck_service_health_state_status_valid CHECK (status IN ({STATUSES})),
    CONSTRAINT ck_service_health_state_latency_ms_non_negative CHECK (latency_ms >= 0)
) WITH (fillfactor = 50);
-- Every insert updates a service's row in place: half of each page left free keeps those
-- updates on the page (HOT), so the table stays a few pages for thousands of services instead
-- of growing with every update until vacuum (1,227 pages for 5,000 rows were seen).
CREATE TABLE {TABLE_SCHEMA}.service_health_changes (
    service_name text NOT NULL,
    changed_at timestamptz NOT NULL,
    check_id bigint NOT NULL,
    from_status text,
    to_status text NOT NULL,
    CONSTRAINT pk_service_health_changes PRIMARY KEY (service_name, changed_at, check_id),
    CONSTRAINT ck_service_health_changes_service_name_valid CHECK ({SERVICE_NAME_VALID}),
    CONSTRAINT ck_service_health_changes_from_status_valid CHECK (from_status IN ({STATUSES})),
    CONSTRAINT ck_service_health_changes_to_status_valid CHECK (to_status IN ({STATUSES})),
    CONSTRAINT ck_service_health_changes_is_a_change CHECK (from_status IS DISTINCT FROM to_status)
);
-- Incidents and downtime of every service over a time range read by time first.
CREATE INDEX ix_service_health_changes_changed_at
    ON {TABLE_SCHEMA}.service_health_changes (changed_at);
"""

# Per service of the statement: its newest new check (all columns of the state) and the key of
# its first one. One sort serves both the window and DISTINCT ON.
NEW_BY_SERVICE = """
    SELECT DISTINCT ON (service_name) service_name, status, latency_ms,
           created_at AS newest_at, id AS newest_id,
           last_value(created_at) OVER whole AS first_at, last_value(id) OVER whole AS first_id
      FROM new_rows
    WINDOW whole AS (PARTITION BY service_name ORDER BY created_at DESC, id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
     ORDER BY service_name, created_at DESC, id DESC
"""

# The status in effect just before ``{at}, {id}`` for service ``{name}``: its last change before.
STATUS_BEFORE = f"""(
    SELECT c.to_status FROM {TABLE_SCHEMA}.service_health_changes AS c
     WHERE c.service_name = {{name}} AND c.changed_at <= {{at}}
       AND (c.changed_at, c.check_id) < ({{at}}, {{id}})
     ORDER BY c.changed_at DESC, c.check_id DESC
     LIMIT 1
)"""  # noqa: S608 - assembled from this revision's constants

# Per service of a statement with a backfill: the span of keys its new checks can change, from
# its first new check to the first older check after its newest new one (NULL: no such check,
# the span is open), and the status before the span.
SPANS = f"""
    SELECT f.service_name, f.first_at, f.first_id, after.next_at, after.next_id,
           {STATUS_BEFORE.format(name="f.service_name", at="f.first_at", id="f.first_id")}
               AS status_before
      FROM ({NEW_BY_SERVICE}) AS f
      LEFT JOIN LATERAL (
        SELECT h.created_at AS next_at, h.id AS next_id
          FROM {TABLE_SCHEMA}.service_health_checks AS h
         WHERE h.service_name = f.service_name AND h.created_at >= f.newest_at
           AND (h.created_at, h.id) > (f.newest_at, f.newest_id)
         ORDER BY h.created_at, h.id
         LIMIT 1
      ) AS after ON true
"""  # noqa: S608 - assembled from this revision's constants

INSERT_CHANGES = f"""
    INSERT INTO {TABLE_SCHEMA}.service_health_changes
           (service_name, changed_at, check_id, from_status, to_status)
"""

# The trigger's statements, in order. In CREATE_STATES a new state row holds its newest new
# check already; a concurrent first writer of the same service waits there until this
# transaction ends, then finds the row. LOCK_STATES locks every state row of the statement in
# name order, as every writer does: each later statement sees what concurrent writers of these
# services committed, and none of them can interleave.
CREATE_STATES = f"""
    INSERT INTO {TABLE_SCHEMA}.service_health_state
           (service_name, status, latency_ms, checked_at, check_id)
    SELECT service_name, status, latency_ms, newest_at, newest_id
      FROM ({NEW_BY_SERVICE}) AS f
     ORDER BY service_name
        ON CONFLICT (service_name) DO NOTHING
"""  # noqa: S608 - assembled from this revision's constants
LOCK_STATES = f"""
    SELECT FROM {TABLE_SCHEMA}.service_health_state AS s
     WHERE s.service_name IN (SELECT service_name FROM new_rows)
     ORDER BY s.service_name
       FOR UPDATE
"""  # noqa: S608 - assembled from this revision's constants
# One statement both moves each state row to its service's newest new check and says whether
# a check landed before existing ones: a state newer than the first new check of its service,
# and not one of this statement's (created just above). Its sub-statements share one snapshot,
# so the test reads the states as they were before the move; the changes below read only the
# checks and the changes.
MOVE_STATES = f"""
    WITH f AS MATERIALIZED ({NEW_BY_SERVICE}),
    moved AS (
        UPDATE {TABLE_SCHEMA}.service_health_state AS s
           SET status = f.status, latency_ms = f.latency_ms,
               checked_at = f.newest_at, check_id = f.newest_id
          FROM f
         WHERE s.service_name = f.service_name
           AND (f.newest_at, f.newest_id) > (s.checked_at, s.check_id)
    )
    SELECT EXISTS (
        SELECT FROM f
          JOIN {TABLE_SCHEMA}.service_health_state AS s ON s.service_name = f.service_name
         WHERE s.check_id <> f.newest_id
           AND (s.checked_at, s.check_id) > (f.first_at, f.first_id)
    )
"""  # noqa: S608 - assembled from this revision's constants
# Appends: each new check against the one before it, the first one against the service's last
# change (its status then).
APPEND_CHANGES = f"""
    {INSERT_CHANGES}
    SELECT service_name, created_at, id, from_status, status
      FROM (
        SELECT service_name, created_at, id, status,
               CASE WHEN first
                    THEN {STATUS_BEFORE.format(name="o.service_name", at="o.created_at", id="o.id")}
                    ELSE previous
               END AS from_status
          FROM (
            SELECT n.service_name, n.created_at, n.id, n.status,
                   lag(n.status) OVER w AS previous, lag(n.id) OVER w IS NULL AS first
              FROM new_rows AS n
            WINDOW w AS (PARTITION BY n.service_name ORDER BY n.created_at, n.id)
          ) AS o
      ) AS candidates
     WHERE from_status IS DISTINCT FROM status
"""  # noqa: S608 - assembled from this revision's constants
DELETE_SPANS = f"""
    DELETE FROM {TABLE_SCHEMA}.service_health_changes AS c
     USING ({SPANS}) AS span
     WHERE c.service_name = span.service_name
       AND (c.changed_at, c.check_id) >= (span.first_at, span.first_id)
       AND (span.next_at IS NULL
            OR (c.changed_at, c.check_id) <= (span.next_at, span.next_id))
"""  # noqa: S608 - assembled from this revision's constants
RECOMPUTE_SPANS = f"""
    {INSERT_CHANGES}
    SELECT service_name, created_at, id, from_status, status
      FROM (
        SELECT h.service_name, h.created_at, h.id, h.status,
               CASE WHEN lag(h.id) OVER w IS NULL THEN span.status_before
                    ELSE lag(h.status) OVER w
               END AS from_status
          FROM ({SPANS}) AS span
          JOIN LATERAL (
            SELECT h.service_name, h.created_at, h.id, h.status
              FROM {TABLE_SCHEMA}.service_health_checks AS h
             WHERE h.service_name = span.service_name AND h.created_at >= span.first_at
               AND (h.created_at, h.id) >= (span.first_at, span.first_id)
               AND (span.next_at IS NULL
                    OR (h.created_at <= span.next_at
                        AND (h.created_at, h.id) <= (span.next_at, span.next_id)))
          ) AS h ON true
        WINDOW w AS (PARTITION BY h.service_name ORDER BY h.created_at, h.id)
      ) AS candidates
     WHERE from_status IS DISTINCT FROM status
"""  # noqa: S608 - assembled from this revision's constants


def _track(run: str) -> str:
    """The trigger's body with each statement run as ``run`` says: ``static`` (planned once
    per connection and kept, as PL/pgSQL does) or ``dynamic`` (EXECUTE: planned each time)."""

    def statement(sql: str, into: str = "", *, discard: bool = False) -> str:
        if run == "dynamic":
            return f"EXECUTE $track${sql.strip()}$track${into};"
        # PL/pgSQL runs a SELECT whose rows it discards as PERFORM.
        return ("PERFORM" + sql.strip().removeprefix("SELECT") if discard else sql.strip()) + (
            f"{into};"
        )

    return f"""
        {statement(CREATE_STATES)}
        {statement(LOCK_STATES, discard=True)}
        {statement(MOVE_STATES, " INTO backfilled")}
        IF NOT backfilled THEN
            {statement(APPEND_CHANGES)}
        ELSE
            {statement(DELETE_SPANS)}
            {statement(RECOMPUTE_SPANS)}
        END IF;
"""


# As the rollup trigger does (b7e5d3c1a902): PL/pgSQL keeps the plan made on a connection's
# first insert, and a plan made for 200k rows (hash joins, sequential scans of the states and
# changes) cost 130 ms on every later single-row insert. Past this many rows the statements are
# planned afresh for their size; up to it the kept plans (index probes per service) serve.
REPLAN_ROWS = 10_000
TRACK_FUNCTION = f"""
CREATE FUNCTION {SCHEMA}.service_health_track() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $body$
DECLARE
    backfilled boolean;
BEGIN
    IF EXISTS (SELECT FROM new_rows OFFSET {REPLAN_ROWS}) THEN
{_track("dynamic")}    ELSE
{_track("static")}    END IF;
    RETURN NULL;
END
$body$
"""

# After service_health_checks_rollup (triggers fire in name order): every writer locks rollup
# rows, then state rows, each in name order.
CREATE_TRIGGER = f"""
CREATE TRIGGER service_health_checks_track AFTER INSERT ON {TABLE_SCHEMA}.service_health_checks
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
EXECUTE FUNCTION {SCHEMA}.service_health_track()
"""

FILL = f"""
INSERT INTO {TABLE_SCHEMA}.service_health_state
       (service_name, status, latency_ms, checked_at, check_id)
SELECT DISTINCT ON (service_name) service_name, status, latency_ms, created_at, id
  FROM {TABLE_SCHEMA}.service_health_checks
 ORDER BY service_name, created_at DESC, id DESC;
{INSERT_CHANGES}
SELECT service_name, created_at, id, previous, status
  FROM (
    SELECT service_name, created_at, id, status,
           lag(status) OVER (PARTITION BY service_name ORDER BY created_at, id) AS previous
      FROM {TABLE_SCHEMA}.service_health_checks
  ) AS checks
 WHERE previous IS DISTINCT FROM status;
"""  # noqa: S608 - assembled from this revision's constants

# RLS and grants as b7e5d3c1a902 gives the rollups; then every grant Supabase's default
# privileges (or anyone) added beyond the documented set goes, as d9f3b7a2c5e1 did for the
# tables that existed then.
PROTECT = f"""
DO $$
DECLARE
    target text := format('%I.%I', current_schema(), '{{table}}');
    admin_claim text := '(coalesce((SELECT auth.jwt()) -> ''app_metadata'' ->> ''role'', '''') '
                        '= ''admin'')';
BEGIN
    EXECUTE 'ALTER TABLE ' || target || ' ENABLE ROW LEVEL SECURITY';
    EXECUTE 'ALTER TABLE ' || target || ' FORCE ROW LEVEL SECURITY';
    EXECUTE 'REVOKE ALL ON ' || target || ' FROM PUBLIC';
    EXECUTE 'GRANT {POLICED_PRIVILEGES} ON ' || target || ' TO monitoring_admin';
    EXECUTE 'CREATE POLICY {{table}}_admin_all ON ' || target
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
            EXECUTE 'CREATE POLICY {{table}}_jwt_admin ON ' || target
                    || ' FOR ALL TO authenticated USING ' || admin_claim
                    || ' WITH CHECK ' || admin_claim;
        END IF;
    END IF;
END
$$
"""  # noqa: S608 - assembled from this revision's constants

# Whatever else anybody holds on the new tables (Supabase grants ALL to its API roles, and to
# postgres when supabase_admin migrates): only the documented privileges stay, for no one but
# the roles above. The trigger function fires without EXECUTE: nobody but its owner keeps it (a
# NULL ACL stands for the default one, EXECUTE for PUBLIC).
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
           AND c.relname IN ({", ".join(f"'{table}'" for table in TABLES)})
           AND a.grantee <> c.relowner AND a.grantee <> 0
           AND (a.privilege_type NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
                OR a.grantee::regrole::text NOT IN (
                    'monitoring_admin', 'service_role', 'authenticated'))
        UNION ALL
        SELECT 'REVOKE ALL ON FUNCTION ' || p.oid::regprocedure::text || ' FROM '
               || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
          FROM pg_proc AS p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
         WHERE p.oid = '{SCHEMA}.service_health_track()'::regprocedure
           AND a.grantee <> p.proowner
    LOOP
        EXECUTE revocation;
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
    op.execute(_in_table_schema(CREATE_TABLES))
    op.execute(_in_table_schema(TRACK_FUNCTION))
    # The trigger's lock (SHARE ROW EXCLUSIVE) holds inserts back until the fill commits with it:
    # no check can fall between the fill and the trigger.
    op.execute(_in_table_schema(CREATE_TRIGGER))
    op.execute(_in_table_schema(FILL))
    for table in TABLES:
        op.execute(PROTECT.format(table=table))
    op.execute(REVOKE_UNDOCUMENTED)


def downgrade() -> None:
    raise IrreversibleMigration(revision)
