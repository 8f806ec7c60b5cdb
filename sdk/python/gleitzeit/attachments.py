"""Files that travel with a workflow (``docs/workflows.md``, "Files travel with the workflow").

A task may name files its provider reads: a ``python/execute`` script (``file``), the text
an ``llm/*`` task appends to its prompt (``file_path``), its images (``image_path``,
``image_paths``). :func:`attach` reads each of them at submit, relative to the workflow's
folder, and puts the contents into the spec, so that providers never need this machine's
disk:

- ``attachments`` (workflow level): ``"sha256:<hex>"`` → ``{"size", "content"}`` (base64),
  each content once however many tasks name it;
- ``files`` (task level): the path as the parameters write it → that digest.

The rules are those of ``gz`` (``crates/cli/src/attach.rs``): a file travels only when it
lies inside the folder, lexically and with symlinks followed; a path outside is not read
(it goes as a path, for a provider that has it under its own allowed roots). A file that
cannot be read is GZ7014, one over 8 MiB (or files over 16 MiB per workflow) GZ7013, both
naming the task and the path, before anything is submitted.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import os
from typing import Any, Dict, List, Mapping, Optional

from .errors import GleitzeitError

__all__ = ["attach", "named_files", "MAX_FILE_BYTES", "MAX_TOTAL_BYTES"]

log = logging.getLogger("gleitzeit.attachments")

#: The largest file that travels with a workflow (8 MiB).
MAX_FILE_BYTES = 8 * 1024 * 1024
#: The most bytes of files one workflow carries, each distinct content counted once.
MAX_TOTAL_BYTES = 16 * 1024 * 1024

TOO_LARGE_HINT = (
    "Files that tasks name travel with the workflow: at most 8 MiB each and 16 MiB per "
    "workflow (docs/workflows.md). Make the file smaller, split the workflow, or let the "
    "providers read it themselves (a path outside the workflow's folder, under their allowed roots)."
)
UNREADABLE_HINT = (
    "Paths are relative to the workflow file's folder: check that the file the message names "
    "exists there, is a regular file and is readable."
)


def _is_literal(path: Any) -> bool:
    return isinstance(path, str) and path != "" and "${" not in path and "{{" not in path


def named_files(method: str, params: Mapping[str, Any]) -> List[str]:
    """The literal paths a task's parameters name as files its provider reads."""
    out: List[Any] = []
    if not isinstance(params, Mapping):
        return []
    if method == "python/execute":
        out.append(params.get("file"))
    elif isinstance(method, str) and method.startswith("llm/"):
        out.append(params.get("file_path"))
        out.append(params.get("image_path"))
        paths = params.get("image_paths")
        if isinstance(paths, list):
            out.extend(paths)
    return [p for p in out if _is_literal(p)]


def digest(data: bytes) -> str:
    """``sha256:<64 lowercase hex digits>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _inside(folder: str, path: str) -> Optional[str]:
    """The file ``path`` names under ``folder``, or None when it lies outside (lexically, or
    once symlinks are followed)."""
    joined = os.path.join(folder, path)  # an absolute path replaces the folder
    lexical = os.path.normpath(os.path.abspath(joined))
    root = os.path.normpath(os.path.abspath(folder))
    real_root = os.path.realpath(root)

    def under(p: str, r: str) -> bool:
        return p == r or p.startswith(r.rstrip(os.sep) + os.sep)

    if not (under(lexical, root) or under(lexical, real_root)):
        return None
    if not os.path.lexists(joined):
        return lexical  # missing: the read reports it
    real = os.path.realpath(joined)
    return real if under(real, real_root) else None


def _fail(code: str, task_id: str, path: str, message: str, hint: str) -> GleitzeitError:
    return GleitzeitError(
        code,
        "task `%s`: %s" % (task_id, message),
        hint=hint,
        details={"task_id": task_id, "path": path},
    )


def attach(spec: Mapping[str, Any], base_dir: str) -> Dict[str, Any]:
    """A copy of ``spec`` (the JSON form, ``Workflow.to_dict()``) carrying the files its tasks
    name, read relative to ``base_dir``."""
    out: Dict[str, Any] = copy.deepcopy(dict(spec))
    attachments: Dict[str, Any] = dict(out.get("attachments") or {})
    total = sum(int(a.get("size", 0)) for a in attachments.values() if isinstance(a, Mapping))
    for position, task in enumerate(out.get("tasks") or []):
        if not isinstance(task, dict):
            continue
        params = task.get("parameters", task.get("params")) or {}
        task_id = str(task.get("id") or "task-%d" % (position + 1))
        files: Dict[str, Any] = dict(task.get("files") or {})
        for path in named_files(task.get("method", ""), params):
            if path in files:
                continue
            full = _inside(base_dir, path)
            if full is None:
                log.warning(
                    "task `%s`: %s is outside the workflow's folder, so it does not travel with "
                    "the workflow; a provider must have it under its own allowed roots",
                    task_id,
                    path,
                )
                continue
            try:
                if not os.path.isfile(full):
                    raise OSError("not a regular file" if os.path.exists(full) else "No such file or directory")
                size = os.path.getsize(full)
                if size > MAX_FILE_BYTES:
                    raise _fail(
                        "GZ7013",
                        task_id,
                        path,
                        "%s cannot travel with the workflow: it has %d bytes, more than the %d bytes "
                        "(8 MiB) a file may have" % (path, size, MAX_FILE_BYTES),
                        TOO_LARGE_HINT,
                    )
                with open(full, "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                raise _fail(
                    "GZ7014",
                    task_id,
                    path,
                    "cannot read %s: %s" % (path, exc.strerror or exc),
                    UNREADABLE_HINT,
                ) from None
            key = digest(data)
            if key not in attachments:
                total += len(data)
                if total > MAX_TOTAL_BYTES:
                    raise _fail(
                        "GZ7013",
                        task_id,
                        path,
                        "%s cannot travel with the workflow: with it the workflow's files take %d "
                        "bytes, more than the %d bytes (16 MiB) a workflow may carry"
                        % (path, total, MAX_TOTAL_BYTES),
                        TOO_LARGE_HINT,
                    )
                attachments[key] = {"size": len(data), "content": base64.b64encode(data).decode("ascii")}
            files[path] = key
        if files:
            task["files"] = files
    if attachments:
        out["attachments"] = attachments
    return out
