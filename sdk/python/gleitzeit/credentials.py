"""Where the API key and the hub URL come from.

The key is looked up in the same order as the Rust services and ``gz`` do
(``crates/runtime/src/credentials.rs``):

1. an explicit ``api_key`` argument;
2. ``GLEITZEIT_API_KEY``;
3. the file named by ``GLEITZEIT_API_KEY_FILE``;
4. the saved login, ``credentials.json`` in ``$GLEITZEIT_CONFIG_DIR``, else
   ``$XDG_CONFIG_HOME/gleitzeit``, else ``~/.config/gleitzeit``;
5. the local suite's key, ``local.key`` in the data dir (``$GLEITZEIT_DATA_DIR``, else
   ``$XDG_DATA_HOME/gleitzeit``, else ``~/.local/share/gleitzeit``).

The hub URL is the explicit one, else ``GLEITZEIT_HUB_URL``, else ``http://127.0.0.1:8000``;
several hubs of one mesh are given comma-separated (or as a Python list).

Keys are secrets: nothing here logs or prints them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

__all__ = [
    "DEFAULT_HUB_URL",
    "config_dir",
    "data_dir",
    "login_file",
    "local_key",
    "read_key_file",
    "resolve_api_key",
    "resolve_hub_urls",
]

#: The hub a client reaches when nothing else is configured.
DEFAULT_HUB_URL = "http://127.0.0.1:8000"

API_KEY_ENV = "GLEITZEIT_API_KEY"
API_KEY_FILE_ENV = "GLEITZEIT_API_KEY_FILE"
HUB_URL_ENV = "GLEITZEIT_HUB_URL"
LOCAL_KEY_FILE = "local.key"


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def config_dir() -> Path:
    """The folder of the saved login."""
    explicit = _env("GLEITZEIT_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    xdg = _env("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "gleitzeit"
    home = _env("HOME")
    if home:
        return Path(home) / ".config" / "gleitzeit"
    return Path(tempfile.gettempdir()) / "gleitzeit-config"


def data_dir() -> Path:
    """The data dir of the local suite (where ``local.key`` lives)."""
    explicit = _env("GLEITZEIT_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = _env("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "gleitzeit"
    home = _env("HOME")
    if home:
        return Path(home) / ".local" / "share" / "gleitzeit"
    return Path(tempfile.gettempdir()) / "gleitzeit"


def login_file() -> Path:
    """The saved login's file (``credentials.json``)."""
    return config_dir() / "credentials.json"


def read_key_file(path: Union[str, "os.PathLike[str]"]) -> Optional[str]:
    """The key in a file (surrounding white space ignored), if the file holds one."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def saved_login_key() -> Optional[str]:
    """The key of the saved login, if there is one."""
    try:
        doc = json.loads(login_file().read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    key = doc.get("api_key") if isinstance(doc, dict) else None
    return key if isinstance(key, str) and key else None


def local_key(folder: Optional[Union[str, "os.PathLike[str]"]] = None) -> Optional[str]:
    """The local suite's key in ``folder`` (default: :func:`data_dir`)."""
    base = Path(folder) if folder is not None else data_dir()
    return read_key_file(base / LOCAL_KEY_FILE)


def resolve_api_key_with_source(
    api_key: Optional[str] = None,
    data_dir_override: Optional[Union[str, "os.PathLike[str]"]] = None,
) -> Tuple[Optional[str], Optional[str]]:
    """The key to present and a word saying where it came from (never the key itself)."""
    if api_key:
        return api_key, "argument"
    key = _env(API_KEY_ENV)
    if key:
        return key, API_KEY_ENV
    key_file = _env(API_KEY_FILE_ENV)
    if key_file:
        key = read_key_file(key_file)
        if key:
            return key, API_KEY_FILE_ENV
    key = saved_login_key()
    if key:
        return key, "saved login"
    key = local_key(data_dir_override)
    if key:
        return key, "local suite key"
    return None, None


def resolve_api_key(
    api_key: Optional[str] = None,
    data_dir_override: Optional[Union[str, "os.PathLike[str]"]] = None,
) -> Optional[str]:
    """The key to present (see the module doc for the order), or None when there is none."""
    return resolve_api_key_with_source(api_key, data_dir_override)[0]


def resolve_hub_urls(hub_url: Union[None, str, Iterable[str]] = None) -> List[str]:
    """The hubs to try, in order: explicit (a comma-separated string or a list), else
    ``GLEITZEIT_HUB_URL``, else ``http://127.0.0.1:8000``."""
    if hub_url is None:
        hub_url = _env(HUB_URL_ENV) or DEFAULT_HUB_URL
    if isinstance(hub_url, str):
        parts = hub_url.split(",")
    else:
        parts = []
        for item in hub_url:
            parts.extend(str(item).split(","))
    urls = [p.strip().rstrip("/") for p in parts if p.strip()]
    return urls or [DEFAULT_HUB_URL]
