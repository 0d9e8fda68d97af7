"""Settings and database-URL handling.

Every URL form people paste from Supabase, Heroku-style hosts or docker-compose is accepted and
normalised to SQLAlchemy's psycopg 3 dialect. Passwords never leave this module in clear text:
errors and log lines use :func:`redact_url`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from cim_monitoring.errors import ConfigurationError

DRIVER_NAME = "postgresql+psycopg"
_ACCEPTED_SCHEMES = frozenset(
    {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", "postgresql+psycopg3"}
)
# Supavisor/PgBouncer in transaction mode hand each transaction to a different backend, so
# server-side prepared statements break there; Supabase serves that mode on port 6543.
_TRANSACTION_POOLER_PORT = 6543
# user:password@ up to the LAST "@" (an unencoded "@" may sit inside the password), with or
# without a scheme in front; and libpq's password=... in a query string or key=value DSN.
_CREDENTIALS = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*://)?(?P<user>[^:@/]*)(?P<password>:.*)?@(?=[^@]*$)",
    re.IGNORECASE | re.DOTALL,
)
_PASSWORD_PARAMETER = re.compile(r"(?P<key>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)

MISSING_URL_HINT = (
    "no database configured: set DATABASE_URL, e.g. "
    "export DATABASE_URL=postgresql://user:password@localhost:5432/dbname"
)


class Settings(BaseSettings):
    """Runtime configuration, read from the environment (and a ``.env`` file if present)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: SecretStr | None = None
    """``DATABASE_URL``: where the monitoring tables live (the host application's database)."""

    application_name: str = "cim-monitoring"
    """``APPLICATION_NAME``: shown in ``pg_stat_activity`` for connections made here."""

    migration_lock_timeout: float = 60.0
    """``MIGRATION_LOCK_TIMEOUT``: seconds to wait for another process's running migration."""

    # Without the alias pydantic-settings would read the generic ``DATA_DIR`` instead.
    data_dir: Path = Field(Path(".cim-monitoring"), validation_alias="CIM_MONITORING_DATA_DIR")
    """``CIM_MONITORING_DATA_DIR``: where the embedded PostgreSQL keeps its data."""

    def sqlalchemy_url(self) -> URL:
        """The configured URL in psycopg 3 form; :class:`ConfigurationError` when there is none."""
        if self.database_url is None or not self.database_url.get_secret_value().strip():
            raise ConfigurationError(MISSING_URL_HINT)
        return normalize_url(self.database_url.get_secret_value())


def redact_url(raw: str | URL) -> str:
    """A URL safe to print: the password, if any, replaced by ``***``."""
    text = raw.render_as_string(hide_password=True) if isinstance(raw, URL) else raw.strip()
    text = _CREDENTIALS.sub(
        lambda m: f"{m['scheme'] or ''}{m['user']}{':***' if m['password'] else ''}@", text
    )
    return _PASSWORD_PARAMETER.sub(lambda m: f"{m['key']}***", text)


def normalize_url(raw: str | URL) -> URL:
    """Parse ``raw`` and return it with the ``postgresql+psycopg`` driver.

    Accepts ``postgres://``, ``postgresql://``, ``postgresql+psycopg://`` (and the psycopg2
    spelling, which is rewritten). Anything else raises :class:`ConfigurationError` naming the
    scheme, with the password redacted.
    """
    if isinstance(raw, URL):
        url = raw
    else:
        text = raw.strip()
        try:
            url = make_url(text)
        except (ArgumentError, ValueError):
            # The parser's own message quotes the whole URL, password included.
            raise ConfigurationError(
                f"DATABASE_URL is not a valid URL: {redact_url(text)} "
                "(expected postgresql://user:password@host:port/dbname)"
            ) from None
    if url.drivername not in _ACCEPTED_SCHEMES:
        raise ConfigurationError(
            f"DATABASE_URL has unsupported scheme {url.drivername!r} in {redact_url(url)}: "
            "use postgres://, postgresql:// or postgresql+psycopg://"
        )
    if url.host and "@" in url.host:
        # An unencoded "@" in the password: the rest of the password would pass for the host.
        raise ConfigurationError(
            f"DATABASE_URL has an unencoded '@' in its credentials: {redact_url(raw)} "
            "(percent-encode it as %40)"
        )
    if not url.database:
        raise ConfigurationError(f"DATABASE_URL names no database: {redact_url(url)}")
    return url.set(drivername=DRIVER_NAME)


def split_pooler_flag(url: URL) -> tuple[URL, bool]:
    """Strip the ``pgbouncer=true`` hint (Prisma's spelling, unknown to libpq) from ``url``.

    Returns the URL libpq can take and whether it points at a transaction-mode pooler, where
    server-side prepared statements must be off.
    """
    flagged = url.query.get("pgbouncer") == "true"
    return url.difference_update_query(["pgbouncer"]), (
        flagged or url.port == _TRANSACTION_POOLER_PORT
    )
