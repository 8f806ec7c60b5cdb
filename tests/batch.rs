//! Batch processing end to end: `gz run --batch-folder` over 1,000 text files (three of them
//! bad: a dangling link, a binary file, a file over the text limit) against a simulated LLM
//! endpoint, every file's result or coded error exported; a workflow file's `batch:`
//! block with a `template:` task and a later task depending on the whole batch; an
//! aggregation task (`tolerate_failures`) that gets every file's result or error in file
//! order although files failed; and `fail_fast: true` stopping the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use gleitzeit_e2e::{temp_path, SuiteOptions, TestSuite};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_files_with_three_bad_ones_give_997_results_and_3_coded_errors() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (_sim, _provider) = suite
        .with_llm_sim(&["--latency-ms", "1", "--max-concurrent", "16"], 16)
        .await;

    let dir = temp_path("batch");
    std::fs::create_dir_all(&dir).expect("dir");
    for i in 0..997 {
        std::fs::write(
            dir.join(format!("doc-{i:04}.txt")),
            format!("document number {i}\n"),
        )
        .expect("file");
    }
    std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("gone.txt")).expect("link");
    std::fs::write(dir.join("binary.txt"), [0xff_u8, 0xfe, 0x00, 0x80]).expect("binary");
    std::fs::write(dir.join("huge.txt"), vec![b'a'; 5 * 1024 * 1024]).expect("huge");
    std::fs::write(dir.join("ignored.md"), "not a .txt").expect("md");
    let out = dir.join("results.jsonl");

    let (code, stdout, err) = suite.gz(&[
        "run",
        "--batch-folder",
        &dir.display().to_string(),
        "--extensions",
        ".txt",
        "--type",
        "text",
        "--prompt",
        "Summarise this document",
        "--model",
        "llama3.2",
        "--output",
        &out.display().to_string(),
        "--json",
    ]);
    assert_eq!(code, 1, "some files failed: {err}");
    let doc: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(doc["total_tasks"], 1000, "{}", doc["error"]);

    let rows: Vec<Value> = std::fs::read_to_string(&out)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    assert_eq!(rows.len(), 1000);
    let completed = rows.iter().filter(|r| r["status"] == "completed").count();
    assert_eq!(completed, 997);
    let errors: BTreeMap<String, String> = rows
        .iter()
        .filter(|r| r["status"] == "failed")
        .map(|r| {
            (
                r["file"].as_str().unwrap_or_default().to_string(),
                r["error_code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("binary.txt", "GZ2028"),
        ("gone.txt", "GZ9002"),
        ("huge.txt", "GZ2029"),
    ]
    .into_iter()
    .map(|(f, c)| (f.to_string(), c.to_string()))
    .collect();
    assert_eq!(errors, expected);
    assert!(rows
        .iter()
        .filter(|r| r["status"] == "completed")
        .all(|r| r["result"].as_str().is_some_and(|t| !t.is_empty())));

    // The same, exported again later as CSV.
    let id = doc["workflow_id"].as_str().expect("id");
    let (code, csv, _) = suite.gz(&["batch", "results", id, "--format", "csv"]);
    assert_eq!(code, 0);
    // Answers may hold line breaks: count records with a CSV reader.
    let mut reader = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv,sys; r=list(csv.reader(sys.stdin)); print(len(r)); print(sum(1 for x in r if x[1]=='huge.txt' and x[4]=='GZ2029'))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut reader.stdin.take().expect("stdin"), csv.as_bytes())
        .expect("write");
    let counted = reader.wait_with_output().expect("csv read");
    assert_eq!(
        String::from_utf8_lossy(&counted.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1001", "1"],
        "a header and a row per file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_block_with_a_template_fans_out_and_a_later_task_waits_for_all() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let dir = temp_path("batch-yaml");
    std::fs::create_dir_all(dir.join("data")).expect("dir");
    for (name, lines) in [("a.csv", 3), ("b.csv", 5), ("c.csv", 7), ("skip.txt", 1)] {
        std::fs::write(dir.join("data").join(name), "row\n".repeat(lines)).expect("file");
    }
    let file = dir.join("count.yaml");
    std::fs::write(
        &file,
        r#"name: count lines
batch:
  directory: data
  pattern: "*.csv"
template:
  id: count
  type: python
  code: "result = len(open(context['file_path']).read().splitlines())"
tasks:
  - id: done
    dependencies: [count]
    method: python/execute
    parameters: { code: "result = 'all counted'" }
"#,
    )
    .expect("workflow");
    let path = file.display().to_string();
    let (code, out, err) = suite.gz(&["validate", &path]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    let tasks = doc["tasks"].as_array().expect("tasks");
    let counts: BTreeMap<String, i64> = tasks
        .iter()
        .filter(|t| t["id"].as_str().is_some_and(|id| id.starts_with("count-")))
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_string(),
                t["result"]["result"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("a.csv", 3), ("b.csv", 5), ("c.csv", 7)]
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect()
    );
    let done = tasks.iter().find(|t| t["id"] == "done").expect("done");
    assert_eq!(done["result"]["result"], "all counted");

    // A folder that is not there is GZ3022.
    std::fs::write(
        &file,
        "name: none\nbatch: { directory: missing }\ntemplate: { type: python, code: \"result = 1\" }\n",
    )
    .expect("workflow");
    let (code, out, err) = suite.gz(&["run", &path, "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("GZ3022"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A folder of 20 files (`f01.txt`…) in `dir/data`, those numbered in `bad` saying "bad",
/// and a workflow `dir/flow.yaml` with `batch_extra` in its `batch:` block.
fn batch_flow(dir: &std::path::Path, bad: &[usize], batch_extra: &str, work: &str) -> String {
    std::fs::create_dir_all(dir.join("data")).expect("dir");
    for i in 1..=20 {
        let text = if bad.contains(&i) {
            "bad".to_string()
        } else {
            "ok\n".repeat(i)
        };
        std::fs::write(dir.join("data").join(format!("f{i:02}.txt")), text).expect("file");
    }
    let file = dir.join("flow.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: aggregate
batch: {{ directory: data, pattern: "*.txt"{batch_extra} }}
template:
  id: count
  method: python/execute
  parameters:
    code: |
      {work}
      text = open(context['file_path']).read()
      if text == 'bad':
          raise ValueError('bad file')
      result = len(text.splitlines())
tasks:
  - id: total
    tolerate_failures: true
    method: python/execute
    parameters:
      context: {{ outcomes: "${{count.results}}" }}
      code: |
        o = context['outcomes']
        result = {{
          'files': [x['file'] for x in o],
          'sum': sum(x['result'] for x in o if x['status'] == 'completed'),
          'errors': [[x['file'], x['error']['code']] for x in o if x['status'] != 'completed'],
        }}
"#
        ),
    )
    .expect("workflow");
    file.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregation_task_gets_17_results_and_3_coded_errors_in_file_order() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let dir = temp_path("batch-aggregate");
    let path = batch_flow(&dir, &[5, 11, 17], "", "pass");
    let (code, out, err) = suite.gz(&["validate", &path]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, doc) = suite.run_json(std::path::Path::new(&path));
    // Three files failed and `on_failure` is `fail`: the workflow fails, after the
    // aggregation ran.
    assert_eq!(code, 1, "{doc:#}");
    let tasks = doc["tasks"].as_array().expect("tasks");
    let total = tasks.iter().find(|t| t["id"] == "total").expect("total");
    assert_eq!(total["status"], "completed", "{total:#}");
    let result = &total["result"]["result"];
    let files: Vec<String> = (1..=20).map(|i| format!("f{i:02}.txt")).collect();
    assert_eq!(result["files"], serde_json::json!(files));
    let good: i64 = (1..=20).filter(|i| ![5, 11, 17].contains(i)).sum();
    assert_eq!(result["sum"], good, "17 results");
    assert_eq!(
        result["errors"],
        serde_json::json!([
            ["f05.txt", "GZ2025"],
            ["f11.txt", "GZ2025"],
            ["f17.txt", "GZ2025"]
        ])
    );
    let failed = tasks.iter().filter(|t| t["status"] == "failed").count();
    assert_eq!(failed, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_fast_batch_stops_at_its_first_failed_file() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let dir = temp_path("batch-fail-fast");
    let path = batch_flow(
        &dir,
        &[1],
        ", fail_fast: true",
        "import time; time.sleep(0 if context['file_path'].endswith('f01.txt') else 2)",
    );
    let (code, doc) = suite.run_json(std::path::Path::new(&path));
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["status"], "failed");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("fail_fast")),
        "{:#}",
        doc["error"]
    );
    let tasks = doc["tasks"].as_array().expect("tasks");
    let of = |s: &str| tasks.iter().filter(|t| t["status"] == s).count();
    assert_eq!(of("failed"), 1, "{doc:#}");
    assert!(of("cancelled") >= 10, "the rest is cancelled: {doc:#}");
    let total = tasks.iter().find(|t| t["id"] == "total").expect("total");
    assert_eq!(total["status"], "cancelled");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_folder_with_aggregate_sends_every_outcome_to_one_more_llm_task() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (_sim, _provider) = suite.with_llm_sim(&["--latency-ms", "1"], 8).await;
    let dir = temp_path("batch-aggregate-cli");
    std::fs::create_dir_all(&dir).expect("dir");
    for name in ["a", "b", "d", "e"] {
        std::fs::write(dir.join(format!("{name}.txt")), format!("text {name}")).expect("file");
    }
    std::fs::write(dir.join("c.txt"), [0xff_u8, 0xfe, 0x00]).expect("binary");
    let (code, stdout, err) = suite.gz(&[
        "run",
        "--batch-folder",
        &dir.display().to_string(),
        "--extensions",
        ".txt",
        "--type",
        "text",
        "--prompt",
        "Summarise",
        "--model",
        "llama3.2",
        "--aggregate",
        "Combine these",
        "--json",
    ]);
    assert_eq!(code, 1, "one file failed: {err}");
    let doc: Value = serde_json::from_str(&stdout).expect("json");
    let tasks = doc["tasks"].as_array().expect("tasks");
    let aggregate = tasks
        .iter()
        .find(|t| t["id"] == "aggregate")
        .expect("aggregate");
    assert_eq!(aggregate["status"], "completed", "{aggregate:#}");
    let answer = aggregate["result"]["response"].as_str().expect("text");
    assert!(answer.starts_with("echo: Combine these"), "{answer}");
    let at = |s: &str| answer.find(s).unwrap_or_else(|| panic!("{s} in {answer}"));
    assert!(at("a.txt") < at("b.txt") && at("b.txt") < at("c.txt") && at("c.txt") < at("e.txt"));
    assert!(
        answer.contains("GZ2028"),
        "the bad file's coded error: {answer}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
