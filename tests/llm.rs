//! LLM tasks through the real services and the ollama-provider against simulated endpoints
//! (`gleitzeit-llm-sim`, speaking Ollama's and OpenAI's HTTP APIs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gleitzeit_e2e::{
    provider_config, task, wait_for, workflow_file, LlmSim, Proc, SuiteOptions, TestSuite,
};
use gleitzeit_protocol::events::{self, rooms};
use serde_json::Value;

/// Starts an ollama-provider on the suite's hub with this endpoint configuration.
async fn provider(suite: &TestSuite, id: &str, config_yaml: &str) -> Proc {
    let cfg = provider_config(config_yaml);
    let p = suite.hub.service(
        "ollama-provider",
        id,
        &[
            "--config",
            &cfg.display().to_string(),
            "--health-interval",
            "0.3",
        ],
    );
    suite.hub.wait_registered(&[id]).await;
    p
}

fn chat_tasks(n: usize, model: &str) -> String {
    let mut y = String::from("name: many-chats\ntasks:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - id: c{i}\n    method: llm/chat\n    parameters: {{ model: \"{model}\", messages: [{{ role: user, content: \"question {i}\" }}] }}\n"
        ));
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_share_300_chats_within_their_limits() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let small = LlmSim::start(
        "small",
        &[
            "--max-concurrent",
            "2",
            "--latency-ms",
            "30",
            "--overflow",
            "reject",
        ],
    )
    .await;
    let mid = LlmSim::start(
        "mid",
        &[
            "--max-concurrent",
            "4",
            "--latency-ms",
            "20",
            "--overflow",
            "reject",
        ],
    )
    .await;
    let big = LlmSim::start(
        "big",
        &[
            "--max-concurrent",
            "8",
            "--latency-ms",
            "20",
            "--overflow",
            "reject",
        ],
    )
    .await;
    let cfg = format!(
        "strategy: least_loaded\nendpoints:\n  - {{ name: small, url: \"{}\", max_concurrent: 2 }}\n  - {{ name: mid, url: \"{}\", max_concurrent: 4 }}\n  - {{ name: big, url: \"{}\", max_concurrent: 8 }}\n",
        small.url, mid.url, big.url
    );
    let _p = provider(&suite, "llm-1", &cfg).await;
    let (code, doc) = suite.run_json(&workflow_file("chats.yaml", &chat_tasks(300, "llama3.2")));
    assert_eq!(code, 0, "{}", doc["error"]);
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(
        tasks.iter().filter(|t| t["status"] == "completed").count(),
        300
    );
    assert_eq!(task(&doc, "c7")["result"]["response"], "echo: question 7");
    let mut served = Vec::new();
    for (sim, limit) in [(&small, 2), (&mid, 4), (&big, 8)] {
        let s = sim.stats().await;
        assert!(
            s["max_in_flight_seen"].as_u64().unwrap() <= limit,
            "{} exceeded its limit: {s}",
            s["name"]
        );
        assert_eq!(s["rejected_429"], 0, "{s}");
        served.push(
            tasks
                .iter()
                .filter(|t| t["result"]["endpoint"] == s["name"])
                .count() as f64,
        );
    }
    // Capacity shares 2:4:8 of 14 slots; allow a factor of two either way.
    for (got, slots) in served.iter().zip([2.0, 4.0, 8.0]) {
        let expected = 300.0 * slots / 14.0;
        assert!(
            *got > expected / 2.0 && *got < expected * 2.0,
            "shares {served:?} far from capacity 2:4:8"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_fails_over_and_every_task_completes_once() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let a = LlmSim::start("a", &["--max-concurrent", "4", "--latency-ms", "60"]).await;
    let mut b = LlmSim::start("b", &["--max-concurrent", "4", "--latency-ms", "60"]).await;
    let cfg = format!(
        "cooldown: 30\nendpoints:\n  - {{ name: a, url: \"{}\", max_concurrent: 4 }}\n  - {{ name: b, url: \"{}\", max_concurrent: 4 }}\n",
        a.url, b.url
    );
    let _p = provider(&suite, "llm-1", &cfg).await;
    let file = workflow_file("chats.yaml", &chat_tasks(120, "llama3.2"));
    let (code, out, err) = suite.gz(&["submit", &file.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(400)).await;
    b.proc.kill();
    let mut doc = Value::Null;
    wait_for(Duration::from_secs(60), || {
        let (_, out, _) = suite.gz(&["inspect", "workflow", &id, "--json"]);
        doc = serde_json::from_str(&out).unwrap_or(Value::Null);
        let done = matches!(
            doc["workflow"]["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        );
        async move { done }
    })
    .await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 120);
    assert!(tasks.iter().all(|t| t["status"] == "completed"
        && t["result"]["response"]
            .as_str()
            .is_some_and(|r| r.starts_with("echo: question"))));
    let after_kill = tasks
        .iter()
        .filter(|t| t["result"]["endpoint"] == "a")
        .count();
    assert!(
        after_kill > 60,
        "the survivor took over: {after_kill} of 120"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_without_the_model_gets_none_of_its_tasks() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let has = LlmSim::start("has", &["--models", "llama3.2:latest,other:latest"]).await;
    let lacks = LlmSim::start("lacks", &["--models", "other:latest"]).await;
    let cfg = format!(
        "endpoints:\n  - {{ name: has, url: \"{}\" }}\n  - {{ name: lacks, url: \"{}\" }}\n",
        has.url, lacks.url
    );
    let _p = provider(&suite, "llm-1", &cfg).await;
    let (code, doc) = suite.run_json(&workflow_file("chats.yaml", &chat_tasks(40, "llama3.2")));
    assert_eq!(code, 0, "{}", doc["error"]);
    let lacks_stats = lacks.stats().await;
    assert_eq!(
        lacks_stats["by_endpoint"]["/api/chat"]
            .as_u64()
            .unwrap_or(0),
        0,
        "{lacks_stats}"
    );
    assert!(doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["result"]["endpoint"] == "has"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_fails_with_gz2011_and_the_pull_hint() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let sim = LlmSim::start("only", &[]).await;
    let _p = provider(
        &suite,
        "llm-1",
        &format!("endpoints:\n  - {{ url: \"{}\" }}\n", sim.url),
    )
    .await;
    let (code, doc) = suite.run_json(&workflow_file(
        "unknown.yaml",
        &chat_tasks(1, "nosuchmodel:7b"),
    ));
    assert_eq!(code, 1);
    assert_eq!(doc["status"], "failed");
    let err = &task(&doc, "c0")["error"];
    assert_eq!(err["code"], "GZ2011", "{err}");
    assert!(
        err["hint"]
            .as_str()
            .unwrap()
            .contains("ollama pull nosuchmodel:7b"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_passes_the_first_answer_into_the_second_prompt_and_openai_kind_works() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let sim = LlmSim::start("oa", &[]).await;
    let cfg = format!(
        "endpoints:\n  - {{ name: oa, url: \"{}\", kind: openai }}\n",
        sim.url
    );
    let _p = provider(&suite, "llm-1", &cfg).await;
    let file = workflow_file(
        "chain.yaml",
        r#"
name: chain
tasks:
  - id: first
    method: llm/chat
    parameters: { model: llama3.2, messages: [{ role: user, content: "tell me a fact" }] }
  - id: second
    method: llm/generate
    parameters: { model: llama3.2, prompt: "Explain: ${first.response}" }
"#,
    );
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(
        task(&doc, "first")["result"]["response"],
        "echo: tell me a fact"
    );
    assert_eq!(
        task(&doc, "second")["result"]["response"],
        "echo: Explain: echo: tell me a fact"
    );
    let stats = sim.stats().await;
    assert!(
        stats["by_endpoint"]["/v1/chat/completions"]
            .as_u64()
            .unwrap()
            >= 2,
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tokens_reach_a_socket_io_client_as_task_progress() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let sim = LlmSim::start("stream", &["--tokens-per-sec", "200"]).await;
    let _p = provider(
        &suite,
        "llm-1",
        &format!("endpoints:\n  - {{ url: \"{}\" }}\n", sim.url),
    )
    .await;
    let (client, mut incoming) = suite.hub.client().await;
    client
        .subscribe(&[rooms::EVENTS.to_string()])
        .await
        .expect("subscribe");
    let file = workflow_file(
        "stream.yaml",
        "name: stream\ntasks:\n  - id: s\n    method: llm/chat\n    parameters: { model: llama3.2, stream: true, messages: [{ role: user, content: \"one two three four five six\" }] }\n",
    );
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    let mut text = String::new();
    let mut pieces = 0;
    while let Ok(env) = incoming.try_recv() {
        if env.event == events::TASK_PROGRESS && env.payload["task_id"] == "s" {
            text.push_str(env.payload["text"].as_str().unwrap());
            pieces += 1;
        }
    }
    assert!(pieces > 3, "only {pieces} progress events");
    assert_eq!(
        text,
        task(&doc, "s")["result"]["response"].as_str().unwrap()
    );
}
