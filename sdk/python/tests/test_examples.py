"""The example of examples/python_sdk runs unchanged against the test suite."""

import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_python_sdk_example_mixes_a_builtin_an_own_function_and_an_llm(suite, monkeypatch, capsys):
    monkeypatch.setenv("GLEITZEIT_HUB_URL", suite.hub_url)
    monkeypatch.setenv("GLEITZEIT_API_KEY", suite.key)
    monkeypatch.syspath_prepend(str(REPO / "examples" / "python_sdk"))
    sys.modules.pop("pipeline", None)
    import pipeline

    results = asyncio.run(asyncio.wait_for(pipeline.main(), 90))
    assert results["numbers"]["result"][-1] == 89
    assert results["spread"]["result"] == {"largest": [55, 89], "range": 89}
    assert results["explain"]["response"]
    out = capsys.readouterr().out
    assert "done: Spread" in out and "explanation:" in out
