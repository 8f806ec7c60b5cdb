"""Fixtures of the dashboard's browser tests: a real suite (hub and services from
$GLEITZEIT_BIN_DIR, default target/debug) with an admin, a VIEWER and a USER key, and
Debian's chromium driven by Playwright. Children are stopped by pid in a finalizer, even
when a test fails; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite import Suite, bin_dir  # noqa: E402

CHROMIUM = os.environ.get("GLEITZEIT_CHROMIUM", "/usr/bin/chromium")


def pytest_configure(config):
    missing = [b for b in ("gz", "central-hub", "queue-manager", "dependency-resolver", "execution-engine", "python-provider")
               if not (bin_dir() / b).exists()]
    if missing:
        raise pytest.UsageError(f"missing binaries in {bin_dir()}: {missing} (run `cargo build --bins` first)")


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="gz-browser-"))
    yield path
    if os.environ.get("GLEITZEIT_KEEP_TEST_DIR"):
        print(f"test files kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def suite(workdir, request):
    s = Suite(workdir / "suite")
    request.addfinalizer(s.stop)
    s.start()
    s.viewer_key = s.make_key("vera", "viewer")
    s.user_key = s.make_key("ulla", "user")
    return s


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(20000)
    pg.problems = []
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
    pg.on("console", lambda m: pg.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    yield pg
    context.close()
