//! End-to-end tests of the simulator over HTTP on 127.0.0.1:0.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use gleitzeit_llm_sim::{Overflow, SimConfig, SimHandle};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn fast() -> SimConfig {
    SimConfig {
        latency: Duration::from_millis(5),
        tokens_per_second: 1000.0,
        ..SimConfig::default()
    }
}

async fn start(config: SimConfig) -> SimHandle {
    gleitzeit_llm_sim::spawn(config).await.expect("bind")
}

async fn get(url: String) -> (StatusCode, Value) {
    let resp = reqwest::get(url).await.expect("request");
    let status = resp.status();
    (status, resp.json().await.expect("json body"))
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let resp = client.post(url).json(&body).send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.expect("json body"))
}

async fn post_text(client: &reqwest::Client, url: String, body: Value) -> (StatusCode, String) {
    let resp = client.post(url).json(&body).send().await.expect("request");
    let status = resp.status();
    (status, resp.text().await.expect("text body"))
}

fn ndjson_lines(body: &str) -> Vec<Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect()
}

/// The JSON payloads of an SSE body, and whether it ended with `data: [DONE]`.
fn sse_events(body: &str) -> (Vec<Value>, bool) {
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    let done = data.last() == Some(&"[DONE]");
    let events = data
        .iter()
        .filter(|d| **d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("SSE JSON"))
        .collect();
    (events, done)
}

fn chat_body(model: &str, text: &str, stream: Option<bool>) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "echo: first question"},
            {"role": "user", "content": text},
        ],
    });
    if let Some(s) = stream {
        body["stream"] = json!(s);
    }
    body
}

#[tokio::test]
async fn tags_version_root_and_models() {
    let sim = start(fast()).await;
    let (status, tags) = get(format!("{}/api/tags", sim.url())).await;
    assert_eq!(status, StatusCode::OK);
    let models = tags["models"].as_array().expect("models");
    let names: Vec<&str> = models.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(
        names,
        ["llama3.2:latest", "llava:latest", "nomic-embed-text:latest"]
    );
    for m in models {
        for field in ["name", "model", "modified_at", "size", "digest", "details"] {
            assert!(!m[field].is_null(), "{field} missing in {m}");
        }
        assert_eq!(m["details"]["format"], "gguf");
    }
    let (_, version) = get(format!("{}/api/version", sim.url())).await;
    assert!(version["version"].is_string());
    let root = reqwest::get(sim.url()).await.expect("root");
    assert_eq!(root.text().await.expect("text"), "Ollama is running");
    let (_, models) = get(format!("{}/v1/models", sim.url())).await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "llama3.2:latest");
    assert_eq!(models["data"][0]["object"], "model");
    sim.shutdown().await;
}

#[tokio::test]
async fn chat_stream_concatenates_to_the_non_streamed_answer() {
    let sim = start(fast()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/chat", sim.url());
    let (status, full) = post(
        &client,
        url.clone(),
        chat_body("llama3.2", "what  is\tup?", Some(false)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(full["model"], "llama3.2");
    assert_eq!(full["message"]["role"], "assistant");
    assert_eq!(full["message"]["content"], "echo: what  is\tup?");
    assert_eq!(full["done"], true);
    assert_eq!(full["done_reason"], "stop");
    assert_eq!(full["eval_count"], 4);
    assert_eq!(full["prompt_eval_count"], 2 + 2 + 3 + 3);
    for field in [
        "created_at",
        "total_duration",
        "load_duration",
        "eval_duration",
    ] {
        assert!(!full[field].is_null(), "{field} missing");
    }

    // No "stream" field: Ollama streams by default.
    let (status, body) =
        post_text(&client, url, chat_body("llama3.2", "what  is\tup?", None)).await;
    assert_eq!(status, StatusCode::OK);
    let lines = ndjson_lines(&body);
    assert_eq!(lines.len(), 5, "{body}");
    let (last, tokens) = lines.split_last().expect("lines");
    let mut text = String::new();
    for l in tokens {
        assert_eq!(l["done"], false);
        assert_eq!(l["message"]["role"], "assistant");
        text.push_str(l["message"]["content"].as_str().expect("content"));
    }
    assert_eq!(text, full["message"]["content"].as_str().expect("content"));
    assert_eq!(last["done"], true);
    assert_eq!(last["message"]["content"], "");
    assert_eq!(last["eval_count"], 4);
    assert_eq!(last["done_reason"], "stop");
    sim.shutdown().await;
}

#[tokio::test]
async fn generate_streams_and_answers_with_response() {
    let sim = start(fast()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/generate", sim.url());
    let (status, full) = post(
        &client,
        url.clone(),
        json!({"model": "llama3.2:latest", "prompt": "tell me a story", "system": "short", "stream": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(full["response"], "echo: tell me a story");
    assert_eq!(full["done"], true);
    assert_eq!(full["prompt_eval_count"], 5);
    assert_eq!(full["eval_count"], 5);

    let (_, body) = post_text(
        &client,
        url.clone(),
        json!({"model": "llama3.2:latest", "prompt": "tell me a story"}),
    )
    .await;
    let lines = ndjson_lines(&body);
    let text: String = lines
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    assert_eq!(text, "echo: tell me a story");
    assert_eq!(lines.last().expect("last")["done"], true);

    // An empty prompt only loads the model.
    let (_, load) = post(&client, url, json!({"model": "llava", "stream": false})).await;
    assert_eq!(load["done_reason"], "load");
    let (_, ps) = get(format!("{}/api/ps", sim.url())).await;
    let loaded: Vec<&str> = ps["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(loaded, ["llama3.2:latest", "llava:latest"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn format_json_wraps_the_reply() {
    let sim = start(fast()).await;
    let client = reqwest::Client::new();
    let (_, full) = post(
        &client,
        format!("{}/api/generate", sim.url()),
        json!({"model": "llama3.2", "prompt": "say \"hi\"", "format": "json", "stream": false}),
    )
    .await;
    let parsed: Value =
        serde_json::from_str(full["response"].as_str().expect("response")).expect("JSON reply");
    assert_eq!(parsed, json!({"reply": "echo: say \"hi\""}));
    sim.shutdown().await;
}

#[tokio::test]
async fn embeddings_are_deterministic() {
    let sim = start(fast()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/embed", sim.url());
    let (status, a) = post(
        &client,
        url.clone(),
        json!({"model": "nomic-embed-text", "input": ["alpha", "beta"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a["model"], "nomic-embed-text");
    assert!(a["total_duration"].is_u64());
    let vectors = a["embeddings"].as_array().expect("embeddings");
    assert_eq!(vectors.len(), 2);
    assert_eq!(
        vectors[0].as_array().expect("vector").len(),
        gleitzeit_llm_sim::EMBEDDING_DIMS
    );
    assert_ne!(vectors[0], vectors[1]);
    let (_, b) = post(
        &client,
        url,
        json!({"model": "nomic-embed-text", "input": "beta"}),
    )
    .await;
    assert_eq!(b["embeddings"][0], vectors[1]);
    let (_, legacy) = post(
        &client,
        format!("{}/api/embeddings", sim.url()),
        json!({"model": "nomic-embed-text", "prompt": "alpha"}),
    )
    .await;
    assert_eq!(legacy["embedding"], vectors[0]);
    let (_, oa) = post(
        &client,
        format!("{}/v1/embeddings", sim.url()),
        json!({"model": "nomic-embed-text", "input": "alpha"}),
    )
    .await;
    assert_eq!(oa["data"][0]["embedding"], vectors[0]);
    sim.shutdown().await;
}

#[tokio::test]
async fn pull_adds_a_model() {
    let sim = start(fast()).await;
    let client = reqwest::Client::new();
    let chat = format!("{}/api/chat", sim.url());
    let (status, _) = post(
        &client,
        chat.clone(),
        chat_body("mistral", "hi", Some(false)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, pulled) = post(
        &client,
        format!("{}/api/pull", sim.url()),
        json!({"model": "mistral", "stream": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pulled, json!({"status": "success"}));
    let (_, tags) = get(format!("{}/api/tags", sim.url())).await;
    assert!(tags["models"]
        .as_array()
        .expect("models")
        .iter()
        .any(|m| m["name"] == "mistral:latest"));
    let (status, answer) = post(
        &client,
        chat,
        chat_body("mistral:latest", "hi", Some(false)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["message"]["content"], "echo: hi");

    // Streaming pull (the default), with the older "name" field.
    let (_, body) = post_text(
        &client,
        format!("{}/api/pull", sim.url()),
        json!({"name": "qwen2.5:7b"}),
    )
    .await;
    let lines = ndjson_lines(&body);
    assert!(lines.len() > 1);
    assert_eq!(lines.last().expect("last"), &json!({"status": "success"}));
    let (status, _) = post(
        &client,
        format!("{}/api/show", sim.url()),
        json!({"model": "qwen2.5:7b"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_model_is_404_in_both_dialects() {
    let sim = start(fast()).await;
    let client = reqwest::Client::new();
    let (status, body) = post(
        &client,
        format!("{}/api/chat", sim.url()),
        chat_body("nope", "hi", Some(false)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "model \"nope\" not found, try pulling it first"})
    );
    let (status, body) = post(
        &client,
        format!("{}/api/generate", sim.url()),
        json!({"model": "nope", "prompt": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().expect("error").contains("not found"));
    let (status, body) = post(
        &client,
        format!("{}/v1/chat/completions", sim.url()),
        json!({"model": "gpt-nope", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "model_not_found");
    assert!(body["error"]["message"].is_string());
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_json_is_400_with_an_error_body() {
    let sim = start(fast()).await;
    let client = reqwest::Client::new();
    for path in ["/api/chat", "/api/generate", "/api/embed", "/api/pull"] {
        let resp = client
            .post(format!("{}{path}", sim.url()))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = post(
        &client,
        format!("{}/api/chat", sim.url()),
        json!({"messages": []}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].is_string());
    let resp = client
        .post(format!("{}/v1/chat/completions", sim.url()))
        .body("[]")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    sim.shutdown().await;
}

#[tokio::test]
async fn openai_chat_json_and_sse_agree() {
    let sim = start(fast()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", sim.url());
    let request = json!({
        "model": "llama3.2",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        ],
    });
    let (status, full) = post(&client, url.clone(), request.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(full["object"], "chat.completion");
    assert!(full["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert!(full["created"].is_u64());
    assert_eq!(full["model"], "llama3.2");
    assert_eq!(full["choices"][0]["index"], 0);
    assert_eq!(full["choices"][0]["message"]["role"], "assistant");
    assert_eq!(full["choices"][0]["message"]["content"], "echo: describe");
    assert_eq!(full["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        full["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    );

    let mut streamed = request;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let resp = client
        .post(url)
        .json(&streamed)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream")));
    let (events, done) = sse_events(&resp.text().await.expect("body"));
    assert!(done, "stream must end with data: [DONE]");
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "echo: describe");
    assert!(events
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk"));
    let finish: Vec<&Value> = events
        .iter()
        .map(|e| &e["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    assert_eq!(
        events.last().expect("usage chunk")["usage"]["completion_tokens"],
        2
    );
    assert_eq!(sim.stats().images_received, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_limits_truncate_consistently() {
    let sim = start(fast()).await;
    let client = reqwest::Client::new();
    let mut body = chat_body("llama3.2", "one two three four", Some(false));
    body["options"] = json!({"num_predict": 3, "temperature": 0.0});
    let (_, full) = post(&client, format!("{}/api/chat", sim.url()), body.clone()).await;
    assert_eq!(full["message"]["content"], "echo: one two");
    assert_eq!(full["done_reason"], "length");
    assert_eq!(full["eval_count"], 3);
    body["stream"] = json!(true);
    let (_, text) = post_text(&client, format!("{}/api/chat", sim.url()), body).await;
    let streamed: String = ndjson_lines(&text)
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(streamed, "echo: one two");
    let (_, oa) = post(
        &client,
        format!("{}/v1/chat/completions", sim.url()),
        json!({"model": "llama3.2", "max_tokens": 2, "messages": [{"role": "user", "content": "a b c"}]}),
    )
    .await;
    assert_eq!(oa["choices"][0]["message"]["content"], "echo: a");
    assert_eq!(oa["choices"][0]["finish_reason"], "length");
    sim.shutdown().await;
}

/// Fires `n` concurrent non-streaming chats; returns their statuses and bodies.
async fn burst(url: String, n: usize) -> Vec<(StatusCode, Value)> {
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                post(
                    &client,
                    url,
                    chat_body("llama3.2", &format!("slow {i}"), Some(false)),
                )
                .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    answers
}

#[tokio::test]
async fn beyond_max_concurrent_requests_get_429() {
    // Each request takes 50 ms + 2 tokens at 10/s = 250 ms, so all arrive while two run.
    let sim = start(SimConfig {
        latency: Duration::from_millis(50),
        tokens_per_second: 10.0,
        max_concurrent: 2,
        overflow: Overflow::Reject429,
        ..SimConfig::default()
    })
    .await;
    let answers = burst(format!("{}/api/chat", sim.url()), 4).await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let busy: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, body)| body)
        .collect();
    assert_eq!((ok, busy.len()), (2, 2), "{answers:?}");
    assert!(busy.iter().all(|b| **b == json!({"error": "server busy"})));
    let stats = sim.stats();
    assert_eq!(stats.rejected_429, 2);
    assert_eq!(stats.max_in_flight_seen, 2);
    assert_eq!(stats.in_flight, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn queue_mode_never_exceeds_the_limit() {
    let sim = start(SimConfig {
        latency: Duration::from_millis(20),
        tokens_per_second: 100.0,
        max_concurrent: 2,
        overflow: Overflow::Queue,
        ..SimConfig::default()
    })
    .await;
    let answers = burst(format!("{}/api/chat", sim.url()), 6).await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{answers:?}"
    );
    let stats = sim.stats();
    assert!(stats.max_in_flight_seen <= 2, "{stats:?}");
    assert!(stats.max_in_flight_seen >= 1);
    assert!(stats.max_queued_seen >= 1, "{stats:?}");
    assert_eq!(
        (stats.in_flight, stats.queued, stats.rejected_429),
        (0, 0, 0)
    );
    assert_eq!(stats.by_model.get("llama3.2:latest"), Some(&6));
    sim.shutdown().await;
}

#[tokio::test]
async fn error_rate_one_answers_500() {
    let sim = start(SimConfig {
        error_rate: 1.0,
        ..fast()
    })
    .await;
    let client = reqwest::Client::new();
    let (status, body) = post(
        &client,
        format!("{}/api/chat", sim.url()),
        chat_body("llama3.2", "hi", Some(true)),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, json!({"error": "simulated failure"}));
    let (status, body) = post(
        &client,
        format!("{}/v1/chat/completions", sim.url()),
        json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["message"], "simulated failure");
    // Listing models is not a generation request: never fails.
    let (status, _) = get(format!("{}/api/tags", sim.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.stats().errors_500, 2);

    // The rate can be changed at run time.
    let (status, config) = post(
        &client,
        format!("{}/_sim/config", sim.url()),
        json!({"error_rate": 0.0, "latency_ms": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["error_rate"], 0.0);
    let (status, _) = post(
        &client,
        format!("{}/api/chat", sim.url()),
        chat_body("llama3.2", "hi", Some(false)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn seeded_failures_are_reproducible() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let sim = start(SimConfig {
            error_rate: 0.5,
            seed: Some(seed),
            latency: Duration::ZERO,
            tokens_per_second: 0.0,
            ..SimConfig::default()
        })
        .await;
        let client = reqwest::Client::new();
        let mut out = Vec::new();
        for i in 0..24 {
            // Repeats of the same body draw afresh, like retries.
            let (status, _) = post(
                &client,
                format!("{}/api/generate", sim.url()),
                json!({"model": "llama3.2", "prompt": format!("p{}", i % 6), "stream": false}),
            )
            .await;
            out.push(status == StatusCode::OK);
        }
        sim.shutdown().await;
        out
    }
    let a = outcomes(7).await;
    assert_eq!(a, outcomes(7).await);
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
    assert_ne!(a, outcomes(8).await);
}

#[tokio::test]
async fn stats_count_and_reset() {
    let sim = start(SimConfig {
        name: "sim-a".to_string(),
        ..fast()
    })
    .await;
    let client = reqwest::Client::new();
    post(
        &client,
        format!("{}/api/chat", sim.url()),
        chat_body("llama3.2", "hi", Some(false)),
    )
    .await;
    let (_, streamed) = post_text(
        &client,
        format!("{}/api/chat", sim.url()),
        chat_body("llava", "hi", None),
    )
    .await;
    assert_eq!(ndjson_lines(&streamed).len(), 3);
    get(format!("{}/api/tags", sim.url())).await;
    let resp = client
        .get(format!("{}/no/such/path", sim.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.headers()
            .get(gleitzeit_llm_sim::NAME_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("sim-a")
    );

    let (status, stats) = get(format!("{}/_sim/stats", sim.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats,
        json!({
            "name": "sim-a",
            "requests_total": 4,
            "by_endpoint": {"/api/chat": 2, "/api/tags": 1, "unmatched": 1},
            "in_flight": 0,
            "max_in_flight_seen": 1,
            "queued": 0,
            "max_queued_seen": 0,
            "rejected_429": 0,
            "errors_500": 0,
            "by_model": {"llama3.2:latest": 1, "llava:latest": 1},
            "images_received": 0,
        })
    );
    let (status, _) = post(&client, format!("{}/_sim/reset", sim.url()), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let stats = sim.stats();
    assert_eq!(stats.requests_total, 0);
    assert!(stats.by_endpoint.is_empty() && stats.by_model.is_empty());
    assert_eq!(stats.name, "sim-a");
    sim.shutdown().await;
}

#[tokio::test]
async fn api_key_is_required_when_set() {
    let sim = start(SimConfig {
        api_key: Some("s3cret".to_string()),
        ..fast()
    })
    .await;
    let client = reqwest::Client::new();
    let body = json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{}/v1/chat/completions", sim.url());
    let resp = client.post(&url).json(&body).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "invalid_api_key");
    let resp = client
        .post(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = client
        .post(&url)
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = client
        .get(format!("{}/api/tags", sim.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = get(format!("{}/_sim/stats", sim.url())).await;
    assert_eq!(status, StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_and_token_rate_are_honoured() {
    // 40 ms to the first token, then 4 tokens at 50/s (20 ms each): at least 120 ms in all.
    let (listener, addr) = gleitzeit_llm_sim::bind("127.0.0.1:0").await.expect("bind");
    assert_ne!(addr.port(), 0);
    let (trigger, shutdown) = gleitzeit_runtime::Shutdown::new();
    let server = tokio::spawn(gleitzeit_llm_sim::serve(
        listener,
        SimConfig {
            latency: Duration::from_millis(40),
            tokens_per_second: 50.0,
            ..SimConfig::default()
        },
        shutdown,
    ));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/generate");
    let started = Instant::now();
    let (_, full) = post(
        &client,
        url.clone(),
        json!({"model": "llama3.2", "prompt": "a b c", "stream": false}),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(full["eval_count"], 4);
    assert!(full["total_duration"].as_u64().expect("ns") >= 120_000_000);

    let started = Instant::now();
    let mut resp = client
        .post(url)
        .json(&json!({"model": "llama3.2", "prompt": "a b c"}))
        .send()
        .await
        .expect("request");
    let first = resp.chunk().await.expect("chunk").expect("first token");
    let first_at = started.elapsed();
    assert!(first_at >= Duration::from_millis(40), "{first_at:?}");
    assert!(String::from_utf8_lossy(&first).contains("\"echo:\""));
    while resp.chunk().await.expect("chunk").is_some() {}
    assert!(started.elapsed() >= Duration::from_millis(120));
    trigger.fire();
    server.await.expect("task").expect("serve");
}

#[test]
fn binary_prints_its_address_first() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gleitzeit-llm-sim"))
        .args([
            "--port",
            "0",
            "--models",
            "a,b:7b",
            "--latency-ms",
            "1",
            "--name",
            "bin",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the binary");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tags = rt.block_on(async { get(format!("{url}/api/tags")).await.1 });
    let names: Vec<&str> = tags["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["a:latest", "b:7b"]);
    child.kill().expect("kill");
    child.wait().expect("wait");
}
