"""Migration lint: squawk checks every revision of the rendered upgrade SQL for hazards.

The rendering is one transaction (an upgrade commits all its revisions together) but it is
split into one file per revision, each wrapped in its own ``BEGIN;``/``COMMIT;``, because a
revision is the unit squawk must judge: squawk's timeout rules look for one ``SET lock_timeout``
per file, so linted whole, the first revision's would cover every later revision too. Alembic's
own ``CREATE TABLE`` of the version table (before the first revision) is not ours to lint.
Exceptions are data in the revision that needs them (``SQUAWK_EXCEPTIONS``: rule → reason),
written here as squawk ignore comments into that revision's file; ``.squawk.toml`` excludes no
rule.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic_cli import ROOT, history_with_extra_revision, run_alembic

from cim_monitoring.migrations import render_sql, script_directory

SQUAWK_CONFIG = ROOT / ".squawk.toml"
RUNNING_UPGRADE = re.compile(r"^-- Running upgrade (?P<source>\S*) -> (?P<target>\S+)$", re.M)
TRAILING_COMMIT = re.compile(r"\s*COMMIT;\s*\Z")
# What a new revision starts with (alembic/script.py.mako), hazards aside.
TIMEOUTS = "SET LOCAL lock_timeout = '5s';\nSET LOCAL statement_timeout = '5s';\n"
# squawk's rule names look like this; an exception must name one.
RULE_NAME = re.compile(r"^[a-z]+(-[a-z]+)+$")


def _squawk() -> str:
    found = shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")
    if found is None:
        pytest.fail("squawk is not installed: pip install -e '.[dev]' (it ships in squawk-cli)")
    return found


def _exceptions(history: ScriptDirectory, revision: str) -> dict[str, str]:
    module = history.get_revision(revision).module
    exceptions: dict[str, str] = getattr(module, "SQUAWK_EXCEPTIONS", {})
    return exceptions


def _split_revisions(sql: str, history: ScriptDirectory) -> dict[str, str]:
    """Revision id → its own SQL as one ``BEGIN;`` ... ``COMMIT;`` file, with its exceptions."""
    markers = list(RUNNING_UPGRADE.finditer(sql))
    revisions = {}
    for marker, following in zip(markers, [*markers[1:], None], strict=True):
        body = sql[marker.start() : following.start() if following else len(sql)]
        # The one COMMIT; of the whole upgrade follows the last revision.
        body = TRAILING_COMMIT.sub("", body).rstrip()
        ignores = "".join(
            f"-- squawk-ignore-file {rule}\n" for rule in _exceptions(history, marker["target"])
        )
        revisions[marker["target"]] = f"{ignores}BEGIN;\n\n{body}\n\nCOMMIT;\n"
    return revisions


def _lint(files: dict[str, str], directory: Path) -> list[dict[str, Any]]:
    """squawk's violations (JSON reporter) for ``files`` (name → SQL), with our configuration."""
    paths = []
    for name, sql in files.items():
        path = directory / f"{name}.sql"
        path.write_text(sql, encoding="utf-8")
        paths.append(str(path))
    result = subprocess.run(
        [_squawk(), "--config", str(SQUAWK_CONFIG), "--reporter", "json", *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # 0: clean, 1: violations; anything else (a parse error, a bad config) is a broken lint.
    assert result.returncode in (0, 1), result.stderr
    violations: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    assert (result.returncode == 1) == bool(violations), result.stdout + result.stderr
    return violations


def _describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{Path(v['file']).name}:{v['line'] + 1}: {v['rule_name']}: {v['message']}"
        for v in violations
    )


def test_squawk_runs() -> None:
    result = subprocess.run(
        [_squawk(), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.startswith("squawk "), result.stdout


def test_every_revision_passes_squawk(tmp_path: Path) -> None:
    history = script_directory()
    revisions = _split_revisions(render_sql(), history)
    # The split lost no revision: one file per revision of the history.
    assert sorted(revisions) == sorted(script.revision for script in history.walk_revisions())
    violations = _lint(revisions, tmp_path)
    assert violations == [], _describe(violations)


def test_every_squawk_exception_names_a_rule_and_its_reason() -> None:
    history = script_directory()
    declared = {
        (script.revision, rule, reason)
        for script in history.walk_revisions()
        for rule, reason in _exceptions(history, script.revision).items()
    }
    assert declared, "no revision declares an exception: the lint would be vacuous here"
    for revision, rule, reason in declared:
        assert RULE_NAME.match(rule), f"{revision}: {rule!r} is not a squawk rule name"
        assert len(reason.strip()) > 20, f"{revision}: exception {rule} gives no reason"


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        pytest.param(
            TIMEOUTS + "CREATE INDEX ix_service_health_checks_status "
            "ON service_health_checks (status);",
            "require-concurrent-index-creation",
            id="index-without-concurrently",
        ),
        pytest.param(
            TIMEOUTS + "ALTER TABLE service_health_checks ADD COLUMN region text NOT NULL;",
            "adding-required-field",
            id="add-not-null-column",
        ),
        pytest.param(
            TIMEOUTS + "ALTER TABLE alert_events ALTER COLUMN acknowledged_by SET NOT NULL;",
            "adding-not-nullable-field",
            id="set-not-null",
        ),
        pytest.param(
            TIMEOUTS + "ALTER TABLE alert_events ADD CONSTRAINT ck_alert_events_message_short "
            "CHECK (char_length(message) < 10000);",
            "constraint-missing-not-valid",
            id="check-without-not-valid",
        ),
        pytest.param(
            TIMEOUTS + "ALTER TABLE service_health_checks ALTER COLUMN latency_ms TYPE bigint;",
            "changing-column-type",
            id="column-type-rewrite",
        ),
        pytest.param(
            "SET LOCAL statement_timeout = '5s';\n"
            "ALTER TABLE alert_events ENABLE ROW LEVEL SECURITY;",
            "require-lock-timeout",
            id="no-lock-timeout",
        ),
        pytest.param(
            "SET LOCAL lock_timeout = '5s';\nALTER TABLE alert_events FORCE ROW LEVEL SECURITY;",
            "require-statement-timeout",
            id="no-statement-timeout",
        ),
    ],
)
def test_squawk_reports_a_locking_hazard(tmp_path: Path, sql: str, rule: str) -> None:
    """The lint can fail: each hazard is reported with the configuration the history passes."""
    violations = _lint({"hazard": f"BEGIN;\n\n{sql}\n\nCOMMIT;\n"}, tmp_path)
    assert rule in {v["rule_name"] for v in violations}, _describe(violations)


def test_squawk_judges_a_new_revision_on_its_own(tmp_path: Path) -> None:
    """An index on a table an older revision made, without timeouts, is caught.

    Linted as one file, the missing timeouts would pass: the first revision sets lock_timeout.
    """
    ini = history_with_extra_revision(
        tmp_path,
        revision="c0ffee000001",
        message="a hazardous revision on top of the real history",
        upgrade=[
            'op.create_index("ix_service_health_checks_status", "service_health_checks", '
            '["status"])'
        ],
    )
    result = run_alembic("-c", str(ini), "upgrade", "head", "--sql", timeout=60)
    assert result.returncode == 0, result.stderr
    history = ScriptDirectory.from_config(Config(str(ini)))
    revisions = _split_revisions(result.stdout, history)
    assert set(revisions) >= {*script_directory().get_heads(), "c0ffee000001"}
    out = tmp_path / "lint"
    out.mkdir()
    violations = _lint(revisions, out)
    by_file = {(Path(v["file"]).stem, v["rule_name"]) for v in violations}
    assert by_file == {
        ("c0ffee000001", "require-concurrent-index-creation"),
        ("c0ffee000001", "require-lock-timeout"),
        ("c0ffee000001", "require-statement-timeout"),
    }, _describe(violations)
