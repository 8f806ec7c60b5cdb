//! Anthropic and Gemini endpoints of the ollama-provider through the real services, against
//! `gleitzeit-llm-sim` speaking the Messages and generateContent APIs (no network): plain and
//! streamed chats, failover between the two kinds, and `provider:` pinning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gleitzeit_e2e::{
    provider_config, task, wait_for, workflow_file, LlmSim, Proc, SuiteOptions, TestSuite,
};
use gleitzeit_protocol::events::{self, rooms};
use serde_json::Value;

/// The key both simulators require and the provider's environment holds.
const KEY: &str = "sk-test-hosted-0042";

/// Starts an ollama-provider with this endpoint configuration and the keys in its
/// environment (`ANTHROPIC_KEY`, `GEMINI_KEY`).
async fn provider(suite: &TestSuite, config_yaml: &str) -> Proc {
    let cfg = provider_config(config_yaml);
    let p = suite.hub.service_with_env(
        "ollama-provider",
        "llm-1",
        &[
            "--config",
            &cfg.display().to_string(),
            "--health-interval",
            "0.3",
        ],
        &[("ANTHROPIC_KEY", KEY), ("GEMINI_KEY", KEY)],
    );
    suite.hub.wait_registered(&["llm-1"]).await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_and_gemini_answer_plain_and_streamed_chats() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let claude = LlmSim::start(
        "claude",
        &[
            "--models",
            "claude-test",
            "--api-key",
            KEY,
            "--tokens-per-sec",
            "200",
        ],
    )
    .await;
    let gemini = LlmSim::start(
        "gemini",
        &[
            "--models",
            "gemini-test",
            "--api-key",
            KEY,
            "--tokens-per-sec",
            "200",
        ],
    )
    .await;
    let mut p = provider(
        &suite,
        &format!(
            "endpoints:\n  - {{ name: claude, url: \"{}\", kind: anthropic, api_key_env: ANTHROPIC_KEY }}\n  - {{ name: gem, url: \"{}\", kind: gemini, api_key_env: GEMINI_KEY }}\n",
            claude.url, gemini.url
        ),
    )
    .await;
    let (client, mut incoming) = suite.hub.client().await;
    client
        .subscribe(&[rooms::EVENTS.to_string()])
        .await
        .expect("subscribe");
    let file = workflow_file(
        "hosted.yaml",
        r#"
name: hosted
tasks:
  - id: claude
    method: llm/chat
    parameters:
      model: claude-test
      max_tokens: 64
      messages: [{ role: system, content: "be brief" }, { role: user, content: "hello claude" }]
  - id: claude_stream
    method: llm/chat
    parameters: { model: claude-test, stream: true, messages: [{ role: user, content: "one two three four five" }] }
  - id: gemini
    method: llm/chat
    parameters: { model: gemini-test, temperature: 0.2, messages: [{ role: user, content: "hello gemini" }] }
  - id: gemini_stream
    method: llm/chat
    parameters: { model: gemini-test, stream: true, messages: [{ role: user, content: "six seven eight nine ten" }] }
  - id: generate
    method: llm/generate
    parameters: { model: gemini-test, system: "be brief", prompt: "Explain: ${claude.response}" }
  - id: vision
    method: llm/vision
    parameters: { model: claude-test, prompt: "what is this", images: ["iVBORw0KGgoAAAANSUhEUg=="] }
"#,
    );
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    let result = |id: &str| task(&doc, id)["result"].clone();
    assert_eq!(result("claude")["response"], "echo: hello claude");
    assert_eq!(result("claude")["endpoint"], "claude");
    assert!(result("claude")["prompt_tokens"].as_u64().unwrap() >= 4);
    assert_eq!(result("claude")["completion_tokens"], 3);
    assert_eq!(result("gemini")["response"], "echo: hello gemini");
    assert_eq!(result("gemini")["endpoint"], "gem");
    assert_eq!(result("gemini")["tokens_used"], 5);
    assert_eq!(
        result("generate")["response"],
        "echo: Explain: echo: hello claude"
    );
    assert_eq!(result("vision")["response"], "echo: what is this");

    for (id, expected) in [
        ("claude_stream", "echo: one two three four five"),
        ("gemini_stream", "echo: six seven eight nine ten"),
    ] {
        assert_eq!(result(id)["response"], expected);
    }
    let mut streamed = std::collections::BTreeMap::<String, (String, usize)>::new();
    while let Ok(env) = incoming.try_recv() {
        if env.event == events::TASK_PROGRESS {
            let id = env.payload["task_id"].as_str().unwrap().to_string();
            let entry = streamed.entry(id).or_default();
            entry.0.push_str(env.payload["text"].as_str().unwrap());
            entry.1 += 1;
        }
    }
    for id in ["claude_stream", "gemini_stream"] {
        let (text, pieces) = streamed.get(id).cloned().unwrap_or_default();
        assert!(pieces > 3, "{id}: only {pieces} task_progress events");
        assert_eq!(text, result(id)["response"].as_str().unwrap(), "{id}");
    }
    assert!(
        !streamed.contains_key("claude"),
        "unstreamed tasks send no progress"
    );

    let claude_stats = claude.stats().await;
    assert_eq!(
        claude_stats["by_endpoint"]["/v1/messages"], 3,
        "{claude_stats}"
    );
    assert_eq!(claude_stats["images_received"], 1);
    let gemini_stats = gemini.stats().await;
    let by = &gemini_stats["by_endpoint"];
    assert_eq!(
        by["/v1beta/models/{model}:generateContent"], 2,
        "{gemini_stats}"
    );
    assert_eq!(by["/v1beta/models/{model}:streamGenerateContent"], 1);
    p.kill();
    let log = std::fs::read_to_string(p.log()).unwrap_or_default();
    assert!(!log.contains(KEY), "the key is in the provider's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_anthropic_endpoint_fails_over_to_gemini() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let down = LlmSim::start("down", &["--models", "shared", "--error-rate", "1"]).await;
    let up = LlmSim::start("up", &["--models", "shared"]).await;
    let _p = provider(
        &suite,
        &format!(
            "failure_threshold: 2\ncooldown: 30\nendpoints:\n  - {{ name: claude, url: \"{}\", kind: anthropic, priority: 5 }}\n  - {{ name: gem, url: \"{}\", kind: gemini }}\n",
            down.url, up.url
        ),
    )
    .await;
    let mut yaml = String::from("name: failover\ntasks:\n");
    for i in 0..6 {
        yaml.push_str(&format!(
            "  - id: c{i}\n    method: llm/chat\n    parameters: {{ model: shared, messages: [{{ role: user, content: \"question {i}\" }}] }}\n"
        ));
    }
    let (code, doc) = suite.run_json(&workflow_file("failover.yaml", &yaml));
    assert_eq!(code, 0, "{doc:#}");
    for i in 0..6 {
        let r = &task(&doc, &format!("c{i}"))["result"];
        assert_eq!(r["endpoint"], "gem", "{r}");
        assert_eq!(r["response"], format!("echo: question {i}"));
        assert_eq!(
            task(&doc, &format!("c{i}"))["attempts"],
            1,
            "failover within the attempt"
        );
    }
    let failed = down.stats().await;
    assert!(
        failed["errors_500"].as_u64().unwrap() >= 1,
        "the preferred anthropic endpoint was tried: {failed}"
    );
    // The provider publishes its endpoints with its heartbeats: claude shows its cooldown.
    wait_for(Duration::from_secs(10), || async {
        let providers = gleitzeit_e2e::http_json(&suite.hub.url, "/providers")
            .await
            .unwrap_or(Value::Null);
        providers[0]["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == "claude" && e["health"] == "cooldown")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_pins_an_endpoint_or_a_kind_and_unknown_names_are_refused() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let one = LlmSim::start("one", &["--models", "m1"]).await;
    let two = LlmSim::start("two", &["--models", "m1"]).await;
    let _p = provider(
        &suite,
        &format!(
            "strategy: round_robin\nendpoints:\n  - {{ name: a, url: \"{}\", kind: anthropic }}\n  - {{ name: g, url: \"{}\", kind: gemini }}\n  - {{ name: o, url: \"{}\", kind: openai }}\n",
            one.url, two.url, two.url
        ),
    )
    .await;
    let chat = |id: &str, provider: &str| {
        format!(
            "  - id: {id}\n    method: llm/chat\n    parameters: {{ model: m1, provider: {provider}, messages: [{{ role: user, content: \"hi {id}\" }}] }}\n"
        )
    };
    let mut yaml = String::from("name: pinned\ntasks:\n");
    for i in 0..4 {
        yaml.push_str(&chat(&format!("by_name{i}"), "a"));
        yaml.push_str(&chat(&format!("by_kind{i}"), "gemini"));
    }
    yaml.push_str(&chat("unknown", "nope"));
    yaml.push_str(
        "  - id: embed\n    method: llm/embed\n    parameters: { model: m1, input: x, provider: a }\n",
    );
    let (code, doc) = suite.run_json(&workflow_file("pinned.yaml", &yaml));
    assert_eq!(code, 1, "{doc:#}");
    for i in 0..4 {
        assert_eq!(
            task(&doc, &format!("by_name{i}"))["result"]["endpoint"],
            "a"
        );
        assert_eq!(
            task(&doc, &format!("by_kind{i}"))["result"]["endpoint"],
            "g"
        );
    }
    let unknown = &task(&doc, "unknown")["error"];
    assert_eq!(unknown["code"], "GZ2012", "{unknown}");
    assert_eq!(unknown["retryable"], false);
    let message = unknown["message"].as_str().unwrap();
    assert!(
        message.contains("a (anthropic)") && message.contains("g (gemini)"),
        "the endpoints are named: {message}"
    );
    let embed = &task(&doc, "embed")["error"];
    assert_eq!(embed["code"], "GZ2012", "{embed}");
    assert!(embed["message"].as_str().unwrap().contains("embeddings"));
    let openai_chats = two.stats().await["by_endpoint"]["/v1/chat/completions"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        openai_chats, 0,
        "no pinned task went to the openai endpoint"
    );
}
