"""Requests replayed the way PostgREST makes them.

PostgREST connects as ``authenticator`` and runs each request in one transaction: it switches
to the JWT's role and publishes the claims with ``set_config(..., true)``, applies that role's
own settings itself (``statement_timeout`` and the like: switching role does not apply them),
sets the search path to the exposed schema, runs the request's statement (a SELECT, INSERT,
UPDATE or DELETE on a table; ``SELECT fn(...)`` for ``/rpc/fn``), then commits, or rolls back
on error or when asked to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL

EXPOSED_SCHEMA = "public"
# Global settings first, then the database's own: the later one wins, as in PostgreSQL.
_ROLE_SETTINGS = """
    SELECT split_part(config, '=', 1), substr(config, strpos(config, '=') + 1)
      FROM pg_db_role_setting AS s, unnest(s.setconfig) AS config
     WHERE s.setrole = to_regrole(%(role)s)
       AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
     ORDER BY s.setdatabase
"""


@dataclass(frozen=True)
class Caller:
    """Who makes a request: the role PostgREST switches to, and the JWT's claims (None: the
    request carries no JWT claims at all)."""

    name: str
    role: str
    claims: Mapping[str, object] | None = None


@dataclass(frozen=True)
class Response:
    rows: list[tuple[Any, ...]]
    rowcount: int


class Api:
    """PostgREST in front of one database: like PostgREST, it keeps its connection (as
    ``authenticator``) from request to request, and reads each role's settings once."""

    def __init__(self, authenticator: URL) -> None:
        self._connection = psycopg.connect(
            make_conninfo(
                host=str(authenticator.query["host"]),
                dbname=authenticator.database,
                user=authenticator.username,
            ),
            autocommit=False,
        )
        self._settings: dict[str, list[tuple[str, str]]] = {}

    def close(self) -> None:
        self._connection.close()

    def request(
        self,
        caller: Caller,
        sql: str,
        params: Mapping[str, object] | Sequence[object] | None = None,
        *,
        commit: bool = False,
    ) -> Response:
        """Run ``sql`` as ``caller``; a database error propagates as psycopg raises it."""
        connection = self._connection
        try:
            if caller.role not in self._settings:
                found = connection.execute(_ROLE_SETTINGS, {"role": caller.role}).fetchall()
                self._settings[caller.role] = [(name, value) for name, value in found]
            connection.execute(
                "SELECT set_config('role', %s, true), set_config('search_path', %s, true)",
                (caller.role, EXPOSED_SCHEMA),
            )
            if caller.claims is not None:
                connection.execute(
                    "SELECT set_config('request.jwt.claims', %s, true)",
                    (json.dumps(caller.claims),),
                )
            for name, value in self._settings[caller.role]:
                connection.execute("SELECT set_config(%s, %s, true)", (name, value))
            cursor = connection.execute(sql, params)
            response = Response(cursor.fetchall() if cursor.description else [], cursor.rowcount)
        except BaseException:
            connection.rollback()
            raise
        if commit:
            connection.commit()
        else:
            connection.rollback()
        return response
