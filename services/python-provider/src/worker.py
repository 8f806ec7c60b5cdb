"""Gleitzeit warm Python worker: runs python/execute jobs for python-provider's pool (pool.rs).

Protocol, one JSON object per line:
  worker -> pool, once at start: {"status": "ready", "pid": 123, "version": "3.11.7"}
  pool -> worker:  {"seq": 1, "code": "..."} or {"seq": 1, "file": "/abs/or/relative.py"},
                   plus "context" (any JSON, null means {}) and optional "cwd"
  worker -> pool:  {"status": "ok", "seq": 1, "result": ..., "output": "...", "time": 0.001}
                   {"status": "error", "seq": 1, "kind": "exception" | "syntax" | "not_found"
                    | "internal", "message": "...", "traceback": "...", "line": 3, "output": "..."}

The protocol runs over the process's original stdin and stdout, which are moved to private
descriptors at start-up: afterwards fd 0 reads /dev/null and fd 1 writes to stderr, so nothing
a script does (input(), os.write(1, ...), child processes) can disturb the protocol. What a
script prints through sys.stdout goes to a fresh buffer per job and comes back as "output".
"""

import io
import json
import linecache
import math
import os
import sys
import threading
import time
import traceback
import types

# Compiled code objects kept per worker: inline sources and script files each.
CACHE_LIMIT = 512
# Containers nested deeper than this in a result are returned as their repr().
MAX_RESULT_DEPTH = 200


def take_protocol_pipes():
    """Move the protocol off fds 0 and 1 so scripts cannot read or write it."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return requests, replies


def exit_with_parent():
    """Exit within a second of the pool's process dying, even in the middle of a job.

    (A closed stdin only ends an idle worker. PR_SET_PDEATHSIG is not used: it fires when the
    spawning *thread* ends, and tokio may retire the thread that spawned a worker.)
    """
    parent = os.getppid()
    sleep = time.sleep

    def watch():
        while os.getppid() == parent:
            sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="gleitzeit-parent-watch", daemon=True).start()


class Capture(io.StringIO):
    """Per-job stdout buffer that survives a script calling sys.stdout.close()."""

    def close(self):
        pass


def safe_repr(value):
    try:
        return repr(value)
    except Exception:
        return "<unrepresentable %s>" % type(value).__name__


def json_fallback(value):
    """json.dumps hook for values JSON has no type for (see PythonOutcome in pool.rs)."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    return repr(value)


def clean_text(text):
    """Make a str encodable as UTF-8 (lone surrogates become backslash escapes)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def plain_key(key):
    if isinstance(key, str):
        return clean_text(key)
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    return clean_text(safe_repr(key))


def plain(value, depth=0, active=None):
    """Slow path: turn any value into plain JSON data, for replies json.dumps refused."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if depth >= MAX_RESULT_DEPTH:
            return clean_text(safe_repr(value))
        if active is None:
            active = set()
        if id(value) in active:
            return "<circular reference>"
        active.add(id(value))
        try:
            if isinstance(value, dict):
                return {plain_key(k): plain(v, depth + 1, active) for k, v in value.items()}
            return [plain(v, depth + 1, active) for v in value]
        finally:
            active.discard(id(value))
    try:
        converted = json_fallback(value)
    except Exception:
        converted = safe_repr(value)
    if isinstance(converted, str):
        return clean_text(converted)
    return plain(converted, depth + 1, active)


def encode(reply):
    try:
        text = json.dumps(reply, ensure_ascii=False, allow_nan=False, default=json_fallback)
        return text.encode("utf-8") + b"\n"
    except Exception:
        # NaN, odd dict keys, cycles, lone surrogates, very deep nesting, failing repr...
        text = json.dumps(plain(reply), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8") + b"\n"


def failure(seq, kind, message, traceback_text="", line=None, output=""):
    return {
        "status": "error",
        "seq": seq,
        "kind": kind,
        "message": message,
        "traceback": traceback_text,
        "line": line,
        "output": output,
    }


def syntax_failure(seq, error):
    detail = "".join(traceback.format_exception_only(type(error), error)).rstrip()
    line = getattr(error, "lineno", None)
    return failure(seq, "syntax", detail.splitlines()[-1], detail, line if isinstance(line, int) else None)


def exception_failure(seq, error, filename, output):
    tb = error.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # drop the worker's own exec() frame
    text = "".join(traceback.format_exception(type(error), error, tb))
    message = "".join(traceback.format_exception_only(type(error), error)).strip()
    line = None
    for frame in traceback.extract_tb(tb):
        if frame.filename == filename:
            line = frame.lineno
    return failure(seq, "exception", message, text, line, output)


class Worker:
    def __init__(self):
        self.home = os.getcwd()
        self.inline_code = {}  # source text -> code object
        self.file_code = {}  # absolute path -> ((mtime_ns, size), code object)
        self.inline_names = 0

    @staticmethod
    def remember(cache, key, value, on_evict=None):
        if len(cache) >= CACHE_LIMIT:
            oldest = next(iter(cache))
            evicted = cache.pop(oldest)
            if on_evict is not None:
                on_evict(evicted)
        cache[key] = value

    def compile_inline(self, source):
        code = self.inline_code.get(source)
        if code is None:
            self.inline_names += 1
            name = "<code #%d>" % self.inline_names
            code = compile(source, name, "exec", dont_inherit=True)
            # Registered so tracebacks can quote the failing line of inline code.
            linecache.cache[name] = (len(source), None, source.splitlines(True), name)
            self.remember(
                self.inline_code,
                source,
                code,
                lambda old: linecache.cache.pop(old.co_filename, None),
            )
        return code

    def compile_file(self, path):
        stat = os.stat(path)
        version = (stat.st_mtime_ns, stat.st_size)
        cached = self.file_code.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        with open(path, "rb") as handle:
            source = handle.read()
        code = compile(source, path, "exec", dont_inherit=True)
        self.remember(self.file_code, path, (version, code))
        return code

    def run(self, request):
        seq = request.get("seq")
        saved_path = sys.path[:]
        saved_argv = sys.argv
        saved_main = sys.modules.get("__main__")
        saved_streams = (sys.stdin, sys.stdout, sys.stderr)
        try:
            return self.prepare_and_run(seq, request)
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            sys.path[:] = saved_path
            sys.argv = saved_argv
            if saved_main is not None:
                sys.modules["__main__"] = saved_main
            try:
                os.chdir(self.home)
            except OSError:
                pass

    def prepare_and_run(self, seq, request):
        cwd = request.get("cwd")
        if cwd is not None:
            try:
                os.chdir(cwd)
            except OSError as error:
                return failure(seq, "not_found", "working directory %s: %s" % (cwd, error.strerror or error))
        module = types.ModuleType("__main__")
        context = request.get("context")
        module.context = {} if context is None else context
        path = request.get("file")
        if path is not None:
            path = os.path.abspath(path)
            try:
                code = self.compile_file(path)
            except OSError as error:
                return failure(seq, "not_found", "python script %s: %s" % (path, error.strerror or error))
            except (SyntaxError, ValueError) as error:
                return syntax_failure(seq, error)
            module.__file__ = path
            sys.path.insert(0, os.path.dirname(path))
            sys.argv = [path]
        else:
            source = request.get("code")
            if not isinstance(source, str):
                return failure(seq, "internal", "request has neither a `code` string nor a `file`")
            try:
                code = self.compile_inline(source)
            except (SyntaxError, ValueError) as error:
                return syntax_failure(seq, error)
            sys.path.insert(0, os.getcwd())  # like `python -c`
            sys.argv = ["-c"]
        return self.execute(seq, code, module)

    @staticmethod
    def execute(seq, code, module):
        output = Capture()
        sys.stdout = output
        sys.modules["__main__"] = module
        started = time.perf_counter()
        try:
            exec(code, module.__dict__)
        except SystemExit as error:
            if error.code not in (None, 0):
                return exception_failure(seq, error, code.co_filename, output.getvalue())
        except BaseException as error:
            return exception_failure(seq, error, code.co_filename, output.getvalue())
        elapsed = time.perf_counter() - started
        return {
            "status": "ok",
            "seq": seq,
            "result": module.__dict__.get("result"),
            "output": output.getvalue(),
            "time": elapsed,
        }


def main():
    exit_with_parent()
    requests, replies = take_protocol_pipes()
    if sys.path and sys.path[0] == "":
        del sys.path[0]  # `-c` put the start directory first; each job sets its own entry
    worker = Worker()
    version = "%d.%d.%d" % sys.version_info[:3]
    replies.write(encode({"status": "ready", "pid": os.getpid(), "version": version}))
    replies.flush()
    for line in requests:
        seq = None
        try:
            request = json.loads(line)
            seq = request.get("seq")
            reply = worker.run(request)
        except Exception as error:
            reply = failure(seq, "internal", "worker error: %s" % safe_repr(error), traceback.format_exc())
        replies.write(encode(reply))
        replies.flush()


main()
