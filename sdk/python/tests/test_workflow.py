"""Building workflows, and their YAML round trip through `gz validate`."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from sdk_support import bin_path
from gleitzeit import GleitzeitError, Task, Workflow
from gleitzeit.workflow import slugify


def gz_validate(path: Path) -> dict:
    out = subprocess.run([bin_path("gz"), "validate", str(path), "--json"], capture_output=True, text=True, timeout=60)
    assert out.stdout, out.stderr
    return json.loads(out.stdout)


def sample() -> Workflow:
    wf = Workflow("Data Processing Pipeline", description="demo", timeout=600, on_failure="continue")
    gen = wf.add_python_task(name="Generate Dataset", function_name="fibonacci", kwargs={"n": 10})
    wf.add_python_task(
        name="Analyze Numbers",
        function_name="analyze_numbers",
        kwargs={"numbers": "{{Generate Dataset.result}}"},
        dependencies=["Generate Dataset"],
        retry=3,
        priority="high",
        timeout=30,
    )
    wf.add_text_task(
        name="Generate Summary",
        prompt="Summarize:\n{{Analyze Numbers.result}}",
        model="llama3",
        system="Be brief.",
        temperature=0.2,
        max_tokens=64,
        dependencies=["Analyze Numbers"],
    )
    wf.add_vision_task(name="Look", prompt="What is it?", image_path="photo.jpg", image_paths=["a.png", "b.png"])
    wf.add_external_task(
        "Process",
        service_name="Python Tasks",
        external_parameters={"function_name": "process_data", "raw_data": [1, 2], "args": ["x"]},
        dependencies=[gen],
    )
    wf.add_task("Inline", "python/execute", {"code": "result = 1", "context": {"n": gen.ref("result")}}, priority=4)
    wf.add_task("Shout", "text/shout", {"text": "hi"}, retry={"backoff": "fixed", "base_delay": 0.5})
    return wf


def test_ids_are_unique_slugs_and_names_are_kept():
    wf = Workflow("ids")
    a = wf.add_task("Fetch Data!", "python/execute", {"code": "1"})
    b = wf.add_task("fetch data", "python/execute", {"code": "1"})
    c = wf.add_task("fetch-data", "python/execute", {"code": "1"})
    d = wf.add_task("{{x}}.[y]$", "python/execute", {"code": "1"})
    e = wf.add_task("***", "python/execute", {"code": "1"})
    assert [t.id for t in (a, b, c, d, e)] == ["fetch-data", "fetch-data-2", "fetch-data-3", "x-y", "task"]
    assert a.name == "Fetch Data!" and d.name == "{{x}}.[y]$"
    assert slugify("Ünïcode Name") == "ünïcode-name"
    with pytest.raises(GleitzeitError) as info:
        wf.add_task("dup", "python/execute", {"code": "1"}, id="fetch-data")
    assert info.value.code == "GZ3001"
    with pytest.raises(GleitzeitError) as info:
        wf.add_task("bad", "python/execute", {"code": "1"}, id="a.b")
    assert info.value.code == "GZ7001"


def test_parameters_of_each_helper():
    d = sample().to_dict()
    tasks = {t["id"]: t for t in d["tasks"]}
    assert tasks["generate-dataset"] == {
        "id": "generate-dataset",
        "name": "Generate Dataset",
        "method": "python/function",
        "parameters": {"function_name": "fibonacci", "kwargs": {"n": 10}},
    }
    analyze = tasks["analyze-numbers"]
    assert analyze["dependencies"] == ["generate-dataset"]  # given by name, written as id
    assert analyze["retry"] == {"max_attempts": 3} and analyze["priority"] == "high" and analyze["timeout"] == 30
    summary = tasks["generate-summary"]["parameters"]
    assert summary == {
        "model": "llama3",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Summarize:\n{{Analyze Numbers.result}}"}],
        "temperature": 0.2,
        "max_tokens": 64,
    }
    assert tasks["look"]["method"] == "llm/vision"
    assert tasks["look"]["parameters"] == {
        "model": "llava:latest",
        "prompt": "What is it?",
        "image_path": "photo.jpg",
        "image_paths": ["a.png", "b.png"],
    }
    assert tasks["process"]["parameters"] == {
        "function_name": "process_data",
        "args": ["x"],
        "kwargs": {"raw_data": [1, 2]},
        "service_name": "Python Tasks",
    }
    assert tasks["process"]["dependencies"] == ["generate-dataset"]
    assert tasks["inline"]["parameters"]["context"] == {"n": "${generate-dataset.result}"}
    assert tasks["shout"]["retry"] == {"backoff": "fixed", "base_delay": 0.5, "max_attempts": 3}
    assert d["on_failure"] == "continue" and d["timeout"] == 600


def test_to_yaml_round_trips_and_passes_gz_validate(tmp_path: Path):
    wf = sample()
    path = tmp_path / "flow.yaml"
    wf.save(path)
    doc = gz_validate(path)
    assert doc["valid"], doc
    assert doc["total_tasks"] == len(wf)
    errors = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert not errors
    # the open method is only a warning
    assert {d["code"] for d in doc["diagnostics"]} <= {"GZ7003"}
    again = Workflow.from_yaml(path)
    assert again.to_dict() == wf.to_dict()
    assert again.base_dir == str(tmp_path.resolve())
    assert Workflow.from_yaml(wf.to_yaml()).to_dict() == wf.to_dict()
    assert Workflow.from_dict(json.loads(wf.to_json())).to_dict() == wf.to_dict()


def test_from_yaml_reads_the_file_format_and_fills_defaults(tmp_path: Path):
    text = textwrap.dedent(
        """\
        name: my-flow
        version: 1
        tasks:
          - method: python/execute
            params: { code: "result = 1" }
          - id: use
            name: Use It
            method: python/execute
            dependencies: task-1
            priority: 3
            retry: 2
            parameters:
              code: result = context["x"]
              context: { x: "${task-1.result}" }
          - method: llm/chat
            parameters: { model: m, messages: [{role: user, content: "${Use It.result}"}] }
        """
    )
    path = tmp_path / "in.yaml"
    path.write_text(text)
    wf = Workflow.from_yaml(path)
    assert [t.id for t in wf.tasks] == ["task-1", "use", "task-3"]
    assert wf.get_task("Use It") is wf.tasks[1]
    d = wf.to_dict()
    assert d["tasks"][1]["dependencies"] == ["task-1"]
    assert d["tasks"][1]["retry"] == {"max_attempts": 2}
    assert d["tasks"][1]["priority"] == 3
    out = tmp_path / "out.yaml"
    wf.save(out)
    assert gz_validate(out)["valid"]


def test_mistakes_are_reported_with_codes():
    with pytest.raises(GleitzeitError) as info:
        Workflow.from_dict({"name": "x", "tasks": [{"method": "python/execute", "dependancies": []}]})
    assert info.value.code == "GZ7001" and "dependancies" in info.value.message
    with pytest.raises(GleitzeitError) as info:
        Workflow.from_yaml("name: [unclosed\n")
    assert info.value.code == "GZ7010"
    with pytest.raises(GleitzeitError) as info:
        Workflow.from_yaml("missing-file.yaml")
    assert info.value.code == "GZ9002"
    with pytest.raises(GleitzeitError):
        Workflow("x").add_task("t", "python/execute", {"code": "1"}, priority="soon")
    with pytest.raises(GleitzeitError):
        Workflow("x").add_text_task("t")
    wf = Workflow("x")
    wf.add_task("t", "python/execute", {"value": object()})
    with pytest.raises(GleitzeitError):
        wf.to_dict()


def test_a_task_can_be_referenced_by_object_id_or_name():
    wf = Workflow("refs")
    a = wf.add_task("A task", "python/execute", {"code": "result = 1"})
    b = wf.add_task("B", "python/execute", {"code": "result = 2"}, dependencies=[a])
    c = wf.add_task("C", "python/execute", {"code": "result = 3"}, dependencies=["a-task", "B", a])
    assert isinstance(b, Task)
    assert wf.to_dict()["tasks"][2]["dependencies"] == ["a-task", "b"]
    assert a.ref() == "${a-task.result}" and a.ref("result.rows[0]") == "${a-task.result.rows[0]}"
    assert wf.get_task("c") is c and wf.get_task("C") is c


def test_the_original_task_dialect_reads_as_gz_reads_it(tmp_path: Path):
    path = tmp_path / "dialect.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: Data Processing Pipeline
            tasks:
              - name: Generate Dataset
                type: function
                function_name: fibonacci
                kwargs: { n: 10 }
              - name: Generate Summary
                type: text
                prompt: "Summarise: {{Generate Dataset.result}}"
                system: be brief
                dependencies: [Generate Dataset]
              - name: Look
                type: vision
                prompt: what is it
                image_path: a.png
              - name: Fetch
                type: http
                url: http://127.0.0.1:9/x
                method: POST
                parameters: { headers: { a: b } }
              - name: Code
                type: python
                code: "result = 1"
                retry: 2
            """
        )
    )
    out = subprocess.run([bin_path("gz"), "validate", str(path), "--explain", "--json"], capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stdout) if out.stdout.startswith("{") else {}
    if "normalized" not in doc:
        pytest.skip("gz validate --explain is not available")
    wf = Workflow.from_yaml(path)
    mine = wf.to_dict()["tasks"]
    theirs = doc["normalized"]["tasks"]
    keys = ("id", "name", "method", "parameters")
    assert [{k: t[k] for k in keys} for t in mine] == [{k: t[k] for k in keys} for t in theirs]
    assert [t.get("dependencies", []) for t in mine] == [t["dependencies"] for t in theirs]
    assert mine[4]["retry"]["max_attempts"] == theirs[4]["retry"]["max_attempts"] == 2
    with pytest.raises(GleitzeitError) as info:
        Workflow.from_dict({"name": "x", "tasks": [{"type": "teleport"}]})
    assert info.value.code == "GZ7001"
    with pytest.raises(GleitzeitError):
        Workflow.from_dict({"name": "x", "tasks": [{"type": "python", "method": "python/execute", "code": "1"}]})
    with pytest.raises(GleitzeitError):
        Workflow.from_dict({"name": "x", "tasks": [{"type": "python", "code": "1", "parameters": {"code": "2"}}]})
