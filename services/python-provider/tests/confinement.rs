//! Confinement of python jobs against a real `python3`: path escapes, rlimits, the process
//! tree killed on timeout, leftovers killed after a job, the output cap and the default
//! timeout.

use std::future::{pending, Future};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use python_provider::pool::{
    Limits, PathPolicy, PoolConfig, PythonError, PythonJob, PythonOutcome, PythonPool,
};
use python_provider::reap::is_alive;
use serde_json::{json, Value};

/// Upper bound for any single test.
const TEST_LIMIT: Duration = Duration::from_secs(60);

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test took too long")
}

async fn pool_with(config: PoolConfig) -> PythonPool {
    PythonPool::start(PoolConfig { size: 1, ..config })
        .await
        .expect("pool starts")
}

async fn run(pool: &PythonPool, job: PythonJob) -> Result<PythonOutcome, PythonError> {
    pool.execute(job, pending()).await
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gz-confine-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Waits until every pid is gone (a zombie counts as gone), failing after `within`.
async fn all_dead(pids: &[u32], within: Duration) {
    let start = Instant::now();
    while let Some(p) = pids.iter().find(|p| is_alive(**p)) {
        assert!(start.elapsed() < within, "process {p} survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads whitespace-separated pids from `file` once it holds `count` of them.
async fn pids_in(file: &Path, count: usize) -> Vec<u32> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let pids: Vec<u32> = text
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.len() >= count {
                return pids;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pids never written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_roots_are_refused_without_reading_them() {
    bounded(async {
        let dir = scratch_dir("escape");
        let workflow = dir.join("workflow");
        std::fs::create_dir_all(&workflow).expect("workflow dir");
        std::fs::write(dir.join("outside.py"), "SECRET_LINE = = 1\n").expect("write");
        std::os::unix::fs::symlink(dir.join("outside.py"), workflow.join("link.py"))
            .expect("symlink");
        std::fs::write(workflow.join("ok.py"), "result = 'inside'\n").expect("write");
        let pool = pool_with(PoolConfig {
            paths: PathPolicy::new(&[], true),
            ..PoolConfig::default()
        })
        .await;
        let in_workflow = |job: PythonJob| PythonJob {
            base_dir: Some(workflow.clone()),
            ..job
        };

        for file in [
            "../outside.py",
            "link.py",
            "/etc/passwd",
            "../../../../etc/passwd",
        ] {
            let error = run(&pool, in_workflow(PythonJob::script(file)))
                .await
                .expect_err(file);
            assert_eq!(error.code().as_str(), "GZ2023", "{file}: {error}");
            let text = format!("{error:?}");
            assert!(
                !text.contains("SECRET_LINE") && !text.contains("root:"),
                "{text}"
            );
        }
        for cwd in ["..", "/etc", "../.."] {
            let job = PythonJob {
                cwd: Some(PathBuf::from(cwd)),
                ..in_workflow(PythonJob::inline("result = 1"))
            };
            let error = run(&pool, job).await.expect_err(cwd);
            assert_eq!(error.code().as_str(), "GZ2023", "{cwd}: {error}");
        }
        let inside = run(&pool, in_workflow(PythonJob::script("ok.py")))
            .await
            .expect("a script inside the workflow folder runs");
        assert_eq!(inside.result, json!("inside"));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syntax_error_in_a_script_names_the_line_but_never_quotes_the_file() {
    bounded(async {
        let dir = scratch_dir("syntax");
        std::fs::write(dir.join("bad.py"), "x = 1\nSECRET_TOKEN = = 2\n").expect("write");
        let pool = pool_with(PoolConfig::default()).await;
        let job = PythonJob {
            base_dir: Some(dir.clone()),
            ..PythonJob::script("bad.py")
        };
        let error = run(&pool, job).await.expect_err("syntax error");
        assert_eq!(error.code().as_str(), "GZ2024");
        let PythonError::Syntax { line, detail, .. } = &error else {
            panic!("expected a syntax error, got {error:?}");
        };
        assert_eq!(*line, Some(2));
        assert!(detail.contains("bad.py\", line 2"), "{detail}");
        assert!(!detail.contains("SECRET_TOKEN"), "{detail}");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_gib_allocation_fails_with_gz2027_and_the_worker_survives() {
    bounded(async {
        let pool = pool_with(PoolConfig::default()).await;
        let pid = run(&pool, PythonJob::inline("import os\nresult = os.getpid()"))
            .await
            .expect("pid")
            .result;
        let error = run(&pool, PythonJob::inline("block = bytearray(8 << 30)\n"))
            .await
            .expect_err("allocation fails");
        assert_eq!(error.code().as_str(), "GZ2027", "{error}");
        assert!(error.to_string().contains("MemoryError"), "{error}");
        let after = run(&pool, PythonJob::inline("import os\nresult = os.getpid()"))
            .await
            .expect("the same worker runs the next job");
        assert_eq!(after.result, pid);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_past_the_file_size_limit_fails_with_gz2027() {
    bounded(async {
        let dir = scratch_dir("fsize");
        let pool = pool_with(PoolConfig {
            limits: Limits {
                file_size: Some(1 << 20),
                ..Limits::default()
            },
            ..PoolConfig::default()
        })
        .await;
        let job = PythonJob {
            context: json!({ "path": dir.join("big.bin") }),
            ..PythonJob::inline(
                "with open(context['path'], 'wb') as f:\n    f.write(b'x' * (2 << 20))\n",
            )
        };
        let error = run(&pool, job).await.expect_err("write fails");
        assert_eq!(error.code().as_str(), "GZ2027", "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// A job that starts a child in a new session and a double-forked daemon (both escape its
/// process group; the daemon is orphaned), writes their pids, and then `tail`s.
fn escaping_job(pid_file: &Path, tail: &str) -> PythonJob {
    PythonJob {
        context: json!({ "pid_file": pid_file }),
        ..PythonJob::inline(format!(
            "import os, subprocess, time\n\
             child = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n\
             r, w = os.pipe()\n\
             if os.fork() == 0:\n\
             \x20   os.setsid()\n\
             \x20   if os.fork() == 0:\n\
             \x20       os.write(w, str(os.getpid()).encode())\n\
             \x20       time.sleep(1000)\n\
             \x20   os._exit(0)\n\
             daemon = int(os.read(r, 32))\n\
             with open(context['pid_file'], 'w') as f:\n\
             \x20   f.write('%d %d' % (child.pid, daemon))\n\
             {tail}\n"
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_every_process_the_job_started() {
    bounded(async {
        let dir = scratch_dir("tree");
        let pid_file = dir.join("pids");
        let pool = pool_with(PoolConfig::default()).await;
        let job = PythonJob {
            timeout: Some(Duration::from_secs(2)),
            ..escaping_job(&pid_file, "time.sleep(1000)")
        };
        let error = run(&pool, job).await.expect_err("times out");
        assert_eq!(error.code().as_str(), "GZ2002");
        let pids = pids_in(&pid_file, 2).await;
        all_dead(&pids, Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_a_job_leaves_behind_are_killed_when_it_ends() {
    bounded(async {
        let dir = scratch_dir("leftovers");
        let pid_file = dir.join("pids");
        let pool = pool_with(PoolConfig::default()).await;
        run(&pool, escaping_job(&pid_file, "result = 'done'"))
            .await
            .expect("job succeeds");
        let pids = pids_in(&pid_file, 2).await;
        all_dead(&pids, Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_kills_its_process_tree() {
    bounded(async {
        let dir = scratch_dir("cancel-tree");
        let pid_file = dir.join("pids");
        let pool = pool_with(PoolConfig::default()).await;
        let watched = pid_file.clone();
        let cancel = async move {
            pids_in(&watched, 2).await;
        };
        let error = pool
            .execute(escaping_job(&pid_file, "time.sleep(1000)"), cancel)
            .await
            .expect_err("cancelled");
        assert_eq!(error.code().as_str(), "GZ2006");
        let pids = pids_in(&pid_file, 2).await;
        all_dead(&pids, Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printing_100_mb_is_cut_at_the_limit_and_fails_with_gz2026() {
    bounded(async {
        let limit = 256 << 10;
        let pool = pool_with(PoolConfig {
            limits: Limits {
                max_output: limit,
                ..Limits::default()
            },
            ..PoolConfig::default()
        })
        .await;
        let job =
            PythonJob::inline("chunk = 'x' * (1 << 20)\nfor _ in range(100):\n    print(chunk)\n");
        let error = run(&pool, job).await.expect_err("too large");
        assert_eq!(error.code().as_str(), "GZ2026", "{error}");
        let PythonError::OutputTooLarge { output, .. } = &error else {
            panic!("expected output too large, got {error:?}");
        };
        assert!(
            output.len() <= 64 << 10,
            "an excerpt, not {} bytes",
            output.len()
        );
        assert!(output.starts_with("xxxx"));
        assert!(
            output.ends_with("bytes]"),
            "{}",
            &output[output.len() - 40..]
        );
        assert!(output.contains("\u{2026}[truncated "));

        let error = run(&pool, PythonJob::inline("result = 'y' * (1 << 20)"))
            .await
            .expect_err("result too large");
        assert_eq!(error.code().as_str(), "GZ2026", "{error}");

        let error = run(
            &pool,
            PythonJob::inline("raise ValueError('z' * (1 << 20))"),
        )
        .await
        .expect_err("huge exception");
        assert_eq!(error.code().as_str(), "GZ2025", "{error}");
        assert!(error.to_string().len() < limit + 4096);

        let fine = run(&pool, PythonJob::inline("print('small')\nresult = 1"))
            .await
            .expect("the worker goes on");
        assert_eq!(
            (fine.result, fine.output.as_str()),
            (Value::from(1), "small\n")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_timeout_applies_to_jobs_without_one() {
    bounded(async {
        let pool = pool_with(PoolConfig {
            default_timeout: Some(Duration::from_secs(1)),
            ..PoolConfig::default()
        })
        .await;
        let started = Instant::now();
        let error = run(&pool, PythonJob::inline("import time\ntime.sleep(30)"))
            .await
            .expect_err("times out");
        assert_eq!(error.code().as_str(), "GZ2002");
        assert!(started.elapsed() < Duration::from_secs(5));
    })
    .await;
}
