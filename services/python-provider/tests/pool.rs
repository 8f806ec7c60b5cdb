//! The warm Python pool against a real `python3`: results, output, errors, timeouts,
//! cancellation, dead workers and throughput.

use std::future::{pending, Future};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use python_provider::pool::{PoolConfig, PythonError, PythonJob, PythonOutcome, PythonPool};
use serde_json::{json, Value};

/// Upper bound for any single test.
const TEST_LIMIT: Duration = Duration::from_secs(60);

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test took too long")
}

async fn pool(size: usize) -> PythonPool {
    PythonPool::start(PoolConfig {
        size,
        ..PoolConfig::default()
    })
    .await
    .expect("pool starts")
}

async fn run(pool: &PythonPool, job: PythonJob) -> Result<PythonOutcome, PythonError> {
    pool.execute(job, pending()).await
}

async fn result_of(pool: &PythonPool, code: &str) -> Value {
    run(pool, PythonJob::inline(code))
        .await
        .expect("job succeeds")
        .result
}

/// A fresh, empty scratch folder for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gz-python-provider-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Waits up to `within` for a Python script to write its pid into `file`.
async fn pid_written_to(file: &Path, within: Duration) -> u32 {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(start.elapsed() < within, "script never wrote its pid");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A script that writes its pid to `pid_file`, then sleeps for 30 s.
fn sleeper(pid_file: &Path) -> PythonJob {
    PythonJob {
        context: json!({ "pid_file": pid_file }),
        ..PythonJob::inline(
            "import os, time\n\
             with open(context['pid_file'], 'w') as f:\n    f.write(str(os.getpid()))\n\
             time.sleep(30)\n",
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_keeps_its_json_type() {
    bounded(async {
        let pool = pool(1).await;
        assert_eq!(result_of(&pool, "result = 42").await, json!(42));
        assert_eq!(result_of(&pool, "result = 2.5").await, json!(2.5));
        assert_eq!(result_of(&pool, "result = 'text'").await, json!("text"));
        assert_eq!(result_of(&pool, "result = None").await, Value::Null);
        assert_eq!(result_of(&pool, "x = 1").await, Value::Null);
        assert_eq!(result_of(&pool, "result = True").await, json!(true));
        assert_eq!(
            result_of(&pool, "result = [1, 'a', (2, 3), None]").await,
            json!([1, "a", [2, 3], null])
        );
        assert_eq!(
            result_of(&pool, "result = {'a': {'b': [1.5]}, 1: 'one'}").await,
            json!({"a": {"b": [1.5]}, "1": "one"})
        );
        // Values without a JSON type come back as their repr.
        assert_eq!(
            result_of(&pool, "result = [float('nan'), b'x', {3}]").await,
            json!(["nan", "b'x'", [3]])
        );
        assert_eq!(
            result_of(
                &pool,
                "class A:\n    def __repr__(self): return 'A()'\nresult = A()"
            )
            .await,
            json!("A()")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_text_is_returned_as_output() {
    bounded(async {
        let pool = pool(1).await;
        let outcome = run(
            &pool,
            PythonJob::inline("print('hello')\nprint('world', end='!')\nresult = 1"),
        )
        .await
        .expect("job succeeds");
        assert_eq!(outcome.output, "hello\nworld!");
        assert!(outcome.execution_time >= 0.0);
        assert_eq!(
            outcome.to_json(),
            json!({
                "result": 1,
                "output": "hello\nworld!",
                "success": true,
                "execution_time": outcome.execution_time,
            })
        );
        // Writes below sys.stdout and reads of stdin cannot disturb the worker.
        let outcome = run(
            &pool,
            PythonJob::inline(
                "import os\nos.write(1, b'raw\\n')\n\
                 try:\n    input()\nexcept EOFError:\n    result = 'eof'\n",
            ),
        )
        .await
        .expect("job succeeds");
        assert_eq!(outcome.result, json!("eof"));
        assert_eq!(
            result_of(&pool, "result = 'still fine'").await,
            json!("still fine")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_is_visible_to_the_code() {
    bounded(async {
        let pool = pool(1).await;
        let job = PythonJob {
            context: json!({"numbers": [1, 2, 3], "name": "gz"}),
            ..PythonJob::inline(
                "result = {'sum': sum(context['numbers']), 'name': context['name']}",
            )
        };
        let outcome = run(&pool, job).await.expect("job succeeds");
        assert_eq!(outcome.result, json!({"sum": 6, "name": "gz"}));
        // No context means an empty dict.
        assert_eq!(result_of(&pool, "result = context").await, json!({}));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_job_resolves_against_base_dir_and_runs_in_its_cwd() {
    bounded(async {
        let dir = scratch_dir("file-job");
        std::fs::write(dir.join("data.txt"), "from a sibling file").expect("write data");
        std::fs::write(dir.join("helper.py"), "GREETING = 'hi'\n").expect("write helper");
        std::fs::write(
            dir.join("script.py"),
            "import os, helper\n\
             with open('data.txt') as f:\n    text = f.read()\n\
             print('read', len(text))\n\
             result = {'text': text, 'greeting': helper.GREETING, 'cwd': os.getcwd(),\n\
                       'file': __file__, 'scale': context['scale'] * 2}\n",
        )
        .expect("write script");
        let pool = pool(1).await;
        let job = PythonJob {
            id: "file-job".to_owned(),
            base_dir: Some(dir.clone()),
            cwd: Some(dir.clone()),
            context: json!({"scale": 21}),
            ..PythonJob::script("script.py")
        };
        let outcome = run(&pool, job).await.expect("job succeeds");
        let dir_text = dir.to_str().expect("utf-8 temp dir");
        assert_eq!(
            outcome.result,
            json!({
                "text": "from a sibling file",
                "greeting": "hi",
                "cwd": dir_text,
                "file": dir.join("script.py").to_str().expect("utf-8 path"),
                "scale": 42,
            })
        );
        assert_eq!(outcome.output, "read 19\n");

        // The next job is back in the pool's working directory.
        let here = std::env::current_dir().expect("current dir");
        assert_eq!(
            result_of(&pool, "import os\nresult = os.getcwd()").await,
            json!(here.to_str().expect("utf-8 cwd"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_cwd_applies_to_jobs_without_one() {
    bounded(async {
        let dir = scratch_dir("default-cwd");
        let pool = PythonPool::start(PoolConfig {
            size: 1,
            default_cwd: Some(dir.clone()),
            ..PoolConfig::default()
        })
        .await
        .expect("pool starts");
        assert_eq!(
            result_of(&pool, "import os\nresult = os.getcwd()").await,
            json!(dir.to_str().expect("utf-8 path"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_script_fails_with_gz2020() {
    bounded(async {
        let pool = pool(1).await;
        let job = PythonJob {
            base_dir: Some(PathBuf::from("/nonexistent-gz")),
            ..PythonJob::script("missing.py")
        };
        let error = run(&pool, job).await.expect_err("job fails");
        assert_eq!(error.code().as_str(), "GZ2020");
        assert!(!error.retryable());
        assert!(
            error.to_string().contains("/nonexistent-gz/missing.py"),
            "{error}"
        );

        let error = run(&pool, PythonJob::default())
            .await
            .expect_err("job without code fails");
        assert_eq!(error.code().as_str(), "GZ7001");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_fails_with_gz2025_and_the_traceback() {
    bounded(async {
        let pool = pool(1).await;
        let job = PythonJob::inline("print('before')\nx = 1\ny = x / 0\nresult = y\n");
        let error = run(&pool, job).await.expect_err("job fails");
        assert_eq!(error.code().as_str(), "GZ2025");
        assert!(!error.retryable());
        let PythonError::Script {
            message,
            traceback,
            line,
            output,
        } = &error
        else {
            panic!("expected a script error, got {error:?}");
        };
        assert_eq!(message, "ZeroDivisionError: division by zero");
        assert!(traceback.contains("line 3"), "{traceback}");
        assert!(traceback.contains("y = x / 0"), "{traceback}");
        assert_eq!(*line, Some(3));
        assert_eq!(output, "before\n");
        assert!(error.to_string().contains("Traceback"), "{error}");
        assert_eq!(
            result_of(&pool, "result = 'recovered'").await,
            json!("recovered")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_fails_with_gz2024_and_the_line() {
    bounded(async {
        let pool = pool(1).await;
        let error = run(&pool, PythonJob::inline("x = 1\nresult = = x\n"))
            .await
            .expect_err("job fails");
        assert_eq!(error.code().as_str(), "GZ2024");
        let PythonError::Syntax { line, detail, .. } = &error else {
            panic!("expected a syntax error, got {error:?}");
        };
        assert_eq!(*line, Some(2));
        assert!(detail.contains("line 2"), "{detail}");
        assert!(detail.contains("result = = x"), "{detail}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_worker_and_the_pool_recovers() {
    bounded(async {
        let dir = scratch_dir("timeout");
        let pid_file = dir.join("pid");
        let pool = pool(1).await;
        let job = PythonJob {
            timeout: Some(Duration::from_secs(1)),
            ..sleeper(&pid_file)
        };
        let started = Instant::now();
        let error = run(&pool, job).await.expect_err("job times out");
        let took = started.elapsed();
        assert_eq!(error.code().as_str(), "GZ2002");
        assert!(error.retryable());
        assert!(took < Duration::from_secs(2), "took {took:?}");

        let pid = pid_written_to(&pid_file, Duration::from_secs(1)).await;
        assert!(!process_exists(pid), "worker {pid} still exists");
        assert_eq!(result_of(&pool, "result = 'next'").await, json!("next"));
        assert_eq!(pool.size(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_kills_its_worker() {
    bounded(async {
        let dir = scratch_dir("cancel");
        let pid_file = dir.join("pid");
        let pool = pool(1).await;
        let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let pool = pool.clone();
            let job = sleeper(&pid_file);
            async move {
                pool.execute(job, async {
                    let _ = cancel_rx.await;
                })
                .await
            }
        });
        let pid = pid_written_to(&pid_file, Duration::from_secs(10)).await;
        assert_eq!(pool.busy(), 1);

        let started = Instant::now();
        cancel_tx.send(()).expect("job still waiting");
        let error = running
            .await
            .expect("task joins")
            .expect_err("job is cancelled");
        assert_eq!(error.code().as_str(), "GZ2006");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!process_exists(pid), "worker {pid} still exists");
        assert_eq!(pool.busy(), 0);
        assert_eq!(result_of(&pool, "result = 'next'").await, json!("next"));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_queued_job_returns_at_once() {
    bounded(async {
        let dir = scratch_dir("cancel-queued");
        let pool = pool(1).await;
        let blocker = tokio::spawn({
            let pool = pool.clone();
            let job = PythonJob {
                timeout: Some(Duration::from_secs(3)),
                ..sleeper(&dir.join("pid"))
            };
            async move { pool.execute(job, pending()).await }
        });
        pid_written_to(&dir.join("pid"), Duration::from_secs(10)).await;
        let started = Instant::now();
        let error = pool
            .execute(
                PythonJob::inline("result = 1"),
                tokio::time::sleep(Duration::from_millis(100)),
            )
            .await
            .expect_err("queued job is cancelled");
        assert_eq!(error.code().as_str(), "GZ2006");
        assert!(started.elapsed() < Duration::from_secs(1));
        let blocked = blocker.await.expect("task joins");
        assert_eq!(
            blocked.expect_err("blocker times out").code().as_str(),
            "GZ2002"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_job_kills_its_worker() {
    bounded(async {
        let dir = scratch_dir("drop");
        let pid_file = dir.join("pid");
        let pool = pool(1).await;
        let abandoned =
            tokio::time::timeout(Duration::from_millis(500), run(&pool, sleeper(&pid_file))).await;
        assert!(abandoned.is_err(), "sleeper should still be running");
        let pid = pid_written_to(&pid_file, Duration::from_secs(1)).await;
        let started = Instant::now();
        while process_exists(pid) {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "worker {pid} survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(result_of(&pool, "result = 'next'").await, json!("next"));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_that_exits_is_replaced() {
    bounded(async {
        let pool = pool(1).await;
        let first_pid = result_of(&pool, "import os\nresult = os.getpid()").await;
        let error = run(&pool, PythonJob::inline("import os\nos._exit(1)"))
            .await
            .expect_err("job fails");
        assert_eq!(error.code().as_str(), "GZ2001");
        assert!(error.retryable());
        assert!(error.to_string().contains("exit status: 1"), "{error}");
        let next_pid = result_of(&pool, "import os\nresult = os.getpid()").await;
        assert_ne!(first_pid, next_pid);
        assert_eq!(pool.size(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_do_not_share_globals() {
    bounded(async {
        let pool = pool(1).await;
        let pid = result_of(&pool, "import os\nleaked = 1\nresult = os.getpid()").await;
        let seen = result_of(
            &pool,
            "import os\nresult = [os.getpid(), 'leaked' in globals(), __name__]",
        )
        .await;
        assert_eq!(seen, json!([pid, false, "__main__"]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_every_worker() {
    bounded(async {
        let pool = pool(2).await;
        let mut pids = Vec::new();
        for _ in 0..10 {
            pids.push(result_of(&pool, "import os\nresult = os.getpid()").await);
        }
        pool.shutdown().await;
        for pid in pids {
            let pid = pid.as_u64().expect("pid is a number");
            assert!(
                !process_exists(pid as u32),
                "worker {pid} survived shutdown"
            );
        }
        let error = run(&pool, PythonJob::inline("result = 1"))
            .await
            .expect_err("pool is closed");
        assert_eq!(error.code().as_str(), "GZ8002");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_jobs_run_concurrently_through_two_workers() {
    bounded(async {
        const JOBS: u64 = 2_000;
        let pool = pool(2).await;
        // Warm up the code cache of both workers.
        for i in 0..4 {
            let job = PythonJob {
                context: json!({"i": i}),
                ..PythonJob::inline("result = context['i'] * 2")
            };
            run(&pool, job).await.expect("warm-up job succeeds");
        }

        let started = Instant::now();
        let mut jobs = tokio::task::JoinSet::new();
        for i in 0..JOBS {
            let pool = pool.clone();
            jobs.spawn(async move {
                let job = PythonJob {
                    id: format!("job-{i}"),
                    context: json!({"i": i}),
                    ..PythonJob::inline("result = context['i'] * 2")
                };
                (i, pool.execute(job, pending()).await)
            });
        }
        let mut done = 0;
        while let Some(joined) = jobs.join_next().await {
            let (i, outcome) = joined.expect("task joins");
            assert_eq!(outcome.expect("job succeeds").result, json!(i * 2));
            done += 1;
        }
        let concurrent = started.elapsed();
        assert_eq!(done, JOBS);

        let started = Instant::now();
        for i in 0..JOBS {
            let job = PythonJob {
                context: json!({"i": i}),
                ..PythonJob::inline("result = context['i'] * 2")
            };
            assert_eq!(
                run(&pool, job).await.expect("job succeeds").result,
                json!(i * 2)
            );
        }
        let sequential = started.elapsed();
        eprintln!(
            "python pool of 2: {JOBS} concurrent jobs in {concurrent:?} ({:.0} jobs/s); \
             one at a time in {sequential:?} ({:.0} jobs/s)",
            JOBS as f64 / concurrent.as_secs_f64(),
            JOBS as f64 / sequential.as_secs_f64(),
        );
        assert_eq!(pool.busy(), 0);
    })
    .await;
}

/// Two jobs submitted together to a one-worker pool (a current-thread runtime runs nothing
/// else before both are queued): the second is sent to wait in the worker's pipe.
fn behind(dir: &Path, first_code: &str, first_timeout: Option<Duration>) -> (PythonJob, PythonJob) {
    let first = PythonJob {
        context: json!({ "pid_file": dir.join("pid") }),
        timeout: first_timeout,
        ..PythonJob::inline(format!(
            "import os\nwith open(context['pid_file'], 'w') as f:\n    f.write(str(os.getpid()))\n{first_code}"
        ))
    };
    let second = PythonJob {
        context: json!({ "marker": dir.join("second-ran") }),
        ..PythonJob::inline(
            "import os\nopen(context['marker'], 'w').write('x')\nresult = os.getpid()",
        )
    };
    (first, second)
}

#[tokio::test]
async fn a_job_cancelled_while_it_waits_behind_a_running_one_never_runs() {
    bounded(async {
        let dir = scratch_dir("skip-behind");
        let pool = pool(1).await;
        let (first, second) = behind(
            &dir,
            "import time\ntime.sleep(0.5)\nresult = os.getpid()",
            None,
        );
        let pid_file = dir.join("pid");
        let (ran, cancelled) = tokio::join!(
            pool.execute(first, pending()),
            pool.execute(second, async {
                pid_written_to(&pid_file, Duration::from_secs(10)).await;
            })
        );
        let pid = ran.expect("the first job runs").result;
        let error = cancelled.expect_err("the second is cancelled");
        assert_eq!(error.code().as_str(), "GZ2006");
        assert!(
            !dir.join("second-ran").exists(),
            "the cancelled job never ran"
        );
        // Its worker was not killed for it: the next job runs in the same process.
        assert_eq!(
            result_of(&pool, "import os\nresult = os.getpid()").await,
            pid
        );
        assert_eq!(pool.busy(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test]
async fn a_job_waiting_behind_one_that_times_out_runs_on_the_new_worker() {
    bounded(async {
        let dir = scratch_dir("timeout-behind");
        let pool = pool(1).await;
        let (first, second) = behind(
            &dir,
            "import time\ntime.sleep(30)",
            Some(Duration::from_millis(500)),
        );
        let (timed_out, ran) = tokio::join!(
            pool.execute(first, pending()),
            pool.execute(second, pending())
        );
        assert_eq!(
            timed_out.expect_err("the first times out").code().as_str(),
            "GZ2002"
        );
        let first_pid: u32 = std::fs::read_to_string(dir.join("pid"))
            .expect("pid written")
            .parse()
            .expect("a pid");
        let second_pid = ran.expect("the second runs").result;
        assert!(dir.join("second-ran").exists());
        assert_ne!(second_pid, json!(first_pid), "it ran on the replacement");
        assert!(!process_exists(first_pid));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test]
async fn a_large_job_behind_a_running_one_waits_its_turn_and_runs() {
    bounded(async {
        let dir = scratch_dir("large-behind");
        let pool = pool(1).await;
        let (first, mut second) = behind(&dir, "result = 1", None);
        // Larger than what is sent to wait in a pipe.
        second.context["padding"] = json!("x".repeat(64 * 1024));
        let (a, b) = tokio::join!(
            pool.execute(first, pending()),
            pool.execute(second, pending())
        );
        assert_eq!(a.expect("first runs").result, json!(1));
        b.expect("second runs");
        assert!(dir.join("second-ran").exists());
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test]
async fn after_quick_jobs_several_wait_in_the_pipe_and_a_cancelled_one_never_runs() {
    bounded(async {
        let dir = scratch_dir("skip-deep");
        let pool = pool(1).await;
        // Quick jobs first: the slot's jobs then run in well under the pipelining window,
        // so the next ones are sent several at a time.
        for _ in 0..20 {
            assert_eq!(result_of(&pool, "result = 1").await, json!(1));
        }
        let (first, _) = behind(
            &dir,
            "import time\ntime.sleep(0.5)\nresult = os.getpid()",
            None,
        );
        let marked = |name: &str| PythonJob {
            context: json!({ "marker": dir.join(name) }),
            ..PythonJob::inline(
                "import os\nopen(context['marker'], 'w').write('x')\nresult = os.getpid()",
            )
        };
        let pid_file = dir.join("pid");
        let (a, b, c, d) = tokio::join!(
            pool.execute(first, pending()),
            pool.execute(marked("b-ran"), pending()),
            // The third job, behind the second: cancelled while the first runs.
            pool.execute(marked("c-ran"), async {
                pid_written_to(&pid_file, Duration::from_secs(10)).await;
            }),
            pool.execute(marked("d-ran"), pending()),
        );
        let pid = a.expect("the first job runs").result;
        assert_eq!(b.expect("the second runs").result, pid, "same worker");
        let error = c.expect_err("the third is cancelled");
        assert_eq!(error.code().as_str(), "GZ2006");
        assert_eq!(
            d.expect("the fourth runs").result,
            pid,
            "the worker was kept"
        );
        assert!(dir.join("b-ran").exists() && dir.join("d-ran").exists());
        assert!(!dir.join("c-ran").exists(), "the cancelled job never ran");
        assert_eq!(pool.busy(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
