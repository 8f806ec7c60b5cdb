//! Unit tests of the Redis store's encoding and URL handling (no server needed; the
//! contract tests in `tests/` run against a real one).

use super::*;
use serde_json::json;

#[test]
fn passwords_are_masked() {
    for (url, masked) in [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@host:6379", "redis://:***@host:6379"),
        ("redis://user:s3cret@host/2", "redis://user:***@host/2"),
        ("rediss://user:p@ss@host", "rediss://user:***@host"),
        ("redis://user@host", "redis://user@host"),
        (
            "redis+unix:///run/redis.sock?db=1&pass=s3cret",
            "redis+unix:///run/redis.sock?db=1&pass=***",
        ),
        ("not a url", "not a url"),
    ] {
        assert_eq!(mask_password(url), masked, "{url}");
    }
}

#[test]
fn an_unreachable_rediss_server_is_unavailable_without_showing_the_password() {
    // Nothing listens on port 1: the connection fails before any TLS or AUTH.
    let err = RedisStore::open("rediss://:s3cret-pw@127.0.0.1:1/0").err();
    let err = err.expect("nothing listens on port 1");
    assert_eq!(
        err.code(),
        gleitzeit_protocol::errors::ErrorCode::RedisUnavailable,
        "{err}"
    );
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
}

#[test]
fn index_members_name_their_workflow() {
    let member = format!("{:020}:{:020}:wf:with:colons", 17, 3);
    assert_eq!(
        member_id(member.as_bytes()).expect("well formed"),
        "wf:with:colons"
    );
    for bad in ["", "12:wf", &format!("{:020}-{:020}:wf", 1, 2)] {
        assert!(matches!(
            member_id(bad.as_bytes()),
            Err(StoreError::Corrupt(_))
        ));
    }
    // Members sort by creation time, then insertion order.
    let mut members = [
        format!("{:020}:{:020}:b", 300, 2),
        format!("{:020}:{:020}:a", 1_000, 1),
        format!("{:020}:{:020}:d", 300, 10),
    ];
    members.sort();
    let ids: Vec<_> = members
        .iter()
        .map(|m| member_id(m.as_bytes()).expect("id"))
        .collect();
    assert_eq!(ids, ["b", "d", "a"]);
}

#[test]
fn tasks_round_trip_through_their_json_with_null_values_kept() {
    let task = TaskRecord {
        workflow_id: "wf".into(),
        task_id: "t".into(),
        name: "t".into(),
        method: "m".into(),
        status: TaskStatus::Retrying,
        priority: -1,
        attempts: 2,
        params: Some(JsonText::null()),
        result: None,
        error: Some(json!({ "code": "GZ2001" })),
        provider_id: Some("p".into()),
        queued_at: Some(1),
        started_at: None,
        finished_at: Some(i64::MAX as u64),
    };
    let row = encode_task(&task).expect("encode");
    assert!(
        !row.contains("workflow_id") && !row.contains("\"result\""),
        "{row}"
    );
    assert_eq!(
        decode_task("wf", "t", row.as_bytes()).expect("decode"),
        task
    );

    let mut too_late = task.clone();
    too_late.started_at = Some(u64::MAX);
    assert!(
        matches!(encode_task(&too_late), Err(StoreError::Invalid(m)) if m.contains("started_at"))
    );
    assert!(matches!(
        decode_task("wf", "t", br#"{"name":"t","method":"m","status":"exploded","priority":0,"attempts":0}"#),
        Err(StoreError::Corrupt(m)) if m.contains("task `wf/t`") && m.contains("exploded")
    ));
}

#[test]
fn workflow_hashes_decode_or_are_corrupt() {
    let fields = |created_at: &str| {
        vec![
            Some(b"name".to_vec()),
            Some(b"running".to_vec()),
            None,
            Some(b"3".to_vec()),
            Some(created_at.as_bytes().to_vec()),
            None,
            None,
            Some(b"null".to_vec()),
            Some(b"alice".to_vec()),
        ]
    };
    let wf = decode_workflow("wf", fields("42"), None)
        .expect("decode")
        .expect("exists");
    assert_eq!(
        (wf.status, wf.created_at, wf.error, wf.spec),
        (
            WorkflowStatus::Running,
            42,
            Some(Value::Null),
            JsonText::null()
        )
    );
    assert!(matches!(
        decode_workflow("wf", fields("-5"), None),
        Err(StoreError::Corrupt(m)) if m.contains("workflow `wf`: field `created_at`")
    ));
    assert_eq!(
        decode_workflow("wf", vec![None; 9], None).expect("decode"),
        None
    );
    let mut missing = fields("1");
    missing[0] = None;
    assert!(matches!(
        decode_workflow("wf", missing, None),
        Err(StoreError::Corrupt(m)) if m.contains("`name` is missing")
    ));
}
