"""Files that travel with a workflow: the SDK reads the files tasks name (a ``file:`` script,
images, a text file) at submit, so a workflow completes even when its folder is gone before
its tasks run; a file too large or unreadable is refused at submit with its code."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from sdk_support import run
from gleitzeit import GleitzeitCluster, GleitzeitError, Workflow
from gleitzeit.attachments import MAX_FILE_BYTES, attach


def cluster_of(suite) -> GleitzeitCluster:
    return GleitzeitCluster(hub_url=suite.hub_url, api_key=suite.key, auto_start=False)


def gated_flow(folder: Path, marker: Path) -> Path:
    """A workflow file whose script task waits for ``marker`` before it runs."""
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "double.py").write_text(
        "import os, time\n"
        "while not os.path.exists(context['marker']):\n"
        "    time.sleep(0.05)\n"
        "result = {'double': context['n'] * 2, 'cwd': os.getcwd(), 'file': __file__}\n"
    )
    path = folder / "flow.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: sdk-portable
            tasks:
              - id: double
                method: python/execute
                parameters:
                  file: scripts/double.py
                  context: { n: 21, marker: %s }
              - id: again
                method: python/execute
                parameters:
                  file: scripts/double.py
                  context: { n: 2, marker: %s }
            """
            % (marker, marker)
        )
    )
    return path


def test_a_yaml_file_naming_a_script_runs_after_its_folder_is_deleted(suite, workdir: Path):
    folder = workdir / "flow"
    marker = workdir / "go"
    path = gated_flow(folder, marker)

    async def main():
        async with cluster_of(suite) as cluster:
            wf_id = await cluster.submit_workflow(str(path))
            shutil.rmtree(folder)  # before any task ran: they wait for the marker
            marker.write_text("")
            return await cluster.wait(wf_id, timeout=60)

    results = run(main())
    assert results["double"]["result"]["double"] == 42
    assert results["again"]["result"]["double"] == 4
    cwd = results["double"]["result"]["cwd"]
    assert not cwd.startswith(str(folder)), cwd
    assert results["double"]["result"]["file"] == os.path.join(cwd, "scripts", "double.py")
    assert not os.path.exists(cwd), "the task's own folder is removed when it ends"


def test_the_spec_carries_each_content_once_and_round_trips(workdir: Path):
    (workdir / "s.py").write_text("result = 1\n")
    wf = Workflow("many")
    for i in range(100):
        wf.add_task("t%d" % i, "python/execute", {"file": "s.py"})
    spec = attach(wf.to_dict(), str(workdir))
    key = "sha256:" + hashlib.sha256(b"result = 1\n").hexdigest()
    assert list(spec["attachments"]) == [key]
    assert spec["attachments"][key] == {"size": 11, "content": base64.b64encode(b"result = 1\n").decode()}
    assert all(t["files"] == {"s.py": key} for t in spec["tasks"])
    again = Workflow.from_dict(spec).to_dict()
    assert again == spec
    assert "attachments" not in wf.to_dict(), "the workflow itself is left as it was"


def test_paths_outside_the_folder_do_not_travel(workdir: Path):
    (workdir / "flow").mkdir()
    (workdir / "secret.txt").write_text("secret")
    os.symlink(workdir / "secret.txt", workdir / "flow" / "link.txt")
    spec = {
        "name": "outside",
        "tasks": [
            {"id": "a", "method": "llm/chat", "parameters": {"model": "m", "messages": [], "file_path": "../secret.txt"}},
            {"id": "b", "method": "llm/vision", "parameters": {"prompt": "x", "image_paths": ["link.txt", "/etc/hostname"]}},
        ],
    }
    out = attach(spec, str(workdir / "flow"))
    assert "attachments" not in out
    assert all("files" not in t for t in out["tasks"])


def test_too_large_and_unreadable_files_are_refused_before_anything_is_submitted(suite, workdir: Path):
    (workdir / "big.png").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    for i in range(3):
        (workdir / ("part-%d.png" % i)).write_bytes(bytes([i]) * (6 * 1024 * 1024))
    cases = {
        "sdk-too-big": ("GZ7013", {"id": "look", "method": "llm/vision", "parameters": {"prompt": "x", "image_path": "big.png"}}),
        "sdk-too-much": (
            "GZ7013",
            {"id": "look", "method": "llm/vision", "parameters": {"prompt": "x", "image_paths": ["part-0.png", "part-1.png", "part-2.png"]}},
        ),
        "sdk-missing": ("GZ7014", {"id": "lost", "method": "python/execute", "parameters": {"file": "lost.py"}}),
    }

    async def main():
        errors = {}
        async with cluster_of(suite) as cluster:
            for name, (_, task) in cases.items():
                with pytest.raises(GleitzeitError) as info:
                    await cluster.submit_workflow({"name": name, "tasks": [task]}, base_dir=str(workdir))
                errors[name] = info.value
            listed = await cluster.list_workflows(limit=1000)
        return errors, listed

    errors, listed = run(main())
    for name, (code, task) in cases.items():
        assert errors[name].code == code, errors[name]
        assert "task `%s`" % task["id"] in errors[name].message, errors[name]
        assert errors[name].details["task_id"] == task["id"]
    assert "big.png" in errors["sdk-too-big"].message
    assert "lost.py" in errors["sdk-missing"].message
    assert not {w["name"] for w in listed} & set(cases), "nothing was created"
