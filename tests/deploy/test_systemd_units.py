"""The systemd units of deploy/systemd, checked without booting them.

`systemd-analyze verify` loads every unit as systemd would (unknown or misspelt settings,
bad values and missing executables are reported; any report fails the test), and
`systemd-analyze security --offline` scores each service's exposure. Both are skipped with a
message when `systemd-analyze` is not installed. The rest needs nothing: one unit per service
of services/, a user that is not root, the hardening settings, restart on failure, its env
file present in deploy/systemd/env/, and no key written into any env file.
"""

import configparser
import os
import re
import shutil
import subprocess

import pytest

from deploy_files import ROOT, gleitzeit_variables_in_sources, service_binaries

UNITS = ROOT / "deploy" / "systemd"
ENV = UNITS / "env"
# The worst exposure `systemd-analyze security` may give a unit (0 best, 10 worst).
MAX_EXPOSURE = 2.0


def unit(binary: str) -> dict[str, dict[str, list[str]]]:
    """The unit of `binary`: section → setting → values (settings may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in (UNITS / f"{binary}.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed: the units were not verified by systemd")
    return path


def staged_units(tmp_path) -> list[str]:
    """The units copied to `tmp_path` with ExecStart pointing at stand-in executables there
    (verify insists that the binary exists; /usr/local/bin holds none here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for binary in service_binaries():
        stub = bin_dir / binary
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    names = []
    for path in sorted(UNITS.glob("*.service")) + sorted(UNITS.glob("*.target")):
        text = path.read_text().replace("/usr/local/bin/", f"{bin_dir}/")
        (tmp_path / path.name).write_text(text)
        names.append(path.name)
    return names


def test_systemd_analyze_verify_reports_nothing(tmp_path):
    tool = analyze()
    names = staged_units(tmp_path)
    run = subprocess.run(
        [tool, "verify", "--man=no", *[f"./{n}" for n in names]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SYSTEMD_LOG_COLOR="0"),
    )
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr + run.stdout


@pytest.mark.parametrize("binary", service_binaries())
def test_systemd_analyze_security_rates_each_unit_well_exposed(tmp_path, binary):
    tool = analyze()
    staged_units(tmp_path)
    run = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", f"./{binary}.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", run.stdout + run.stderr)
    if found is None:
        pytest.skip(f"this systemd-analyze has no `security --offline`: {run.stderr.strip()[:200]}")
    assert float(found.group(1)) <= MAX_EXPOSURE, run.stdout


def test_one_unit_per_service():
    units = sorted(p.stem for p in UNITS.glob("*.service"))
    assert units == service_binaries()


@pytest.mark.parametrize("binary", service_binaries())
def test_each_unit_runs_unprivileged_hardened_and_restarts_on_failure(binary):
    u = unit(binary)
    service = u["Service"]
    assert service["User"][0] not in ("", "root", "0")
    assert service["ExecStart"] == [f"/usr/local/bin/{binary}"]
    assert service["Restart"] == ["on-failure"]
    for setting, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(setting) == [value], f"{setting}={value}"
    assert f"/etc/gleitzeit/{binary}.env" in service["EnvironmentFile"]
    assert (ENV / f"{binary}.env").exists()
    assert u["Install"]["WantedBy"] == ["gleitzeit.target"]


def env_files() -> dict[str, dict[str, str]]:
    """The settings (uncommented and commented-out) of every env file."""
    files = {}
    for path in sorted(ENV.glob("*.env")):
        parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
        parser.optionxform = str
        body = "\n".join(line.lstrip("#") for line in path.read_text().splitlines() if "=" in line)
        parser.read_string("[env]\n" + body)
        files[path.name] = dict(parser["env"])
    return files


def test_env_files_name_key_files_and_hold_no_key():
    for name, settings in env_files().items():
        text = (ENV / name).read_text()
        assert not re.search(r"gzt_[0-9a-f]{12}_[0-9a-f]{16,}", text), f"{name} holds a key"
        assert "GLEITZEIT_API_KEY" not in settings, f"{name}: a key file, not the key"
    for binary in service_binaries():
        if binary != "central-hub":
            assert env_files()[f"{binary}.env"]["GLEITZEIT_API_KEY_FILE"] == f"/etc/gleitzeit/keys/{binary}.key"
    common = env_files()["common.env"]
    assert common["GLEITZEIT_HUB_URL"].count("https://") >= 2, "a list of hubs, over TLS"
    assert "GLEITZEIT_TLS_CA" in common


def test_every_gleitzeit_variable_is_one_the_binaries_read():
    known = gleitzeit_variables_in_sources()
    text = "".join(p.read_text() for p in list(ENV.glob("*.env")) + list(UNITS.glob("*.service")))
    used = set(re.findall(r"GLEITZEIT_[A-Z0-9_]+", text))
    assert used and used <= known, f"unknown: {sorted(used - known)}"
