"""Gleitzeit warm Python worker: runs python/execute jobs for python-provider's pool (pool.rs).

Protocol, one JSON object per line:
  worker -> pool, once at start: {"status": "ready", "pid": 123, "version": "3.11.7"}
  pool -> worker:  {"seq": 1, "code": "..."} or {"seq": 1, "file": "/abs/or/relative.py"},
                   plus "context" (any JSON, null means {}) and optional "cwd"
                   plus "cpu" (CPU seconds this job may use, its soft RLIMIT_CPU)
  pool -> worker:  {"skip": 2}: do not start job 2 if it has not started (it was cancelled
                   while it waited in the pipe behind the running job)
  worker -> pool:  {"status": "ok", "seq": 1, "result": ..., "output": "...", "time": 0.001}
                   {"status": "error", "seq": 1, "kind": "exception" | "syntax" | "not_found"
                    | "resource" | "too_large" | "internal", "message": "...",
                    "traceback": "...", "line": 3, "output": "..."}
                   {"status": "skipped", "seq": 2}

The pool may send the next job while one runs (pool.rs, "pipelined"): the worker finds it
waiting when it finishes, instead of sleeping until the pool hears the reply and sends it.
Before starting a job the worker reads whatever else has arrived, so a skip sent for a job
waiting in the pipe is seen before that job starts; unless it looked less than LOOK_AGAIN
(0.5 ms) ago: a job that follows one of a few microseconds starts without a poll of its own
(a cancel that close to its start could not be told from one just after it).

Its one argument is a JSON object of limits (limits.rs): "address_space", "file_size" and
"processes" become hard rlimits at start-up; "max_output" bounds every reply line, so a job
printing without end costs bounded memory here and in the pool (output past the limit is
dropped, marked, and the job fails as "too_large").

Containment: the worker makes itself a child subreaper, so processes a job leaves behind
(daemons included) are re-parented to it; after every job, and before exiting with its
parent, it stops and kills all of them. The pool kills the whole tree on timeout or cancel.

The protocol runs over the process's original stdin and stdout, which are moved to private
descriptors at start-up: afterwards fd 0 reads /dev/null and fd 1 writes to stderr, so nothing
a script does (input(), os.write(1, ...), child processes) can disturb the protocol. What a
script prints through sys.stdout goes to a fresh buffer per job and comes back as "output".
"""

import collections
import errno
import io
import json
import linecache
import math
import os
import select
import signal
import sys
import threading
import time
import traceback
import types

try:
    import resource
except ImportError:  # not on this platform: no rlimits
    resource = None

# Compiled code objects kept per worker: inline sources and script files each.
CACHE_LIMIT = 512
# Containers nested deeper than this in a result are returned as their repr().
MAX_RESULT_DEPTH = 200
# A traceback or error message is cut to this many characters (less with a small output limit).
TEXT_LIMIT = 64 * 1024
# A job failing as too_large reports at most this much of its output (bytes of JSON): enough
# to see what it printed, small enough that the failure is cheap for every service it passes.
EXCERPT_LIMIT = 64 * 1024
# Appended to output that was cut.
TRUNCATED = "\u2026[truncated %d bytes]"
# A job waiting in the pipe starts without another look for a skip when the pipe was read
# or polled this recently (seconds).
LOOK_AGAIN = 0.0005
# prctl option that makes orphaned descendants children of this process.
PR_SET_CHILD_SUBREAPER = 36


def apply_limits(limits):
    """Hard rlimits for this worker and everything it starts (see limits.rs)."""
    if resource is None:
        return
    wanted = [(resource.RLIMIT_CORE, 0)]  # no core files in users' folders
    if limits.get("address_space"):
        wanted.append((resource.RLIMIT_AS, limits["address_space"]))
    if limits.get("file_size"):
        wanted.append((resource.RLIMIT_FSIZE, limits["file_size"]))
    if limits.get("processes") and os.getuid() != 0:
        wanted.append((resource.RLIMIT_NPROC, user_tasks() + limits["processes"]))
    for which, value in wanted:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as error:
            sys.stderr.write("gleitzeit worker: cannot set rlimit %d: %s\n" % (which, error))


def user_tasks():
    """Processes and threads of this user: what RLIMIT_NPROC counts."""
    uid = os.getuid()
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat("/proc/" + name).st_uid != uid:
                continue
            with open("/proc/%s/stat" % name, "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            count += int(fields[17])
        except (OSError, IndexError, ValueError):
            continue
    return count


def become_subreaper():
    """Orphaned descendants come to this worker instead of PID 1 (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError, ImportError) as error:
        sys.stderr.write("gleitzeit worker: not a subreaper: %s\n" % error)


def limit_cpu(seconds):
    """The soft RLIMIT_CPU of a job: the CPU this worker used before it (whole seconds) plus
    the job's budget; lifted to the hard limit for a job without one. It is set only when it
    differs from the limit in place (about once per CPU second of the worker) and stays in
    place between jobs (a job that used its budget up may be stopped while its reply is
    written: it hit the limit). The limit in place is read before every job, so a job that
    changed it does not change the next one's."""
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if isinstance(seconds, int):
        wanted = int(time.process_time()) + seconds
        if hard != resource.RLIM_INFINITY:
            wanted = min(wanted, hard)
    else:
        wanted = hard
    if wanted != soft:
        resource.setrlimit(resource.RLIMIT_CPU, (wanted, hard))


def descendants(root):
    """Every live descendant of `root`, from one walk of /proc."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants():
    """Stop every descendant (until a walk finds no new one), then SIGKILL them all."""
    me = os.getpid()
    found = set()
    for _ in range(50):
        fresh = [p for p in descendants(me) if p not in found]
        if not fresh:
            break
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
            found.add(pid)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(found)


def reap_children():
    """Reap exited children; True when live ones remain."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def end_job_processes():
    """No process outlives its job: kill and reap what the job left running."""
    if not reap_children():
        return  # the common case: one waitpid() call
    killed = kill_descendants()
    deadline = time.monotonic() + 2.0
    while reap_children() and time.monotonic() < deadline:
        time.sleep(0.001)
    if killed:
        sys.stderr.write("gleitzeit worker: killed %d process(es) the job left running\n" % killed)


class Requests:
    """The protocol's request lines, read straight from the pipe: jobs in order, and the
    skips that came with them (applied before the skipped job would start)."""

    SKIP = b'{"skip":'

    def __init__(self, fd):
        self.fd = fd
        self.buffer = bytearray()
        self.jobs = collections.deque()  # complete job lines, oldest first
        self.skipped = set()
        self.started = 0  # highest seq started: older skips are stale
        self.closed = False
        self.fresh = False  # the pipe was read while waiting for the job just taken
        self.looked = 0.0  # monotonic time the pipe was last read or polled

    def _fill(self, block):
        if not block:
            self.looked = time.monotonic()
            if not select.select([self.fd], [], [], 0)[0]:
                return
        data = os.read(self.fd, 1 << 16)
        if block:
            self.looked = time.monotonic()
        if not data:
            self.closed = True
            return
        self.fresh = block
        # Only the new bytes can hold a line's end: a request of many reads (a big file's
        # content) is scanned once, not once per read.
        searched = len(self.buffer)
        self.buffer += data
        start = 0
        while True:
            end = self.buffer.find(b"\n", searched)
            if end < 0:
                break
            line = bytes(self.buffer[start : end + 1])
            start = searched = end + 1
            if line.startswith(self.SKIP):
                try:
                    seq = json.loads(line)["skip"]
                except (ValueError, KeyError, TypeError):
                    continue
                if isinstance(seq, int) and seq > self.started:
                    self.skipped.add(seq)
            else:
                self.jobs.append(line)
        if start:
            del self.buffer[:start]

    def next_job(self):
        """The next job line (waiting for one), or None once the pool closed the pipe."""
        self.fresh = False
        while not self.jobs and not self.closed:
            self._fill(block=True)
        if not self.jobs:
            return None
        return self.jobs.popleft()

    def take_skip(self, seq):
        """Whether job `seq` was skipped; else it counts as started from here on. The pipe
        is looked at again unless it was read within LOOK_AGAIN: a skip is what a cancel of
        a job waiting behind a running one becomes, and a running job of well under a
        millisecond is over before a cancel could be told apart from one coming just after
        the start; jobs that follow each other that closely are not polled for one each."""
        if not self.fresh and time.monotonic() - self.looked >= LOOK_AGAIN:
            self._fill(block=False)
        if seq in self.skipped:
            self.skipped.discard(seq)
            return True
        if isinstance(seq, int):
            self.started = max(self.started, seq)
            if self.skipped:
                self.skipped = {s for s in self.skipped if s > seq}
        return False


SCAN = json.decoder.JSONDecoder().scan_once


def read_request(line):
    """A request line as a dict: the scanner behind json.loads called directly (loads
    detects the encoding, decodes and matches whitespace around it on every call). A line
    the scanner does not take whole goes through json.loads, for its error."""
    try:
        text = line.decode("utf-8")
        request, end = SCAN(text, 0)
        if end >= len(text) - 1 and isinstance(request, dict):
            return request
    except (ValueError, StopIteration):
        pass
    request = json.loads(line)
    if not isinstance(request, dict):
        raise ValueError("a request must be a JSON object")
    return request


def take_protocol_pipes():
    """Move the protocol off fds 0 and 1 so scripts cannot read or write it."""
    requests = Requests(os.dup(0))
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
        try:
            kill_descendants()
        finally:
            os._exit(1)

    threading.Thread(target=watch, name="gleitzeit-parent-watch", daemon=True).start()


class Capture(io.StringIO):
    """Per-job stdout buffer that survives a script calling sys.stdout.close() and keeps at
    most `limit` characters: the rest is counted, not stored."""

    def __init__(self, limit):
        super().__init__()
        self.room = limit
        self.dropped = 0  # bytes (UTF-8) not kept

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        if len(text) <= self.room:
            self.room -= len(text)
            return super().write(text)
        kept = text[: self.room]
        super().write(kept)
        self.room = 0
        self.dropped += len(text[len(kept):].encode("utf-8", "surrogatepass"))
        return len(text)

    def text(self):
        value = self.getvalue()
        if self.dropped:
            value += TRUNCATED % self.dropped
        return value

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


# One encoder for every reply (json.dumps with options makes a new one per call).
REPLY_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, default=json_fallback, separators=(",", ":")
)


def reply_writer():
    """What turns a reply into JSON text: the C encoder itself, made once, when there is one
    (JSONEncoder.encode builds a new one on every call). It keeps no record of the containers
    it is inside, so a cycle ends in RecursionError, and encode() falls back to plain() as
    for every other value the encoder refuses."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return REPLY_ENCODER.encode
    write = make(None, json_fallback, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return lambda reply: "".join(write(reply, 0))


WRITE_REPLY = reply_writer()


def encode(reply):
    try:
        text = WRITE_REPLY(reply)
        return text.encode("utf-8") + b"\n"
    except Exception:
        # NaN, odd dict keys, cycles, lone surrogates, very deep nesting, failing repr...
        text = json.dumps(plain(reply), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
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


def syntax_failure(seq, error, quote=True):
    """A compile error. Inline code (`quote`) is the workflow's own text, so its offending
    line is quoted with a caret; for script files the report says where, never what the
    file contains."""
    line = getattr(error, "lineno", None)
    line = line if isinstance(line, int) else None
    if quote or not isinstance(error, SyntaxError):
        detail = "".join(traceback.format_exception_only(type(error), error)).rstrip()
        if not isinstance(error, SyntaxError):
            detail = "%s: %s" % (type(error).__name__, error)
    else:
        where = '  File "%s", line %s' % (error.filename, line)
        if isinstance(error.offset, int):
            where += ", column %d" % error.offset
        detail = "%s\n%s: %s" % (where, type(error).__name__, error.msg)
    return failure(seq, "syntax", clip(detail.splitlines()[-1]), clip(detail), line)


def clip(text):
    if len(text) <= TEXT_LIMIT:
        return text
    return text[:TEXT_LIMIT] + TRUNCATED % len(text[TEXT_LIMIT:].encode("utf-8", "surrogatepass"))


def resource_limit(error, tb):
    """Which rlimit an exception comes from, or None."""
    if isinstance(error, MemoryError):
        return "memory limit (MemoryError)"
    if isinstance(error, OSError) and error.errno == errno.EFBIG:
        return "file size limit (%s)" % error
    if isinstance(error, OSError) and error.errno == errno.EAGAIN:
        frames = traceback.extract_tb(tb)
        innermost = frames[-1] if frames else None
        if innermost is not None and (
            innermost.name in ("_execute_child", "_launch", "_fork_exec")
            or "fork" in (innermost.line or "")
        ):
            return "process limit (%s)" % error
    if isinstance(error, RuntimeError) and "can't start new thread" in str(error):
        return "process limit (%s)" % error
    return None


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
    limit = resource_limit(error, tb)
    if limit is not None:
        return failure(seq, "resource", limit, clip(text), line, output)
    return failure(seq, "exception", clip(message), clip(text), line, output)


def too_large(reply, message):
    return failure(
        reply.get("seq"),
        "too_large",
        message,
        clip(reply.get("traceback") or ""),
        reply.get("line"),
        reply.get("output") or "",
    )


def json_size(text):
    return len(json.dumps(clean_text(text), ensure_ascii=False).encode("utf-8"))


def cut(text, room, dropped):
    """A prefix of `text` with a truncation marker, whose JSON takes at most `room` bytes."""
    keep = min(len(text), max(room, 0))
    while True:
        lost = dropped + len(text[keep:].encode("utf-8", "surrogatepass"))
        candidate = text[:keep] + TRUNCATED % lost
        if keep == 0 or json_size(candidate) <= room:
            return candidate
        keep //= 2


def shape(reply, dropped, limit):
    """The reply's line, at most `limit` bytes. Output that overflowed the capture (`dropped`
    bytes), or a reply that does not fit, fails the job as too_large: the result is dropped
    and the output cut to an excerpt of at most EXCERPT_LIMIT bytes, marked as truncated."""
    output = reply.get("output") or ""
    if dropped:
        note = "the job printed %d bytes more than the output limit of %d bytes" % (dropped, limit)
        if reply.get("status") == "error":
            note += "; it also failed: %s" % clip(reply.get("message") or "")
        reply = too_large(reply, note)
    else:
        line = encode(reply)
        if len(line) <= limit:
            return line
        what = "result and output take" if reply.get("status") == "ok" else "error report takes"
        reply = too_large(
            reply,
            "the job's %s %d bytes, over the limit of %d bytes; the result was dropped"
            % (what, len(line), limit),
        )
    reply["output"] = ""
    room = min(limit - len(encode(reply)) - 64, EXCERPT_LIMIT)
    reply["output"] = cut(output, room, dropped)
    return encode(reply)


class Worker:
    def __init__(self, max_output):
        self.max_output = max_output
        self.dropped = 0  # output bytes the last job printed past the limit
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
        self.dropped = 0
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
            end_job_processes()

    def prepare_and_run(self, seq, request):
        # Every job starts in its own directory (or the worker's), wherever the one before
        # it went: one chdir per job, not one there and one back.
        cwd = request.get("cwd")
        if cwd is not None:
            try:
                os.chdir(cwd)
            except OSError as error:
                return failure(seq, "not_found", "working directory %s: %s" % (cwd, error.strerror or error))
            if not os.path.isabs(cwd):
                cwd = os.getcwd()
        else:
            cwd = self.home
            try:
                os.chdir(cwd)
            except OSError:
                cwd = os.getcwd()
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
                return syntax_failure(seq, error, quote=False)
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
            sys.path.insert(0, cwd)  # like `python -c`: where it runs
            sys.argv = ["-c"]
        return self.execute(seq, code, module, request.get("cpu"))

    def execute(self, seq, code, module, cpu):
        output = Capture(self.max_output)
        sys.stdout = output
        sys.modules["__main__"] = module
        started = time.perf_counter()
        try:
            limit_cpu(cpu)
            exec(code, module.__dict__)
        except SystemExit as error:
            if error.code not in (None, 0):
                return exception_failure(seq, error, code.co_filename, output.getvalue())
        except BaseException as error:
            return exception_failure(seq, error, code.co_filename, output.getvalue())
        finally:
            self.dropped = output.dropped
        elapsed = time.perf_counter() - started
        return {
            "status": "ok",
            "seq": seq,
            "result": module.__dict__.get("result"),
            "output": output.getvalue(),
            "time": elapsed,
        }


def main():
    limits = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    max_output = int(limits.get("max_output") or 16 * 1024 * 1024)
    global TEXT_LIMIT
    TEXT_LIMIT = min(TEXT_LIMIT, max_output // 8)
    exit_with_parent()
    become_subreaper()
    apply_limits(limits)
    requests, replies = take_protocol_pipes()
    if sys.path and sys.path[0] == "":
        del sys.path[0]  # `-c` put the start directory first; each job sets its own entry
    worker = Worker(max_output)
    version = "%d.%d.%d" % sys.version_info[:3]
    replies.write(encode({"status": "ready", "pid": os.getpid(), "version": version}))
    replies.flush()
    while True:
        line = requests.next_job()
        if line is None:
            break
        seq = None
        try:
            request = read_request(line)
            seq = request.get("seq")
            if requests.take_skip(seq):
                replies.write(encode({"status": "skipped", "seq": seq}))
                replies.flush()
                continue
            reply = worker.run(request)
            line = shape(reply, worker.dropped, max_output)
        except MemoryError:
            reply = failure(seq, "resource", "memory limit (MemoryError) while encoding the reply")
            line = encode(reply)
        except Exception as error:
            reply = failure(seq, "internal", "worker error: %s" % safe_repr(error), clip(traceback.format_exc()))
            line = encode(reply)
        replies.write(line)
        replies.flush()


main()
