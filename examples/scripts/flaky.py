"""Fails on the first attempt, succeeds on the second (counts attempts in a file)."""
import os

path = context["counter_file"]
attempts = int(open(path).read()) if os.path.exists(path) else 0
attempts += 1
with open(path, "w") as f:
    f.write(str(attempts))
if attempts < 2:
    raise RuntimeError("transient failure on attempt %d" % attempts)
os.remove(path)
result = {"succeeded_on_attempt": attempts}
