"""The roles of the Supabase cluster and what the README documents for each, and the callers
the Supabase tests make requests as."""

from __future__ import annotations

from documented import ADMIN_SIDE_PRIVILEGES, NOTHING
from postgrest_requests import Caller

from cim_monitoring import ObjectKind

# Every role of the fixture cluster but superusers, the built-in pg_* roles and the owner of
# our objects: True when it is on the admin side. postgres is by its membership of
# service_role and authenticated, cim_app by its membership of monitoring_admin; authenticator
# does not inherit what it may switch to.
ROLES = {
    "anon": False,
    "authenticator": False,
    "authenticated": True,
    "service_role": True,
    "monitoring_admin": True,
    "cim_app": True,
    "postgres": True,
}
# The version table and the partition upkeep are for monitoring_admin and its members only,
# not the API roles.
VERSION_TABLE_READERS = {"monitoring_admin", "cim_app"}
ADMIN_ONLY = {ObjectKind.VERSION_TABLE, ObjectKind.DEFINER_FUNCTION}


def documented(kind: ObjectKind, role: str) -> frozenset[str]:
    if not ROLES[role] or (kind in ADMIN_ONLY and role not in VERSION_TABLE_READERS):
        return NOTHING
    return ADMIN_SIDE_PRIVILEGES[kind]


ADMIN_CLAIMS = {"sub": "u1", "role": "authenticated", "app_metadata": {"role": "admin"}}
ANON = Caller("anon", "anon", {"role": "anon"})
ADMIN = Caller("authenticated-admin-claim", "authenticated", ADMIN_CLAIMS)
SERVICE = Caller("service_role", "service_role", {"role": "service_role"})
# Signed-in users without the admin claim, tricks included: user_metadata is the user's own to
# write, so a "role" there means nothing.
NOT_ADMINS = [
    Caller(
        "authenticated-user-metadata-admin",
        "authenticated",
        {"sub": "u2", "role": "authenticated", "user_metadata": {"role": "admin"}},
    ),
    Caller(
        "authenticated-app-metadata-user",
        "authenticated",
        {"sub": "u3", "role": "authenticated", "app_metadata": {"role": "user"}},
    ),
    Caller(
        "authenticated-app-metadata-admin-string",
        "authenticated",
        {"sub": "u4", "role": "authenticated", "app_metadata": "admin"},
    ),
    Caller("authenticated-empty-claims", "authenticated", {}),
    Caller("authenticated-no-claims", "authenticated", None),
]
# anon with a forged admin claim gets no further: it has no privilege to begin with.
FORGED_ANON = Caller("anon-forged-admin-claim", "anon", ADMIN_CLAIMS)
CALLERS = [ANON, FORGED_ANON, ADMIN, *NOT_ADMINS, SERVICE]
# Who sees every row: BYPASSRLS, or the admin-claim policy.
READS_ALL = {ADMIN.name, SERVICE.name}
