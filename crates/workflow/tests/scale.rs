//! The graph algorithms stay linear on workflows of 100,000 tasks (and chains that deep).

use std::time::{Duration, Instant};

use gleitzeit_workflow::{
    find_cycle, prepare_spec, topological_order, Dag, MethodCatalog, OnFailure, Priority,
    RetryPolicy, TaskSpec, WorkflowSpec,
};
use serde_json::json;

const N: usize = 100_000;

fn task(id: String, dependencies: Vec<String>, parameters: serde_json::Value) -> TaskSpec {
    TaskSpec {
        name: id.clone(),
        id,
        method: "python/execute".to_string(),
        protocol: "python/v1".to_string(),
        parameters,
        dependencies,
        priority: Priority::Normal,
        timeout: None,
        retry: RetryPolicy::default(),
        files: Default::default(),
        tolerate_failures: false,
        batch: None,
    }
}

fn workflow(tasks: Vec<TaskSpec>) -> WorkflowSpec {
    WorkflowSpec {
        id: None,
        name: "big".to_string(),
        description: None,
        metadata: json!({}),
        timeout: None,
        on_failure: OnFailure::Fail,
        tasks,
        attachments: Default::default(),
    }
}

/// t0 <- t1 <- t2 <- ... : each task depends on the one before.
fn chain() -> WorkflowSpec {
    workflow(
        (0..N)
            .map(|i| {
                let deps = if i == 0 {
                    vec![]
                } else {
                    vec![format!("t{}", i - 1)]
                };
                task(format!("t{i}"), deps, json!({"code": "result = 1"}))
            })
            .collect(),
    )
}

/// One root, N - 2 tasks depending on it, and one task depending on all of them.
fn wide() -> WorkflowSpec {
    let mut tasks = vec![task("root".into(), vec![], json!({"code": "x"}))];
    for i in 1..N - 1 {
        tasks.push(task(
            format!("w{i}"),
            vec!["root".into()],
            json!({"code": "x"}),
        ));
    }
    let all: Vec<String> = (1..N - 1).map(|i| format!("w{i}")).collect();
    tasks.push(task("sink".into(), all, json!({"code": "x"})));
    workflow(tasks)
}

/// Runs `f` and fails if it took more than 20 times `limit`. This guards against quadratic
/// work (at 100,000 tasks that is minutes, not seconds), not against a slow machine: the
/// margin absorbs a loaded CI host and an unoptimised build. Speed itself is measured by
/// `gz bench`, not here.
fn timed<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(
        took < limit * 20,
        "{what} took {took:?} (expected about {limit:?})"
    );
    out
}

#[test]
fn a_100k_chain_orders_without_recursion() {
    let spec = chain();
    let order = timed(
        "topological order of a chain",
        Duration::from_secs(1),
        || topological_order(&spec).expect("acyclic"),
    );
    assert_eq!(order, (0..N).collect::<Vec<_>>());
    assert!(
        timed("cycle search on a chain", Duration::from_secs(1), || {
            find_cycle(&spec)
        })
        .is_none()
    );
}

#[test]
fn a_100k_wide_graph_orders_quickly() {
    let spec = wide();
    let dag = timed("building a wide graph", Duration::from_secs(1), || {
        Dag::from_spec(&spec)
    });
    assert_eq!(dag.dependents(0).len(), N - 2);
    assert_eq!(dag.dependencies(N - 1).len(), N - 2);
    let order = timed(
        "topological order of a wide graph",
        Duration::from_secs(1),
        || dag.topological_order().expect("acyclic"),
    );
    assert_eq!(order.first(), Some(&0));
    assert_eq!(order.last(), Some(&(N - 1)));
}

#[test]
fn a_cycle_at_the_end_of_a_100k_chain_is_found() {
    let mut spec = chain();
    spec.tasks[0].dependencies.push(format!("t{}", N - 1));
    let cycle = timed("finding a 100k-long cycle", Duration::from_secs(1), || {
        topological_order(&spec).expect_err("cyclic")
    });
    assert_eq!(cycle.indices.len(), N + 1);
    assert_eq!(cycle.ids[0], "t0");
    assert_eq!(cycle.ids[1], format!("t{}", N - 1));
    assert!(find_cycle(&spec).is_some());
}

#[test]
fn a_100k_task_spec_validates_and_normalizes() {
    // References instead of explicit dependencies, so the implicit ones are computed too.
    let tasks = (0..N)
        .map(|i| {
            let code = if i == 0 {
                json!("result = 0")
            } else {
                json!(format!("${{t{}.result}}", i - 1))
            };
            task(format!("t{i}"), vec![], json!({"code": code}))
        })
        .collect();
    let catalog = MethodCatalog::builtin();
    let parsed = timed(
        "preparing a 100k-task spec",
        Duration::from_secs(20),
        || prepare_spec(workflow(tasks), &catalog).expect("valid"),
    );
    assert_eq!(
        parsed.spec.tasks[N - 1].dependencies,
        vec![format!("t{}", N - 2)]
    );
}
