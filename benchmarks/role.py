"""The production role: a non-superuser LOGIN role that is a member of ``monitoring_admin``.

Superusers bypass Row Level Security and may ``COPY FROM`` into the monitoring tables, so a
benchmark run as ``postgres`` never takes the path an application takes. Every benchmark times
the API, and its baselines, as this role; the superuser only migrates, builds data sets and
serves as the raw-COPY ceiling.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, make_url, text

from cim_monitoring import make_engine

ROLE = "cim_bench_app"
# A benchmark server's role, not a secret; servers with trust authentication ignore it.
PASSWORD = "cim-bench"

# Idempotent and safe when two benchmarks start at once: CREATE ROLE may still race, and the
# loser's duplicate_object is the winner's role. ALTER ROLE puts back attributes someone changed.
_ENSURE_ROLE = text(
    f"""
    DO $$
    BEGIN
        CREATE ROLE {ROLE} LOGIN;
    EXCEPTION WHEN duplicate_object THEN NULL;
    END
    $$;
    ALTER ROLE {ROLE} LOGIN NOSUPERUSER NOBYPASSRLS INHERIT PASSWORD '{PASSWORD}';
    GRANT monitoring_admin TO {ROLE};
    """
)
_RLS_APPLIES = text("SELECT current_user, row_security_active('service_health_checks')")


def app_url(database_url: str) -> str:
    """Make sure ``cim_bench_app`` exists as described above and return the URL of the same host
    and database for it. ``database_url`` is a superuser's, of a database migrated to head (the
    migration creates ``monitoring_admin``)."""
    admin = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with admin.begin() as connection:
            connection.execute(_ENSURE_ROLE)
    finally:
        admin.dispose()
    url = make_url(database_url).set(username=ROLE, password=PASSWORD)
    return url.render_as_string(hide_password=False)


def app_engine(database_url: str, **engine_kwargs: Any) -> Engine:
    """An engine for ``cim_bench_app`` on the database of ``database_url``; it refuses to be
    used if Row Level Security does not apply to it (then it would not measure production)."""
    engine = make_engine(app_url(database_url), **engine_kwargs)
    with engine.connect() as connection:
        user, rls = connection.execute(_RLS_APPLIES).one()
    if user != ROLE or not rls:
        engine.dispose()
        raise RuntimeError(f"{user} is not held to Row Level Security: not the production path")
    return engine
