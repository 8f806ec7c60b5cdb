"""The original README's "Basic Workflow" (seed 004), run against this SDK.

Changed from the original: the import line (``from gleitzeit import ...``), and the
``AuthManager`` lines are gone: the key comes from ``GLEITZEIT_API_KEY`` (or the saved
login, or the local suite) without them. Everything from ``cluster = GleitzeitCluster()``
on is the original code.
"""

import asyncio

from gleitzeit import GleitzeitCluster, Workflow


async def main():
    cluster = GleitzeitCluster()
    await cluster.start()

    # Create workflow
    workflow = Workflow(name="Data Processing Pipeline")

    # Task 1: Generate data
    generate_task = workflow.add_python_task(
        name="Generate Dataset",
        function_name="fibonacci",
        kwargs={"n": 10}
    )

    # Task 2: Analyze data (depends on Task 1)
    analyze_task = workflow.add_python_task(
        name="Analyze Numbers",
        function_name="analyze_numbers",
        kwargs={"numbers": "{{Generate Dataset.result}}"},
        dependencies=["Generate Dataset"]
    )

    # Task 3: Summarize with LLM (depends on Task 2)
    summary_task = workflow.add_text_task(
        name="Generate Summary",
        prompt="Create a summary of this analysis: {{Analyze Numbers.result}}",
        model="llama3",
        dependencies=["Analyze Numbers"]
    )

    # Submit workflow and listen for events
    workflow_id = await cluster.submit_workflow(workflow)

    # Event-driven completion (much more efficient than polling!)
    completion_event = asyncio.Event()
    workflow_results = {}

    # Listen for workflow events
    async def on_workflow_progress(event):
        print(f"Progress: {event['completed_tasks']}/{event['total_tasks']}")

    async def on_workflow_completed(event):
        nonlocal workflow_results
        workflow_results = event['task_results']
        print("✅ Workflow completed!")
        completion_event.set()

    async def on_workflow_failed(event):
        print(f"❌ Workflow failed: {event.get('error')}")
        completion_event.set()

    # Register event handlers
    cluster.on('workflow_progress', on_workflow_progress)
    cluster.on('workflow_completed', on_workflow_completed)
    cluster.on('workflow_failed', on_workflow_failed)

    # Wait for completion event (no polling!)
    await completion_event.wait()

    if workflow_results:
        print("Results:", workflow_results)

    await cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
