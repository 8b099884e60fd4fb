"""Fixtures for the OCPP tests: one Forecourt server per test module and database backend.

Every module runs twice, on SQLite (in a temporary data dir) and on PostgreSQL (a fresh database
on FORECOURT_TEST_POSTGRES_URL's server, default postgres://postgres@127.0.0.1:5432/postgres,
dropped afterwards). With CI=true PostgreSQL must be reachable; elsewhere its runs are skipped,
loudly, when it is not.
"""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.parse
import uuid
import warnings
from pathlib import Path

import pytest

from ocpp_kit import FORECOURT_BIN, Server

# Show every OCPP frame the chargers send and receive in the report of a failing test.
logging.getLogger("ocpp").setLevel(logging.INFO)

ADMIN_URL = os.environ.get("FORECOURT_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
_SKIPPED_LOUDLY: list[str] = []


def _psql(url: str, sql: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGCONNECT_TIMEOUT="5")
    return subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-c", sql],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def _postgres_problem() -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    try:
        res = _psql(ADMIN_URL, "SELECT 1", timeout=15)
    except FileNotFoundError:
        return "psql is not installed"
    except subprocess.TimeoutExpired:
        return f"no answer from {ADMIN_URL} in 15s"
    if res.returncode != 0:
        return f"{ADMIN_URL}: {res.stderr.strip()}"
    return None


def _with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class PostgresDb:
    def __init__(self):
        self.name = f"forecourt_ocpp_{uuid.uuid4().hex[:12]}"
        self.url = _with_database(ADMIN_URL, self.name)

    def create(self):
        res = _psql(ADMIN_URL, f'CREATE DATABASE "{self.name}"')
        assert res.returncode == 0, f"CREATE DATABASE {self.name}: {res.stderr}"

    def drop(self):
        res = _psql(ADMIN_URL, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        if res.returncode != 0:
            warnings.warn(f"could not drop {self.name}: {res.stderr}")


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    if not Path(FORECOURT_BIN).is_file():
        pytest.fail(f"FORECOURT_BIN {FORECOURT_BIN} does not exist; build the server first", pytrace=False)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    """A running server with the demo data, private to the test module (and backend)."""
    backend = request.param
    db = None
    if backend == "postgres":
        problem = _postgres_problem()
        if problem:
            msg = f"PostgreSQL unreachable, OCPP tests on PostgreSQL NOT RUN: {problem}"
            if IN_CI:
                pytest.fail(f"CI=true but {msg}", pytrace=False)
            _SKIPPED_LOUDLY.append(f"{request.module.__name__}: {msg}")
            warnings.warn(msg)
            pytest.skip(msg)
        db = PostgresDb()
        db.create()
    data_dir = tmp_path_factory.mktemp(f"{request.module.__name__}-{backend}") / "data"
    srv = Server(backend, data_dir, db.url if db else None)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if db:
            db.drop()
        for note in srv.notes:
            warnings.warn(f"[{backend}] {note}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        srv = getattr(item, "funcargs", {}).get("server")
        if isinstance(srv, Server):
            if srv.proc is not None and srv.proc.poll() is not None:
                report.sections.append(("forecourt server", f"the server process has EXITED with {srv.proc.returncode}"))
            report.sections.append((f"forecourt server log ({srv.backend}, last lines)", srv.log_tail()))


def pytest_terminal_summary(terminalreporter):
    if _SKIPPED_LOUDLY:
        terminalreporter.write_sep("!", "PostgreSQL runs SKIPPED", red=True, bold=True)
        for line in _SKIPPED_LOUDLY:
            terminalreporter.write_line(line, red=True)
