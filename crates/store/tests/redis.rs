//! The Redis store: the shared contract suite (`contract/mod.rs`), each test on a
//! `redis-server` of its own (started by `gleitzeit-launcher` on 127.0.0.1, killed when the test ends,
//! even by a panic) with a unique key prefix; plus what only Redis has: reconnecting after a
//! restart (with the data kept by AOF), an unreachable server (`GZ1001`), passwords,
//! concurrent creators, prefixes, corrupt data, and the 100,000-task timing.
//!
//! `redis-server` must be on PATH: without it these tests fail (they do not skip).

#[macro_use]
mod contract;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Barrier;
use std::time::Duration;

use contract::{task, task_ids, workflow, TempDir};
use gleitzeit_store::{RedisStore, Store, StoreError, TaskStatus, WorkflowStatus};
use serde_json::json;

/// A `redis-server` of the test's own, started through the one launcher of the project
/// (`gleitzeit-launcher`: a port of its own, ready once it answers `PING` with its data
/// loaded), killed when dropped.
struct RedisServer(gleitzeit_launcher::RedisServer);

impl RedisServer {
    /// A throw-away server: no snapshots, no AOF.
    fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"], None)
    }

    /// A server with `args` on `port` (a port of its own if `None`).
    fn start_with(args: &[&str], port: Option<u16>) -> Self {
        let logs = std::env::temp_dir().join("gz-store-redis-logs");
        let started = match port {
            Some(port) => gleitzeit_launcher::RedisServer::start_on(port, args, &logs),
            None => gleitzeit_launcher::RedisServer::start(args, &logs),
        };
        RedisServer(started.unwrap_or_else(|e| {
            panic!(
                "redis-server did not start: {e} (the Redis store tests need it on PATH, \
                 e.g. `apt-get install redis-server`)"
            )
        }))
    }

    fn port(&self) -> u16 {
        self.0.port()
    }

    fn url(&self) -> String {
        self.0.url()
    }

    /// Stops the server with SIGTERM (so that it flushes its AOF) and waits for it.
    fn terminate(mut self) {
        let status = self.0.process().terminate(Duration::from_secs(10));
        assert!(status.is_some(), "redis-server ignored SIGTERM");
    }
}

/// A key prefix no other test uses.
fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{}-{}:",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on a server of its own; the store is dropped before the server.
struct Fixture {
    store: RedisStore,
    server: RedisServer,
}

impl std::ops::Deref for Fixture {
    type Target = RedisStore;

    fn deref(&self) -> &RedisStore {
        &self.store
    }
}

fn redis() -> Fixture {
    let server = RedisServer::start();
    let store = RedisStore::open_with_prefix(&server.url(), &unique_prefix()).expect("open");
    Fixture { store, server }
}

/// A plain connection to the fixture's server, to look at or damage the raw keys.
fn raw(fixture: &Fixture) -> redis::Connection {
    redis::Client::open(fixture.server.url())
        .and_then(|client| client.get_connection())
        .expect("raw connection")
}

contract_tests!(redis());

fn expect_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
    match result {
        Err(err @ StoreError::Unavailable(_)) => {
            assert_eq!(
                err.code(),
                gleitzeit_protocol::errors::ErrorCode::RedisUnavailable
            );
            let message = err.to_string();
            assert!(message.contains(needle), "`{message}` lacks `{needle}`");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn data_survives_a_restart_and_the_same_store_reconnects() {
    let dir = TempDir::new("redis-aof");
    std::fs::create_dir_all(dir.path()).expect("create the data dir");
    let persistent = |port: Option<u16>, dir: &Path| {
        let dir = dir.display().to_string();
        RedisServer::start_with(&["--save", "", "--appendonly", "yes", "--dir", &dir], port)
    };
    let server = persistent(None, dir.path());
    let port = server.port();
    let url = server.url();
    let store = RedisStore::open(&url).expect("open");
    let info = store.info();
    assert_eq!(
        (info.kind.as_str(), info.location.as_str()),
        ("redis", url.as_str())
    );
    assert!(info.healthy);

    let wf = workflow("wf", 42, WorkflowStatus::Running);
    let mut done = task("wf", "a");
    done.status = TaskStatus::Completed;
    done.result = Some(gleitzeit_store::JsonText::of_value(&json!({ "ok": true })));
    store
        .create_workflow(&wf, &[task("wf", "a"), task("wf", "b")])
        .expect("create");
    store
        .apply(&[], std::slice::from_ref(&done))
        .expect("apply");

    server.terminate();
    expect_unavailable(store.workflow("wf"), &format!("127.0.0.1:{port}"));
    assert!(!store.info().healthy);

    let _server = persistent(Some(port), dir.path());
    // The same store value: the broken connection is replaced without an error.
    assert_eq!(
        store.workflow("wf").expect("read after restart"),
        Some(wf.clone())
    );
    assert_eq!(store.tasks("wf").expect("tasks"), [done, task("wf", "b")]);
    assert!(store.info().healthy);
    let err = store.create_workflow(&wf, &[]).expect_err("still there");
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    store
        .apply(&[], &[task("wf", "c")])
        .expect("apply after restart");
    assert_eq!(
        task_ids(&store.tasks("wf").expect("tasks")),
        ["a", "b", "c"]
    );
}

#[test]
fn an_unreachable_server_is_unavailable_with_gz1001() {
    let port = gleitzeit_launcher::redis::unused_port();
    let url = format!("redis://user:s3cret@127.0.0.1:{port}/0");
    let err = RedisStore::open(&url).expect_err("nothing listens there");
    let message = err.to_string();
    assert!(!message.contains("s3cret"), "the password leaks: {message}");
    expect_unavailable(
        Err::<(), _>(err),
        &format!("redis://user:***@127.0.0.1:{port}/0"),
    );

    let err = RedisStore::open("http://not-redis").expect_err("not a Redis URL");
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    assert_eq!(
        err.code(),
        gleitzeit_protocol::errors::ErrorCode::StoreFailed
    );
}

#[test]
fn passwords_are_used_and_masked() {
    let server = RedisServer::start_with(
        &[
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "s3cret",
        ],
        None,
    );
    let url = format!("redis://:s3cret@127.0.0.1:{}/", server.port());
    let store = RedisStore::open_with_prefix(&url, &unique_prefix()).expect("open");
    let info = store.info();
    assert_eq!(
        info.location,
        format!("redis://:***@127.0.0.1:{}/", server.port())
    );
    assert!(info.healthy);
    store
        .create_workflow(&workflow("wf", 1, WorkflowStatus::Pending), &[])
        .expect("create");

    let wrong = format!("redis://:wrong@127.0.0.1:{}/", server.port());
    let err = RedisStore::open(&wrong).expect_err("wrong password");
    assert!(!err.to_string().contains("wrong"), "{err}");
}

/// Two stores (two connections) race to create the same workflows: exactly one wins each
/// time, and the stored tasks are all the winner's.
#[test]
fn concurrent_creators_cannot_both_create_a_workflow() {
    race_to_create(20, 500);
}

/// The same race with workflows big enough to be staged in several calls: the loser's
/// staged tasks are deleted and never mix with the winner's.
#[test]
fn concurrent_creators_of_staged_workflows_cannot_both_create_one() {
    let fixture = race_to_create(3, gleitzeit_store::redis::STAGE_CHUNK * 2 + 7);
    assert_eq!(staging_keys(&fixture), Vec::<String>::new());
}

/// `rounds` races of two stores creating the same workflow of `size` tasks.
fn race_to_create(rounds: usize, size: usize) -> Fixture {
    let fixture = redis();
    let other = RedisStore::open_with_prefix(&fixture.server.url(), fixture.prefix())
        .expect("second store");
    let barrier = Barrier::new(2);
    let race = |store: &RedisStore, me: &str| -> Vec<bool> {
        (0..rounds)
            .map(|round| {
                let id = format!("wf-{round}");
                let mut wf = workflow(&id, 1, WorkflowStatus::Pending);
                wf.name = me.to_string();
                let tasks: Vec<_> = (0..size)
                    .map(|i| {
                        let mut t = task(&id, &format!("t{i}"));
                        t.method = me.into();
                        t
                    })
                    .collect();
                barrier.wait();
                match store.create_workflow(&wf, &tasks) {
                    Ok(()) => true,
                    Err(StoreError::AlreadyExists { .. }) => false,
                    Err(e) => panic!("create failed: {e}"),
                }
            })
            .collect()
    };
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| race(&fixture, "first"));
        let second = scope.spawn(|| race(&other, "second"));
        (
            first.join().expect("first creator"),
            second.join().expect("second creator"),
        )
    });
    for round in 0..rounds {
        assert!(
            first[round] != second[round],
            "round {round}: exactly one wins"
        );
        let id = format!("wf-{round}");
        let winner = if first[round] { "first" } else { "second" };
        let wf = fixture.workflow(&id).expect("read").expect("exists");
        assert_eq!(wf.name, winner);
        let tasks = fixture.tasks(&id).expect("tasks");
        assert_eq!(tasks.len(), size);
        assert!(tasks.iter().all(|t| &*t.method == winner), "round {round}");
    }
    fixture
}

/// The staging keys under the fixture's prefix.
fn staging_keys(fixture: &Fixture) -> Vec<String> {
    let mut conn = raw(fixture);
    redis::cmd("KEYS")
        .arg(format!("{}stage*", fixture.prefix()))
        .query(&mut conn)
        .expect("KEYS")
}

/// A workflow of more tasks than one call carries is staged and then created whole: its
/// tasks in order, its keys without an expiry, no staging keys left; a second creation of
/// the same id, or a resubmission under the same idempotency key, deletes what it staged.
#[test]
fn big_workflows_are_staged_then_created_whole() {
    use gleitzeit_store::{Creation, Idempotency};
    let fixture = redis();
    let size = gleitzeit_store::redis::STAGE_CHUNK * 2 + 1;
    let tasks_of = |id: &str, method: &str| -> Vec<_> {
        (0..size)
            .map(|i| {
                let mut t = task(id, &format!("t{i}"));
                t.method = method.into();
                t
            })
            .collect()
    };
    let key = Idempotency {
        key: "big-key",
        fingerprint: "spec-1",
    };
    let created = fixture
        .create_workflow_once(
            &key,
            &workflow("big", 1, WorkflowStatus::Pending),
            &tasks_of("big", "first"),
        )
        .expect("create");
    assert_eq!(created, Creation::Created);
    let stored = fixture.tasks("big").expect("tasks");
    let expected: Vec<String> = (0..size).map(|i| format!("t{i}")).collect();
    assert_eq!(task_ids(&stored), expected);
    let mut conn = raw(&fixture);
    for kind in ["tasks", "order"] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{}{kind}:big", fixture.prefix()))
            .query(&mut conn)
            .expect("PTTL");
        assert_eq!(ttl, -1, "{kind} keeps no expiry");
    }
    assert_eq!(staging_keys(&fixture), Vec::<String>::new());

    let again = fixture.create_workflow(
        &workflow("big", 2, WorkflowStatus::Pending),
        &tasks_of("big", "second"),
    );
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    let resubmitted = fixture
        .create_workflow_once(
            &key,
            &workflow("big-2", 2, WorkflowStatus::Pending),
            &tasks_of("big-2", "second"),
        )
        .expect("resubmit");
    assert_eq!(
        resubmitted,
        Creation::Existing {
            workflow_id: "big".to_string()
        }
    );
    assert_eq!(staging_keys(&fixture), Vec::<String>::new());
    assert_eq!(fixture.workflow("big-2").expect("read"), None);
    let stored = fixture.tasks("big").expect("tasks");
    assert_eq!(stored.len(), size);
    assert!(stored.iter().all(|t| &*t.method == "first"));
}

#[test]
fn prefixes_keep_stores_apart() {
    let fixture = redis();
    let other = RedisStore::open_with_prefix(&fixture.server.url(), "other:").expect("open");
    fixture
        .create_workflow(
            &workflow("wf", 1, WorkflowStatus::Running),
            &[task("wf", "a")],
        )
        .expect("create");
    other
        .create_workflow(&workflow("wf", 2, WorkflowStatus::Pending), &[])
        .expect("the same id under another prefix");
    assert_eq!(other.tasks("wf").expect("tasks"), []);
    assert_eq!(other.task(None, "a").expect("lookup"), None);
    assert_eq!(
        fixture
            .workflow("wf")
            .expect("read")
            .map(|wf| wf.created_at),
        Some(1)
    );
    assert_eq!(other.unfinished_workflows().expect("unfinished").len(), 1);
}

#[test]
fn corrupt_data_is_a_corrupt_error() {
    let fixture = redis();
    fixture
        .create_workflow(
            &workflow("wf", 1, WorkflowStatus::Running),
            &[task("wf", "a")],
        )
        .expect("create");
    let mut conn = raw(&fixture);
    let p = fixture.prefix().to_string();
    let mut damage = |args: &[&str]| {
        redis::cmd(args[0])
            .arg(&args[1..])
            .query::<()>(&mut conn)
            .expect("damage the data");
    };
    let expect_corrupt = |result: Result<_, StoreError>, needle: &str| match result {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(needle), "`{message}` lacks `{needle}`")
        }
        other => panic!("expected a Corrupt error, got {other:?}"),
    };

    damage(&["HSET", &format!("{p}tasks:wf"), "a", "{not json"]);
    expect_corrupt(fixture.tasks("wf").map(drop), "task `wf/a`: invalid record");
    expect_corrupt(fixture.task(None, "a").map(drop), "task `wf/a`");
    damage(&[
        "HSET",
        &format!("{p}tasks:wf"),
        "a",
        r#"{"name":"a","method":"m","status":"exploded","priority":0,"attempts":0}"#,
    ]);
    expect_corrupt(fixture.task(Some("wf"), "a").map(drop), "exploded");
    damage(&[
        "HSET",
        &format!("{p}tasks:wf"),
        "a",
        r#"{"name":"a","method":"m","status":"pending","priority":0,"attempts":5000000000}"#,
    ]);
    expect_corrupt(fixture.task(Some("wf"), "a").map(drop), "task `wf/a`");
    damage(&["RPUSH", &format!("{p}order:wf"), "ghost"]);
    expect_corrupt(fixture.tasks("wf").map(drop), "tasks of `wf`");

    damage(&["SET", &format!("{p}spec:wf"), "["]);
    expect_corrupt(
        fixture.workflow("wf").map(drop),
        "workflow `wf`: field `spec`",
    );
    // Listing does not read the spec, so it still works.
    assert_eq!(fixture.list_workflows(10, None).expect("list").len(), 1);
    expect_corrupt(fixture.unfinished_workflows().map(drop), "field `spec`");

    damage(&["HSET", &format!("{p}wf:wf"), "created_at", "-5"]);
    expect_corrupt(
        fixture.list_workflows(10, None).map(drop),
        "field `created_at`",
    );
    damage(&[
        "HSET",
        &format!("{p}wf:wf"),
        "created_at",
        "5",
        "status",
        "7",
    ]);
    expect_corrupt(fixture.list_workflows(10, None).map(drop), "field `status`");
    damage(&["HDEL", &format!("{p}wf:wf"), "name"]);
    expect_corrupt(
        fixture.list_workflows(10, None).map(drop),
        "`name` is missing",
    );

    damage(&["ZADD", &format!("{p}workflows"), "0", "garbage"]);
    expect_corrupt(
        fixture.list_workflows(10, None).map(drop),
        "index entry `garbage`",
    );
    damage(&[
        "ZADD",
        &format!("{p}status:cancelled"),
        "0",
        &format!("{:020}:{:020}:gone", 9, 9),
    ]);
    expect_corrupt(
        fixture
            .list_workflows(10, Some(WorkflowStatus::Cancelled))
            .map(drop),
        "workflow `gone`, which has no record",
    );
}

#[test]
fn timing_100k_tasks() {
    contract::timing_100k_tasks(&*redis(), "redis");
}

#[test]
fn one_owner_at_a_time_and_ownership_expires() {
    let fixture = redis();
    let other = RedisStore::open_with_prefix(&fixture.server.url(), fixture.prefix())
        .expect("second store");
    let long = std::time::Duration::from_secs(30);
    assert!(fixture.claim("wf-1", "qm-a", long).expect("claim"));
    assert!(
        !other.claim("wf-1", "qm-b", long).expect("claim"),
        "held by qm-a"
    );
    assert!(
        fixture.claim("wf-1", "qm-a", long).expect("renew"),
        "the owner renews"
    );
    other
        .release("wf-1", "qm-b")
        .expect("release by a non-owner changes nothing");
    assert!(!other.claim("wf-1", "qm-b", long).expect("claim"));
    fixture.release("wf-1", "qm-a").expect("release");
    assert!(other
        .claim("wf-1", "qm-b", long)
        .expect("claim after release"));
    assert!(fixture
        .claim("wf-2", "qm-a", std::time::Duration::from_millis(100))
        .expect("claim"));
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert!(other
        .claim("wf-2", "qm-b", long)
        .expect("takeover after expiry"));
}

/// Counting a big workflow's tasks by status, and a page of those of one status, walk it a
/// page of ids at a time; the figures are those of the whole workflow, across page bounds.
#[test]
fn big_workflows_are_counted_and_filtered_across_read_pages() {
    let fixture = redis();
    let size = gleitzeit_store::redis::READ_PAGE * 2 + 3;
    let statuses = [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Pending,
    ];
    let tasks: Vec<_> = (0..size)
        .map(|i| {
            let mut t = task("wf", &format!("t{i}"));
            t.status = statuses[i % 3];
            t
        })
        .collect();
    fixture
        .create_workflow(&workflow("wf", 1, WorkflowStatus::Running), &tasks)
        .expect("create");
    let mut counts = fixture.task_counts("wf").expect("counts");
    counts.sort_by_key(|(status, _)| status.as_str());
    assert_eq!(
        counts,
        [
            (TaskStatus::Completed, size.div_ceil(3)),
            (TaskStatus::Failed, (size + 1) / 3),
            (TaskStatus::Pending, size / 3),
        ]
    );
    // The failed tasks from the 1,600th on: t4801, t4804, ... past the first page's end.
    let offset = 1_600;
    let page = fixture
        .tasks_page("wf", Some(TaskStatus::Failed), offset, 400)
        .expect("page");
    let expected: Vec<String> = (0..400)
        .map(|k| format!("t{}", 3 * (offset + k) + 1))
        .collect();
    assert_eq!(task_ids(&page), expected);
    assert!(page.iter().all(|t| t.status == TaskStatus::Failed));
    let tail = fixture
        .tasks_page("wf", Some(TaskStatus::Completed), size.div_ceil(3) - 1, 10)
        .expect("tail");
    assert_eq!(task_ids(&tail), [format!("t{}", size - 1)]);
}
