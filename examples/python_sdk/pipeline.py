"""A workflow built in Python: a built-in function, a function of your own served with
``@gleitzeit_task``, and an LLM task, each step using the result of the one before.

Run it against any suite (see README.md beside this file): the key and the hub come from
GLEITZEIT_API_KEY / GLEITZEIT_HUB_URL, the saved login, or the local suite.
"""

import asyncio

from gleitzeit import GleitzeitCluster, gleitzeit_task, start_task_service


@gleitzeit_task(category="math")
def spread(numbers: list[int], top: int = 3) -> dict:
    """The largest numbers of a list and how far apart the ends are."""
    ordered = sorted(numbers)
    return {"largest": ordered[-top:], "range": ordered[-1] - ordered[0]}


async def main() -> dict:
    # This process serves `spread` for as long as it runs.
    service = await start_task_service(service_name="Example Tasks", capacity=2)
    cluster = GleitzeitCluster()
    await cluster.start()
    try:
        wf = cluster.create_workflow("python sdk example")
        wf.add_python_task("Numbers", function_name="fibonacci", kwargs={"n": 12})
        wf.add_python_task(
            "Spread",
            function_name="spread",
            kwargs={"numbers": "{{Numbers.result}}", "top": 2},
            service_name="Example Tasks",
            dependencies=["Numbers"],
        )
        wf.add_text_task(
            "Explain",
            prompt="Explain in one sentence: {{Spread.result}}",
            model="llama3.2",
            dependencies=["Spread"],
        )
        cluster.on("task_completed", lambda e: print("done:", e["task_name"]))
        results = await cluster.wait(await cluster.submit_workflow(wf))
        print("spread:", results["spread"]["result"])
        print("explanation:", results["explain"]["response"])
        return results
    finally:
        await cluster.stop()
        await service.stop()


if __name__ == "__main__":
    asyncio.run(main())
