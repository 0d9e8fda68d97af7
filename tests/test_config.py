"""Settings and URL handling: every accepted form becomes psycopg 3, and no password leaks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url

from cim_monitoring import ConfigurationError, Settings, make_engine, normalize_url, redact_url
from cim_monitoring.config import MISSING_URL_HINT, split_pooler_flag

if TYPE_CHECKING:
    from conftest import PostgresServer

SECRET = "Sup3r-S3cret"
POOLER_URL = (
    "postgresql://postgres.abcdefghijklmnop:p%40ss@aws-0-eu-central-1.pooler.supabase.com"
    ":6543/postgres"
)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DATABASE_URL and no .env file unless a test sets one."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    "scheme", ["postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"]
)
def test_schemes_normalise_to_psycopg3(scheme: str) -> None:
    url = normalize_url(f"  {scheme}://app:{SECRET}@db.example.com:5433/cim?sslmode=require\n")
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app",
        SECRET,
        "db.example.com",
        5433,
        "cim",
    )
    assert url.query == {"sslmode": "require"}
    assert normalize_url(url) == url


def test_supabase_pooler_url() -> None:
    url = normalize_url(POOLER_URL)
    assert url.username == "postgres.abcdefghijklmnop"
    assert url.password == "p@ss"
    assert (url.host, url.port, url.database) == (
        "aws-0-eu-central-1.pooler.supabase.com",
        6543,
        "postgres",
    )
    assert split_pooler_flag(url) == (url, True)
    assert "p@ss" not in redact_url(url)
    assert "p%40ss" not in redact_url(url)


@pytest.mark.parametrize(
    ("raw", "transaction_pooler"),
    [
        ("postgresql://u@h:5432/db", False),
        ("postgresql://u@h/db", False),
        ("postgresql://u@h:6543/db", True),
        ("postgresql://u@h:5432/db?pgbouncer=true", True),
        ("postgresql://u@h:5432/db?pgbouncer=false&sslmode=require", False),
    ],
)
def test_split_pooler_flag(raw: str, transaction_pooler: bool) -> None:
    url, flagged = split_pooler_flag(normalize_url(raw))
    assert flagged is transaction_pooler
    # libpq rejects unknown URI parameters, so the hint never reaches it.
    assert "pgbouncer" not in url.query
    assert url.query == ({"sslmode": "require"} if "sslmode" in raw else {})


def _connect_params(url: str | URL) -> dict[str, Any]:
    """The keyword arguments make_engine's engine would hand psycopg.connect()."""
    engine = make_engine(url)
    captured: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def capture(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        captured.update(cparams)
        raise _Captured

    with pytest.raises(_Captured):
        engine.connect()
    engine.dispose()
    return captured


class _Captured(Exception):
    pass


def test_transaction_pooler_port_disables_prepared_statements() -> None:
    params = _connect_params(POOLER_URL)
    assert params["prepare_threshold"] is None
    assert params["user"] == "postgres.abcdefghijklmnop"
    assert params["password"] == "p@ss"
    assert params["application_name"] == "cim-monitoring"
    assert "prepare_threshold" not in _connect_params("postgresql://u@h:5432/db")


def _prepared_statements_after_repeats(url: URL) -> tuple[object, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            for i in range(10):
                connection.execute(text("SELECT CAST(:i AS int) + 1"), {"i": i})
            prepared = connection.execute(
                text("SELECT count(*) FROM pg_prepared_statements")
            ).scalar_one()
            driver_connection = connection.connection.driver_connection
            threshold = getattr(driver_connection, "prepare_threshold", "missing")
        return threshold, prepared
    finally:
        engine.dispose()


def test_pgbouncer_flag_connects_without_server_side_prepares(pg_server: PostgresServer) -> None:
    # Baseline: psycopg prepares a statement on the server after it has run five times.
    default_threshold, prepared = _prepared_statements_after_repeats(pg_server.admin_url)
    assert default_threshold == 5
    assert prepared > 0
    pooled = pg_server.admin_url.update_query_dict({"pgbouncer": "true"})
    threshold, prepared = _prepared_statements_after_repeats(pooled)
    assert threshold is None
    assert prepared == 0


@pytest.mark.parametrize(
    "raw",
    [
        f"mysql://app:{SECRET}@db/cim",
        f"mssql+pyodbc://app:{SECRET}@dsn/cim",
        f"postgresql+asyncpg://app:{SECRET}@db/cim",
        f"postgresql://app:{SECRET}@db.example.com:5432",
        f"postgresql://app:{SECRET}@db.example.com:5432/",
        f"postgresql://app:{SECRET}@db.example.com:notaport/cim",
        f"app:{SECRET}@db.example.com/cim",
        f"postgresql:/app:{SECRET}@db.example.com/cim",
        f"host=db.example.com user=app password={SECRET} dbname=cim",
        f"host=db.example.com password='{SECRET} x' dbname=cim",
        f"postgresql://app:{SECRET[:4]}@{SECRET[4:]}@db.example.com/cim",
        "not a url at all",
        "",
    ],
)
def test_bad_urls_raise_without_the_password(raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        normalize_url(raw)
    message = str(caught.value)
    assert "DATABASE_URL" in message
    for fragment in (SECRET, SECRET[:4], SECRET[4:]):
        assert fragment not in message
    # The parser's own exception (which quotes the URL) is not chained for a traceback to print.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"postgresql://app:{SECRET}@db/cim", "postgresql://app:***@db/cim"),
        ("postgresql://app@db/cim", "postgresql://app@db/cim"),
        (
            f"postgresql://app@db/cim?password={SECRET}&x=1",
            "postgresql://app@db/cim?password=***&x=1",
        ),
        (
            make_url(f"postgresql+psycopg://app:{SECRET}@db:5432/cim"),
            "postgresql+psycopg://app:***@db:5432/cim",
        ),
    ],
)
def test_redact_url(raw: str | URL, expected: str) -> None:
    assert redact_url(raw) == expected


def test_database_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgres://app:{SECRET}@db.example.com:5433/cim")
    settings = Settings()
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
    url = settings.sqlalchemy_url()
    assert url.render_as_string(hide_password=False) == (
        f"postgresql+psycopg://app:{SECRET}@db.example.com:5433/cim"
    )
    engine = make_engine()
    assert engine.url == url
    engine.dispose()


def test_database_url_from_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://app@db.example.com/from_dotenv\n")
    assert Settings().sqlalchemy_url().database == "from_dotenv"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_url_gives_the_hint(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is not None:
        monkeypatch.setenv("DATABASE_URL", value)
    with pytest.raises(ConfigurationError, match="set DATABASE_URL") as caught:
        Settings().sqlalchemy_url()
    assert str(caught.value) == MISSING_URL_HINT
    with pytest.raises(ConfigurationError, match="export DATABASE_URL=postgresql://"):
        make_engine()


def test_connecting_logs_no_password(
    pg_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The test servers trust local connections, so any password is accepted (and must not leak).
    url = pg_server.admin_url.set(password=SECRET)
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy defaults itself to WARN; an alembic.ini loaded earlier may pin sqlalchemy.engine.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
    unreachable = make_engine(f"postgresql://app:{SECRET}@127.0.0.1:1/cim")
    with pytest.raises(Exception, match=r"127\.0\.0\.1"):
        unreachable.connect()
    unreachable.dispose()

    assert any(r.name == "cim_monitoring.db" for r in caplog.records)
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(vars(record))
