"""Citus readiness: every table and function of ours, from the catalogue, against what
docs/SCALING.md ("Past one machine: Citus") says of it.

A new table or function without an expectation fails, and so does a finding that changed: a
unique constraint that gains or loses ``service_name``, a new trigger, a policy with a subquery.
Update ``TABLES`` / ``FUNCTIONS`` and the document together.
"""

from __future__ import annotations

from catalog import ours
from citus import Expectation, Plan, function_findings, function_plan, table_findings
from sqlalchemy import Connection, text

from cim_monitoring import ObjectKind

NO_COLUMN = "no service_name column"

TABLES: dict[str, Expectation] = {
    "service_health_checks": Expectation(
        Plan.DISTRIBUTE,
        frozenset(
            {
                "primary key pk_service_health_checks does not include service_name",
                "identity column id",
                "row trigger service_health_checks_append_only, naming service_health_checks",
                "statement trigger service_health_checks_rollup with a transition table, "
                "naming service_health_daily, service_health_hourly",
                "statement trigger service_health_checks_track with a transition table, "
                "naming service_health_changes, service_health_checks, service_health_state",
                "statement trigger service_health_checks_track_totals with a transition table, "
                "naming service_health_hourly, service_health_totals",
            }
        ),
        "the bulk of the data; the key must become (service_name, ...) and the insert "
        "triggers must run on the shards or move into the application",
    ),
    "service_health_hourly": Expectation(
        Plan.DISTRIBUTE, frozenset(), "keyed by (service_name, hour) already"
    ),
    "service_health_daily": Expectation(
        Plan.DISTRIBUTE, frozenset(), "keyed by (service_name, day) already"
    ),
    "service_health_state": Expectation(
        Plan.DISTRIBUTE, frozenset(), "keyed by service_name already"
    ),
    "service_health_changes": Expectation(
        Plan.DISTRIBUTE, frozenset(), "keyed by (service_name, changed_at, check_id) already"
    ),
    "service_health_totals": Expectation(
        Plan.DISTRIBUTE, frozenset(), "keyed by (service_name, hour) already"
    ),
    "alert_events": Expectation(
        Plan.REFERENCE,
        frozenset({"primary key pk_alert_events does not include service_name"}),
        "alerts are found by id (prefix) across services and are few and rarely written: "
        "a reference table keeps the uuid key and the open-alert unique index as they are",
    ),
    "cim_monitoring_alembic_version": Expectation(
        Plan.COORDINATOR, frozenset({NO_COLUMN}), "written by migrations, which run there"
    ),
}

FUNCTIONS: dict[str, Expectation] = {
    "cim_monitoring.service_health_dense_histogram(integer[],integer[])": Expectation(
        Plan.EVERY_NODE, frozenset({"function"}), "pure arithmetic on arrays"
    ),
    "cim_monitoring.service_health_histogram_sum(integer[],integer[])": Expectation(
        Plan.EVERY_NODE, frozenset({"function"}), "pure arithmetic on arrays"
    ),
    "cim_monitoring.service_health_histogram_add(bigint[],bigint[])": Expectation(
        Plan.EVERY_NODE, frozenset({"function"}), "pure arithmetic on arrays"
    ),
    "cim_monitoring.service_health_track_totals()": Expectation(
        Plan.SHARDS,
        frozenset(
            {"trigger function", "names service_health_hourly", "names service_health_totals"}
        ),
        "running totals from the hourly rollups of the same services: co-located rows only",
    ),
    "cim_monitoring.service_health_checks_add_partitions(date,integer)": Expectation(
        Plan.COORDINATOR,
        frozenset({"SECURITY DEFINER", "function", "names service_health_checks"}),
        "creates and attaches day partitions: DDL, which Citus propagates from the coordinator",
    ),
    "cim_monitoring.service_health_checks_drop_partitions(timestamp with time zone)": Expectation(
        Plan.COORDINATOR,
        frozenset({"SECURITY DEFINER", "function", "names service_health_checks"}),
        "counts and drops expired day partitions: DDL on the coordinator",
    ),
    "cim_monitoring.service_health_checks_refuse_update()": Expectation(
        Plan.SHARDS,
        frozenset({"trigger function", "names service_health_checks"}),
        "a row trigger; names the table only in its message",
    ),
    "cim_monitoring.service_health_rollup()": Expectation(
        Plan.SHARDS,
        frozenset(
            {"trigger function", "names service_health_hourly", "names service_health_daily"}
        ),
        "upserts rollups of the same services: co-located rows only",
    ),
    "cim_monitoring.service_health_track()": Expectation(
        Plan.SHARDS,
        frozenset(
            {
                "trigger function",
                "names service_health_changes",
                "names service_health_checks",
                "names service_health_state",
            }
        ),
        "state and changes of the same services: co-located rows only",
    ),
}


def _tables(connection: Connection) -> list[str]:
    # Partitions are left out: a partition has its parent's columns, partitioned indexes and
    # row triggers, so the parent's findings stand for it.
    return [o.identity for o in ours(connection, ObjectKind.TABLE, ObjectKind.VERSION_TABLE)]


def test_every_table_has_an_expectation(connection: Connection) -> None:
    assert sorted(_tables(connection)) == sorted(TABLES)


def test_every_table_meets_its_expectation(connection: Connection) -> None:
    names = _tables(connection)
    found = {name: table_findings(connection, name, names) for name in names}
    assert found == {name: TABLES[name].findings for name in names}


def test_only_tables_with_the_column_are_distributed() -> None:
    for name, expected in TABLES.items():
        assert (expected.plan is Plan.DISTRIBUTE) <= (NO_COLUMN not in expected.findings), name


def test_every_function_meets_its_expectation(connection: Connection) -> None:
    names = _tables(connection)
    functions = ours(
        connection, ObjectKind.FUNCTION, ObjectKind.TRIGGER_FUNCTION, ObjectKind.DEFINER_FUNCTION
    )
    found = {f.identity: function_findings(connection, f.oid, names) for f in functions}
    assert {name: (function_plan(f), f) for name, f in found.items()} == {
        name: (expected.plan, expected.findings) for name, expected in FUNCTIONS.items()
    }


def test_the_findings_name_what_citus_refuses(connection: Connection) -> None:
    """A scratch table with one of each: the checks find them, and only them."""
    connection.execute(
        text(
            """
            CREATE TABLE citus_scratch_parent (k integer PRIMARY KEY);
            CREATE TABLE citus_scratch (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                service_name text NOT NULL REFERENCES service_health_state (service_name),
                k integer REFERENCES citus_scratch_parent (k),
                UNIQUE (service_name, k)
            );
            CREATE FUNCTION citus_scratch_touch() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN PERFORM FROM alert_events; RETURN NULL; END $$;
            CREATE TRIGGER citus_scratch_after AFTER INSERT ON citus_scratch
                REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
                EXECUTE FUNCTION citus_scratch_touch();
            CREATE POLICY citus_scratch_sub ON citus_scratch USING ((SELECT true));
            CREATE POLICY citus_scratch_plain ON citus_scratch USING (k > 0);
            """
        )
    )
    names = [*_tables(connection), "citus_scratch", "citus_scratch_parent"]
    assert table_findings(connection, "citus_scratch", names) == {
        "primary key citus_scratch_pkey does not include service_name",
        "foreign key citus_scratch_k_fkey to citus_scratch_parent does not pair service_name",
        "statement trigger citus_scratch_after with a transition table, naming alert_events",
        "identity column id",
        "policy citus_scratch_sub has a subquery",
    }
    assert table_findings(connection, "citus_scratch_parent", names) == {NO_COLUMN}
