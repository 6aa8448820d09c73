"""Fixtures: real servers on loopback and a working folder of its own for each test."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from playwright.sync_api import Browser, Page, sync_playwright
from postgres import PostgresServer, running
from servers import FeedServer, SmtpServer
from support import Site

# Property tests explore freely on a developer's machine; in CI they replay a fixed set of
# examples, so a run is red for a change, not for the luck of the draw, and slow shared
# machines trip no per-example deadline.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `backends` runs on each: its state (`site`, `state`) is a SQLite file,
    then a database of a real PostgreSQL server. `backends("sqlite")` on a test of such a
    module keeps it to SQLite: it is about the file itself."""
    marker = metafunc.definition.get_closest_marker("backends")
    if "backend" in metafunc.fixturenames and marker:
        chosen = marker.args or BACKENDS
        if chosen != ("sqlite",):
            metafunc.parametrize("backend", chosen)


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole run, started on first use."""
    with running() as server:
        yield server


@pytest.fixture
def state(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """Where a test's state lives: a new SQLite file, or a new, empty PostgreSQL database."""
    if backend == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        return server.database()
    return tmp_path / "state" / "digest.db"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that drives Chromium is a `browser` test, whichever file it is in, so a quick
    local loop can leave them out (`pytest -m "not browser and not slow"`)."""
    for item in items:
        if {"page", "browser"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def web() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: Path | str) -> Site:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    monkeypatch.setenv("DIGEST_SECRET", "test-secret")
    return Site(tmp_path, store=state if isinstance(state, str) else "")


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, driven by Playwright (no browser download of its own)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    # Nothing in a test may reach past loopback: remote images and fonts fail fast.
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])"),
                  lambda route: route.abort())
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder for screenshots and such, kept after the run for a person to look at."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
