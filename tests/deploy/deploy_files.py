"""What the deployment-file tests (tests/deploy) share: the repository root, the services,
the environment variables the binaries read. Not a conftest.py: other test folders run in
the same pytest session have their own."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def service_binaries() -> list[str]:
    """Every service of the suite: one folder under services/ each."""
    return sorted(p.name for p in (ROOT / "services").iterdir() if (p / "Cargo.toml").exists())


def gleitzeit_variables_in_sources() -> set[str]:
    """Every GLEITZEIT_* name spelled in the Rust sources (crates/ and services/)."""
    names: set[str] = set()
    for folder in ("crates", "services"):
        for path in (ROOT / folder).rglob("*.rs"):
            names.update(re.findall(r"GLEITZEIT_[A-Z0-9_]+", path.read_text(errors="replace")))
    return names
