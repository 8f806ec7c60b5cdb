use gleitzeit_store::*;
use serde_json::json;
use std::time::Instant;
fn task(i: usize) -> TaskRecord {
    TaskRecord { workflow_id: "big".into(), task_id: format!("task-{i}"), name: format!("task-{i} name"), method: "python/execute".into(), status: TaskStatus::Pending, priority: 0, attempts: 0, params: None, result: None, error: None, provider_id: None, queued_at: None, started_at: None, finished_at: None }
}
fn run(store: &SqliteStore, label: &str) {
    let wf = WorkflowRecord { id: "big".into(), name: "big".into(), status: WorkflowStatus::Pending, spec: json!({"tasks": (0..100_000).map(|i| json!({"id": format!("task-{i}"), "method": "python/execute", "parameters": {"code": "result = 1"}})).collect::<Vec<_>>()}), base_dir: None, total_tasks: 100_000, created_at: 1, started_at: None, finished_at: None, error: None };
    let tasks: Vec<_> = (0..100_000).map(task).collect();
    let t = Instant::now(); store.create_workflow(&wf, &tasks).unwrap(); eprintln!("{label}: insert {:?} wal {:?}", t.elapsed(), std::fs::metadata(format!("{}-wal", std::env::temp_dir().join(format!("gz-bench-{}.db", std::process::id())).display())).map(|m| m.len()));
    for (round, step) in [(0, 100), (1, 100), (2, 1), (3, 1)] {
        let ups: Vec<_> = tasks.iter().skip(round * 7 + 1).step_by(step).take(1000).map(|t| { let mut t = t.clone(); t.status = TaskStatus::Completed; t.result = Some(json!({"result": 1, "stdout": ""})); t.params = Some(json!({"code": "result = 1"})); t.provider_id = Some("python-1".into()); t.finished_at = Some(5); t }).collect();
        if std::env::var("GZ_SLEEP").is_ok() { std::thread::sleep(std::time::Duration::from_millis(1000)); } let t = Instant::now(); store.apply(&[], &ups).unwrap(); eprintln!("{label}: apply step {step} round {round}: {:?}", t.elapsed());
    }
    let t = Instant::now(); let w = store.workflow("big").unwrap().unwrap(); eprintln!("{label}: read wf {:?}", t.elapsed());
    let t = Instant::now(); let s = serde_json::to_string(&w.spec).unwrap(); eprintln!("{label}: spec {} bytes; to_string {:?}", s.len(), t.elapsed());
    let t = Instant::now(); let _v: serde_json::Value = serde_json::from_str(&s).unwrap(); eprintln!("{label}: from_str {:?}", t.elapsed());
}
#[test]
fn bench() {
    
    let p = std::env::temp_dir().join(format!("gz-bench-{}.db", std::process::id()));
    run(&SqliteStore::open(&p).unwrap(), "file");
    for ext in ["", "-wal", "-shm"] { let _ = std::fs::remove_file(format!("{}{ext}", p.display())); }
}
