//! The simulator's Anthropic and Gemini dialects and its `/http/*` test endpoints, over HTTP
//! on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gleitzeit_llm_sim::{SimConfig, SimHandle};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start(api_key: Option<&str>) -> SimHandle {
    gleitzeit_llm_sim::spawn(SimConfig {
        latency: Duration::from_millis(5),
        tokens_per_second: 1000.0,
        models: vec!["claude-test".into(), "gemini-test".into()],
        api_key: api_key.map(str::to_string),
        ..SimConfig::default()
    })
    .await
    .expect("bind")
}

fn anthropic(client: &reqwest::Client, sim: &SimHandle, body: &Value) -> reqwest::RequestBuilder {
    client
        .post(format!("{}/v1/messages", sim.url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

/// The `data:` payloads of an SSE body, with the event names (`""` when none).
fn sse(body: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut event = String::new();
    for line in body.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((
                std::mem::take(&mut event),
                serde_json::from_str(d.trim()).expect("SSE JSON"),
            ));
        }
    }
    out
}

#[tokio::test]
async fn anthropic_messages_answer_with_usage_and_system_kept_apart() {
    let sim = start(Some("k")).await;
    let client = reqwest::Client::new();
    let body = json!({"model": "claude-test", "max_tokens": 100, "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]});
    let resp = anthropic(&client, &sim, &body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "echo: hello there");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 4);
    assert_eq!(v["usage"]["output_tokens"], 3);
    assert_eq!(sim.stats().images_received, 1);

    let no_key = client
        .post(format!("{}/v1/messages", sim.url()))
        .header("anthropic-version", "2023-06-01")
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    let err: Value = no_key.json().await.unwrap();
    assert_eq!(err["error"]["type"], "authentication_error");

    let system_role = json!({"model": "claude-test", "max_tokens": 5,
        "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}]});
    let resp = anthropic(&client, &sim, &system_role).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let no_max = json!({"model": "claude-test", "messages": [{"role": "user", "content": "y"}]});
    let resp = anthropic(&client, &sim, &no_max).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let unknown = json!({"model": "claude-nope", "max_tokens": 5, "messages": [{"role": "user", "content": "y"}]});
    let resp = anthropic(&client, &sim, &unknown).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn anthropic_streams_content_block_deltas_between_start_and_stop() {
    let sim = start(None).await;
    let client = reqwest::Client::new();
    let body = json!({"model": "claude-test", "max_tokens": 2, "stream": true,
        "messages": [{"role": "user", "content": "one two three"}]});
    let text = anthropic(&client, &sim, &body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse(&text);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let deltas: String = events
        .iter()
        .filter(|(e, _)| e == "content_block_delta")
        .map(|(_, v)| v["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "echo: one", "max_tokens 2 keeps two tokens");
    let (_, delta) = events.iter().find(|(e, _)| e == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn anthropic_and_openai_share_the_model_list_by_header() {
    let sim = start(None).await;
    let client = reqwest::Client::new();
    let anthropic: Value = client
        .get(format!("{}/v1/models", sim.url()))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert_eq!(anthropic["data"][0]["id"], "claude-test");
    let openai: Value = client
        .get(format!("{}/v1/models", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openai["object"], "list");
}

#[tokio::test]
async fn gemini_generates_and_streams_with_usage_metadata() {
    let sim = start(Some("g")).await;
    let client = reqwest::Client::new();
    let body = json!({
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "first"}]},
            {"role": "model", "parts": [{"text": "echo: first"}]},
            {"role": "user", "parts": [{"text": "second one"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
        ],
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 50},
    });
    let url = |action: &str| format!("{}/v1beta/models/gemini-test:{action}", sim.url());
    let v: Value = client
        .post(url("generateContent"))
        .header("x-goog-api-key", "g")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "echo: second one"
    );
    assert_eq!(v["candidates"][0]["content"]["role"], "model");
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 7);
    assert_eq!(sim.stats().images_received, 1);

    let text = client
        .post(format!("{}?alt=sse", url("streamGenerateContent")))
        .header("x-goog-api-key", "g")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks = sse(&text);
    assert!(chunks.len() >= 3, "{text}");
    let joined: String = chunks
        .iter()
        .map(|(_, v)| {
            v["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(joined, "echo: second one");
    let last = &chunks.last().unwrap().1;
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 3);

    let wrong_key = client
        .post(url("generateContent"))
        .bearer_auth("g")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);
    let err: Value = wrong_key.json().await.unwrap();
    assert_eq!(err["error"]["status"], "UNAUTHENTICATED");
    let bad_role = json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]});
    let resp = client
        .post(url("generateContent"))
        .header("x-goog-api-key", "g")
        .json(&bad_role)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let models: Value = client
        .get(format!("{}/v1beta/models", sim.url()))
        .header("x-goog-api-key", "g")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["models"][1]["name"], "models/gemini-test");
    let stats = sim.stats();
    assert_eq!(
        stats.by_endpoint["/v1beta/models/{model}:generateContent"],
        3
    );
}

#[tokio::test]
async fn injected_failures_come_in_each_dialect() {
    let sim = start(None).await;
    sim.set_knobs(None, None, Some(1.0));
    let client = reqwest::Client::new();
    let body = json!({"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "y"}]});
    let resp = anthropic(&client, &sim, &body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "api_error");
    let resp = client
        .post(format!(
            "{}/v1beta/models/gemini-test:generateContent",
            sim.url()
        ))
        .json(&json!({"contents": [{"parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["status"], "INTERNAL");
}

#[tokio::test]
async fn http_test_endpoints_echo_fail_on_cue_and_make_big_bodies() {
    let sim = start(None).await;
    let client = reqwest::Client::new();
    let echo: Value = client
        .put(format!("{}/http/echo?a=1", sim.url()))
        .header("x-thing", "yes")
        .json(&json!({"k": [1, 2]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["query"]["a"], "1");
    assert_eq!(echo["headers"]["x-thing"], "yes");
    assert_eq!(echo["json"], json!({"k": [1, 2]}));

    let flaky = format!("{}/http/flaky?key=t1&fail=2&status=503", sim.url());
    for expected in [503, 503, 200] {
        let resp = client.get(&flaky).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), expected);
    }
    let big = client
        .get(format!("{}/http/big?bytes=200000&chunked=true", sim.url()))
        .send()
        .await
        .unwrap();
    assert!(big.content_length().is_none(), "chunked has no length");
    assert_eq!(big.bytes().await.unwrap().len(), 200_000);
    let sized = client
        .get(format!("{}/http/big?bytes=1000", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(sized.content_length(), Some(1000));
    let text = client
        .get(format!("{}/http/text", sim.url()))
        .send()
        .await
        .unwrap();
    assert!(text.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let teapot = client
        .delete(format!("{}/http/status/418", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(teapot.status().as_u16(), 418);
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let moved = no_follow
        .get(format!("{}/http/redirect?to=/http/text", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status().as_u16(), 302);
    assert_eq!(moved.headers()["location"], "/http/text");
    let stats = sim.stats();
    assert_eq!(stats.by_endpoint["/http/flaky"], 3);
    assert_eq!(stats.by_endpoint["/http/status/{code}"], 1);
}
