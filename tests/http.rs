//! `http/request` tasks through the real services and the http-provider, against the plain
//! `/http/*` endpoints of `gleitzeit-llm-sim` on 127.0.0.1 (no network).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gleitzeit_e2e::{task, workflow_file, LlmSim, Proc, SuiteOptions, TestSuite};
use serde_json::{json, Value};

/// The secret the provider's environment holds and the keyed server expects.
const SECRET: &str = "s3cr3t-token-4711";

/// Starts an http-provider on the suite's hub with these flags and environment.
async fn provider(suite: &TestSuite, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let p = suite
        .hub
        .service_with_env("http-provider", "http-1", args, env);
    suite.hub.wait_registered(&["http-1"]).await;
    p
}

/// A workflow of independent tasks, one per `(id, parameters, extra task keys)`.
fn workflow(tasks: &[(&str, Value, &str)]) -> std::path::PathBuf {
    let mut yaml = String::from("name: http\ntasks:\n");
    for (id, params, extra) in tasks {
        yaml.push_str(&format!(
            "  - id: {id}\n    method: http/request\n    parameters: {params}\n{extra}"
        ));
    }
    workflow_file("http.yaml", &yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_text_answers_come_back_as_json_and_body() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let web = LlmSim::start("web", &[]).await;
    let _p = provider(&suite, &[], &[]).await;
    let url = &web.url;
    let file = workflow_file(
        "http.yaml",
        &format!(
            r#"
name: http
tasks:
  - id: echo
    method: http/request
    parameters:
      url: "{url}/http/echo"
      method: POST
      query: {{ q: "a b", n: 3 }}
      headers: {{ X-Test: "yes" }}
      json: {{ a: 1 }}
  - id: again
    method: http/request
    parameters:
      url: "{url}/http/echo?seen=${{echo.json.method}}"
      response_type: json
  - id: text
    method: http/request
    parameters: {{ url: "{url}/http/text" }}
"#
        ),
    );
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    let echo = &task(&doc, "echo")["result"];
    assert_eq!(echo["status"], 200);
    assert_eq!(echo["json"]["method"], "POST");
    assert_eq!(echo["json"]["json"], json!({"a": 1}));
    assert_eq!(echo["json"]["query"], json!({"q": "a b", "n": "3"}));
    assert_eq!(echo["json"]["headers"]["x-test"], "yes");
    assert_eq!(echo["json"]["headers"]["content-type"], "application/json");
    assert!(echo["headers"]["content-type"]
        .as_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(echo["elapsed_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        task(&doc, "again")["result"]["json"]["query"]["seen"],
        "POST"
    );
    let text = &task(&doc, "text")["result"];
    assert_eq!(text["body"], "plain text, not JSON\n");
    assert!(text.get("json").is_none(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_header_reaches_the_server_and_nowhere_else() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    // The server answers 401 unless `Authorization: Bearer SECRET` arrives.
    let web = LlmSim::start("keyed", &["--api-key", SECRET]).await;
    let mut p = provider(
        &suite,
        &["--secret-env", "API_TOKEN"],
        &[("API_TOKEN", SECRET), ("OTHER_SECRET", "never-sent")],
    )
    .await;
    let url = &web.url;
    let bearer = json!({"Authorization": "Bearer API_TOKEN"});
    let file = workflow(&[
        (
            "echo",
            json!({"url": format!("{url}/http/echo"), "secret_headers": bearer}),
            "",
        ),
        (
            "refused",
            json!({"url": format!("{url}/http/status/403"), "secret_headers": bearer}),
            "",
        ),
        (
            "unlisted",
            json!({"url": format!("{url}/http/echo"), "secret_headers": {"X-Key": "OTHER_SECRET"}}),
            "",
        ),
        ("without", json!({"url": format!("{url}/http/echo")}), ""),
        (
            "elsewhere",
            json!({"url": format!("{url}/http/redirect?to={}/http/echo", url.replace("127.0.0.1", "localhost")),
                "secret_headers": bearer}),
            "",
        ),
    ]);
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "some tasks fail: {doc:#}");
    let echo = task(&doc, "echo");
    assert_eq!(
        echo["status"], "completed",
        "the server took the key: {echo:#}"
    );
    assert_eq!(
        echo["result"]["json"]["headers"]["authorization"], "Bearer [redacted]",
        "the echoed header is redacted"
    );
    let refused = &task(&doc, "refused")["error"];
    assert_eq!(refused["code"], "GZ6003", "{refused}");
    assert_eq!(refused["details"]["status"], 403);
    let unlisted = &task(&doc, "unlisted")["error"];
    assert_eq!(unlisted["code"], "GZ2023", "{unlisted}");
    let without = &task(&doc, "without")["error"];
    assert_eq!(without["code"], "GZ6003", "no key, 401: {without}");
    assert_eq!(without["details"]["status"], 401);
    let elsewhere = &task(&doc, "elsewhere")["error"];
    assert_eq!(
        elsewhere["details"]["status"], 302,
        "a secret is not carried to another origin: {elsewhere}"
    );

    let (_, inspected, _) = suite.gz(&[
        "inspect",
        "workflow",
        doc["workflow_id"].as_str().unwrap(),
        "--json",
    ]);
    assert!(
        inspected.contains("Bearer API_TOKEN"),
        "the record names the variable"
    );
    for text in [doc.to_string(), inspected] {
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
        assert!(!text.contains("never-sent"));
    }
    p.kill();
    let log = std::fs::read_to_string(p.log()).unwrap_or_default();
    assert!(!log.contains(SECRET), "the secret is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_by_the_task_policy_and_then_succeeds() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let web = LlmSim::start("web", &[]).await;
    let _p = provider(&suite, &[], &[]).await;
    let url = &web.url;
    let retry = "    retry: { max_attempts: 2, backoff: fixed, base_delay: 0.1 }\n";
    let file = workflow(&[
        (
            "flaky",
            json!({"url": format!("{url}/http/flaky?key=retried&fail=1")}),
            retry,
        ),
        (
            "once",
            json!({"url": format!("{url}/http/flaky?key=once&fail=1&status=503")}),
            "",
        ),
    ]);
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "{doc:#}");
    let flaky = task(&doc, "flaky");
    assert_eq!(flaky["status"], "completed", "{flaky:#}");
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(flaky["result"]["json"]["call"], 2);
    let once = task(&doc, "once");
    assert_eq!(once["status"], "failed");
    assert_eq!(once["error"]["code"], "GZ6002", "{once:#}");
    assert_eq!(once["error"]["retryable"], true);
    assert_eq!(once["attempts"], 1, "no retry policy, no second attempt");
    let stats = web.stats().await;
    assert_eq!(stats["by_endpoint"]["/http/flaky"], 3, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_their_codes() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let web = LlmSim::start("web", &[]).await;
    let _p = provider(&suite, &["--deny-hosts", "localhost"], &[]).await;
    let url = &web.url;
    let port = url.rsplit(':').next().unwrap();
    let file = workflow(&[
        (
            "slow",
            json!({"url": format!("{url}/http/slow?ms=5000"), "timeout": 0.5}),
            "",
        ),
        (
            "not_json",
            json!({"url": format!("{url}/http/text"), "response_type": "json"}),
            "",
        ),
        (
            "big",
            json!({"url": format!("{url}/http/big?bytes=100000"), "max_bytes": 1000}),
            "",
        ),
        (
            "big_chunked",
            json!({"url": format!("{url}/http/big?bytes=100000&chunked=true"), "max_bytes": 1000}),
            "",
        ),
        (
            "denied",
            json!({"url": format!("http://localhost:{port}/http/echo")}),
            "",
        ),
        (
            "metadata",
            json!({"url": "http://169.254.169.254/latest/meta-data/"}),
            "",
        ),
        (
            "missing",
            json!({"url": format!("{url}/http/status/404")}),
            "",
        ),
        (
            "expected",
            json!({"url": format!("{url}/http/status/404"), "expected_status": [404]}),
            "",
        ),
        (
            "redirected",
            json!({"url": format!("{url}/http/redirect?to=/http/text")}),
            "",
        ),
        (
            "redirected_to_denied",
            json!({"url": format!("{url}/http/redirect?to=http://localhost:{port}/http/echo")}),
            "",
        ),
    ]);
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "{doc:#}");
    let error = |id: &str| task(&doc, id)["error"].clone();
    assert_eq!(error("slow")["code"], "GZ2002", "{doc:#}");
    assert_eq!(error("slow")["retryable"], true);
    assert_eq!(error("not_json")["code"], "GZ6004");
    assert!(error("not_json")["message"]
        .as_str()
        .unwrap()
        .contains("plain text"));
    assert_eq!(error("big")["code"], "GZ2026");
    assert_eq!(error("big_chunked")["code"], "GZ2026");
    assert_eq!(error("denied")["code"], "GZ2023", "{}", error("denied"));
    assert_eq!(error("metadata")["code"], "GZ2023");
    assert_eq!(error("missing")["code"], "GZ6003");
    assert_eq!(error("missing")["retryable"], false);
    assert!(error("missing")["message"]
        .as_str()
        .unwrap()
        .contains("HTTP 404"));
    assert_eq!(task(&doc, "expected")["result"]["status"], 404);
    let redirected = &task(&doc, "redirected")["result"];
    assert_eq!(redirected["body"], "plain text, not JSON\n");
    assert_eq!(redirected["url"], format!("{url}/http/text"));
    let refused = error("redirected_to_denied");
    assert_eq!(refused["code"], "GZ2023", "{refused}");
    let stats = web.stats().await;
    assert_eq!(
        stats["by_endpoint"]["/http/echo"].as_u64().unwrap_or(0),
        0,
        "the denied host got no request: {stats}"
    );
}
