"""Fixtures of the SDK's tests: the whole suite of real processes, once per session
(see sdk_support.py for what is started and how)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# The tests test this working tree's package, whatever copy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdk_support import Suite, _stage  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _staged_binaries_cleanup():
    yield
    folder = _stage.pop("dir", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def suite():
    """The whole suite, started once for the session."""
    root = Path(tempfile.mkdtemp(prefix="gleitzeit-sdk-"))
    s = Suite(root)
    try:
        s.init_key()
        s.start_hub()
        s.start_services()
        s.start_llm_sim()
        s.wait_registered(["qm-1", "dr-1", "ee-1", "py-1", "ollama-1"])
        yield s
    finally:
        s.stop()
        if os.environ.get("GLEITZEIT_KEEP_TEST_DIRS"):
            print("test processes logged into %s" % s.logs)
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder for a test's files."""
    return tmp_path
