"""Key and hub URL resolution (same order as the Rust side), and error objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gleitzeit import GleitzeitError
from gleitzeit.credentials import resolve_api_key, resolve_api_key_with_source, resolve_hub_urls


@pytest.fixture
def clean_env(monkeypatch, tmp_path: Path):
    for name in (
        "GLEITZEIT_API_KEY",
        "GLEITZEIT_API_KEY_FILE",
        "GLEITZEIT_HUB_URL",
        "GLEITZEIT_CONFIG_DIR",
        "GLEITZEIT_DATA_DIR",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_keys_are_looked_up_in_order(clean_env, tmp_path: Path):
    home = tmp_path / "home"
    assert resolve_api_key() is None
    # 5. local.key in the data dir (~/.local/share/gleitzeit)
    data = home / ".local" / "share" / "gleitzeit"
    data.mkdir(parents=True)
    (data / "local.key").write_text("  local-key\n")
    assert resolve_api_key_with_source() == ("local-key", "local suite key")
    clean_env.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    assert resolve_api_key() is None
    (tmp_path / "xdg-data" / "gleitzeit").mkdir(parents=True)
    (tmp_path / "xdg-data" / "gleitzeit" / "local.key").write_text("xdg-local")
    assert resolve_api_key() == "xdg-local"
    clean_env.setenv("GLEITZEIT_DATA_DIR", str(tmp_path / "dd"))
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / "local.key").write_text("dd-local")
    assert resolve_api_key() == "dd-local"
    assert resolve_api_key(data_dir_override=data) == "local-key"
    # 4. the saved login
    config = home / ".config" / "gleitzeit"
    config.mkdir(parents=True)
    (config / "credentials.json").write_text(json.dumps({"api_key": "saved-key", "hub_url": "http://x"}))
    assert resolve_api_key_with_source() == ("saved-key", "saved login")
    clean_env.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    assert resolve_api_key() == "dd-local"
    clean_env.setenv("GLEITZEIT_CONFIG_DIR", str(config))
    assert resolve_api_key() == "saved-key"
    # 3. GLEITZEIT_API_KEY_FILE (a missing or empty file is skipped)
    clean_env.setenv("GLEITZEIT_API_KEY_FILE", str(tmp_path / "missing"))
    assert resolve_api_key() == "saved-key"
    (tmp_path / "key.txt").write_text("file-key\n")
    clean_env.setenv("GLEITZEIT_API_KEY_FILE", str(tmp_path / "key.txt"))
    assert resolve_api_key_with_source() == ("file-key", "GLEITZEIT_API_KEY_FILE")
    # 2. GLEITZEIT_API_KEY
    clean_env.setenv("GLEITZEIT_API_KEY", "env-key")
    assert resolve_api_key_with_source() == ("env-key", "GLEITZEIT_API_KEY")
    # 1. the argument
    assert resolve_api_key("arg-key") == "arg-key"


def test_hub_urls(clean_env):
    assert resolve_hub_urls() == ["http://127.0.0.1:8000"]
    clean_env.setenv("GLEITZEIT_HUB_URL", "http://a:1, http://b:2/")
    assert resolve_hub_urls() == ["http://a:1", "http://b:2"]
    assert resolve_hub_urls("http://c:3") == ["http://c:3"]
    assert resolve_hub_urls(["http://d:4", "http://e:5,http://f:6"]) == ["http://d:4", "http://e:5", "http://f:6"]


def test_errors_read_like_the_wire():
    err = GleitzeitError.from_wire(
        {"code": "GZ1020", "message": "no route", "hint": "start one", "retryable": True, "details": {"x": 1}}
    )
    assert str(err) == "GZ1020: no route (hint: start one)"
    assert err.retryable and err.details == {"x": 1}
    assert err.to_wire() == {"code": "GZ1020", "message": "no route", "hint": "start one", "retryable": True, "details": {"x": 1}}
    assert str(GleitzeitError("GZ3020", "gone")) == "GZ3020: gone"
    assert GleitzeitError.from_wire("junk").code == "GZ8001"
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert again.code == "GZ1020" and again.hint == "start one"
