"""Who may touch what kind of object of ours, as the README's access-control table says."""

from __future__ import annotations

from cim_monitoring import ObjectKind

POLICED = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
NOTHING: frozenset[str] = frozenset()
# What monitoring_admin (and on Supabase service_role and authenticated) holds, memberships
# included; every other role but the owner, and PUBLIC, holds nothing.
ADMIN_SIDE_PRIVILEGES = {
    ObjectKind.SCHEMA: frozenset({"USAGE"}),
    ObjectKind.TABLE: POLICED,
    ObjectKind.PARTITION: POLICED,
    ObjectKind.FUNCTION: frozenset({"EXECUTE"}),
    ObjectKind.TRIGGER_FUNCTION: NOTHING,
    # The partition upkeep: monitoring_admin only.
    ObjectKind.DEFINER_FUNCTION: frozenset({"EXECUTE"}),
    ObjectKind.SEQUENCE: NOTHING,
    # monitoring_admin only (every command checks the revision); see VERSION_TABLE_READERS.
    ObjectKind.VERSION_TABLE: frozenset({"SELECT"}),
    ObjectKind.VIEW: NOTHING,
    ObjectKind.MATERIALIZED_VIEW: NOTHING,
    ObjectKind.FOREIGN_TABLE: NOTHING,
}
