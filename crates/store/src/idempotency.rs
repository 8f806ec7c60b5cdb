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
///
/// The text is the queue-manager's own serialization of the validated spec (struct fields
/// in declaration order, every map's keys sorted), so one spec always has one text: it is
/// hashed as it is, never parsed into values first.
pub fn fingerprint(spec_text: &str, base_dir: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(spec_text.as_bytes());
    hash.update([0u8]);
    hash.update(base_dir.unwrap_or_default().as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_specs_and_folders_apart() {
        let spec = r#"{"name":"a","tasks":[]}"#;
        let same = fingerprint(spec, Some("/w"));
        assert_eq!(same.len(), 64);
        assert_eq!(
            same,
            fingerprint(String::from(spec).as_str(), Some("/w")),
            "a copy of the text"
        );
        assert_ne!(same, fingerprint(spec, Some("/x")));
        assert_ne!(same, fingerprint(r#"{"name":"b","tasks":[]}"#, Some("/w")));
    }
}
