//! Idempotent creation of workflows: a submission carries a key the client made once
//! (`idempotency_key` of `workflow_submit`), and the store keeps the key with the workflow
//! it created, written in the same transaction as the workflow itself. A submission retried
//! with the same key (after a lost connection, or while no queue-manager was connected)
//! then finds the first one's workflow instead of creating a second; the same key with a
//! different submission is refused ([`StoreError::IdempotencyConflict`](crate::StoreError)).
//!
//! What counts as "the same submission" is the caller's `fingerprint` (the queue-manager
//! uses a hash of the spec and base folder); the store only compares it.

/// The key of one submission and the fingerprint of what was submitted under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotency<'a> {
    /// The client's key (a UUID, at most 200 bytes).
    pub key: &'a str,
    /// What identifies the submission's content (equal for a retry of the same submit).
    pub fingerprint: &'a str,
}

/// A submission kept under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptSubmission {
    /// The workflow the key created.
    pub workflow_id: String,
    /// The fingerprint it was created with.
    pub fingerprint: String,
}

/// What [`Store::create_workflow_once`](crate::Store::create_workflow_once) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation {
    /// The workflow and its tasks were stored, with the key.
    Created,
    /// The key was already kept with the same fingerprint: nothing was written, and the
    /// submission's workflow is this one.
    Existing {
        /// The workflow created by the first submission with this key.
        workflow_id: String,
    },
}

impl KeptSubmission {
    /// The outcome of submitting `fingerprint` again under this kept key: the kept
    /// workflow, or a conflict when the fingerprint differs.
    pub fn resubmitted(self, key: &str, fingerprint: &str) -> Result<Creation, crate::StoreError> {
        if self.fingerprint == fingerprint {
            Ok(Creation::Existing {
                workflow_id: self.workflow_id,
            })
        } else {
            Err(crate::StoreError::IdempotencyConflict {
                key: key.to_string(),
                workflow_id: self.workflow_id,
            })
        }
    }
}

/// The fingerprint of a submission: SHA-256 (hex) of its spec's JSON text and base folder.
pub fn fingerprint(spec: &serde_json::Value, base_dir: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    // Streamed into the hash: a spec of many megabytes is not written out as text first.
    // (Writing to a hasher cannot fail, and a `Value` always serializes.)
    struct Hashing<'a>(&'a mut Sha256);
    impl std::io::Write for Hashing<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let _ = write_canonical(&mut Hashing(&mut hash), spec);
    hash.update([0u8]);
    hash.update(base_dir.unwrap_or_default().as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `v` as JSON with every object's keys in sorted order, so one spec has one
/// fingerprint whatever order its maps were written in.
fn write_canonical(out: &mut impl std::io::Write, v: &serde_json::Value) -> std::io::Result<()> {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.write_all(b"{")?;
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, k)?;
                out.write_all(b":")?;
                if let Some(x) = map.get(k) {
                    write_canonical(out, x)?;
                }
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(out, x)?;
            }
            out.write_all(b"]")
        }
        other => serde_json::to_writer(&mut *out, other).map_err(std::io::Error::other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprints_tell_specs_and_folders_apart() {
        let spec = json!({ "name": "a", "tasks": [] });
        let same = fingerprint(&spec, Some("/w"));
        assert_eq!(same.len(), 64);
        assert_eq!(same, fingerprint(&spec.clone(), Some("/w")));
        assert_ne!(same, fingerprint(&spec, Some("/x")));
        assert_ne!(
            same,
            fingerprint(&json!({ "name": "b", "tasks": [] }), Some("/w"))
        );
        // the same as hashing the spec's JSON text, so kept keys still match
        use sha2::{Digest, Sha256};
        let mut text = Sha256::new();
        text.update(spec.to_string().as_bytes());
        text.update([0u8]);
        text.update(b"/w");
        let text: String = text.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(same, text);
    }

    #[test]
    fn the_order_of_keys_does_not_change_a_fingerprint() {
        let a = json!({ "tasks": [{ "params": { "b": 1, "a": [true, null, "x"] } }], "name": "w" });
        let b = json!({ "name": "w", "tasks": [{ "params": { "a": [true, null, "x"], "b": 1 } }] });
        assert_eq!(fingerprint(&a, None), fingerprint(&b, None));
        assert_ne!(
            fingerprint(&a, None),
            fingerprint(&json!({ "name": "w", "tasks": [] }), None)
        );
    }
}
