"""A task service run as its own process by the tests (killed, stopped, or sharing load).

Usage: service_app.py SERVICE_NAME COMPONENT_ID CAPACITY
Hub URL and key come from GLEITZEIT_HUB_URL / GLEITZEIT_API_KEY.
"""

import os
import sys
import time
from pathlib import Path

from gleitzeit import current_task, gleitzeit_task, run_task_service


@gleitzeit_task(category="test")
def slow_once(marker_dir: str) -> dict:
    """The first attempt writes a marker and runs (nearly) forever; later ones return at once."""
    task = current_task()
    Path(marker_dir, "attempt-%d-%d" % (task.attempt, os.getpid())).write_text(task.provider_id)
    if task.attempt == 1:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not task.cancelled:
            time.sleep(0.05)
    return {"pid": os.getpid(), "attempt": task.attempt, "provider": task.provider_id}


@gleitzeit_task
def whoami(i: int, pause: float = 0.2) -> dict:
    """Which provider ran call number i."""
    time.sleep(pause)
    return {"i": i, "provider": current_task().provider_id}


if __name__ == "__main__":
    service_name, component_id, capacity = sys.argv[1], sys.argv[2], int(sys.argv[3])
    run_task_service(service_name, capacity=capacity, component_id=component_id, drain_grace=1.0)
