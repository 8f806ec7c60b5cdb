"""The original README's "Batch Processing" example (seed 004), run against this SDK.

Changed from the original: the import line only (``TaskType``/``TaskParameters`` are not
needed and not imported).
"""

import asyncio
from gleitzeit import GleitzeitCluster, Workflow

async def batch_text_analysis():
    cluster = GleitzeitCluster()
    await cluster.start()

    # Batch processing workflow
    workflow = Workflow(name="Batch Text Analysis")

    texts = [
        "Artificial intelligence is transforming industries",
        "Climate change requires immediate action",
        "Space exploration opens new frontiers"
    ]

    # Create parallel analysis tasks
    for i, text in enumerate(texts):
        workflow.add_python_task(
            name=f"Analyze Text {i+1}",
            function_name="count_words",
            kwargs={"text": text}
        )

        workflow.add_python_task(
            name=f"Extract Keywords {i+1}",
            function_name="extract_keywords",
            kwargs={"text": text, "max_keywords": 3}
        )

    # Aggregation task
    workflow.add_text_task(
        name="Generate Report",
        prompt='''Create a report from these analyses:
        Text 1 words: {{Analyze Text 1.result}}, keywords: {{Extract Keywords 1.result}}
        Text 2 words: {{Analyze Text 2.result}}, keywords: {{Extract Keywords 2.result}}
        Text 3 words: {{Analyze Text 3.result}}, keywords: {{Extract Keywords 3.result}}''',
        model="llama3",
        dependencies=[f"Analyze Text {i+1}" for i in range(3)] + [f"Extract Keywords {i+1}" for i in range(3)]
    )

    # Execute batch workflow with real-time events
    workflow_id = await cluster.submit_workflow(workflow)

    # Event-driven monitoring - no polling needed!
    completion_event = asyncio.Event()
    results = {}

    async def on_task_completed(event):
        task_name = event['task_name']
        result = event['result']
        print(f"✅ Completed: {task_name} -> {result}")

    async def on_workflow_completed(event):
        nonlocal results
        results = event['task_results']
        completion_event.set()

    # Register event listeners
    cluster.on('task_completed', on_task_completed)
    cluster.on('workflow_completed', on_workflow_completed)

    # Wait for completion (event-driven, not polling)
    await completion_event.wait()

    print("\nBatch Results:")
    for task_name, result in results.items():
        print(f"  {task_name}: {result}")

    await cluster.stop()

if __name__ == "__main__":
    asyncio.run(batch_text_analysis())
