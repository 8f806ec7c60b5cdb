//! Ownership, in two senses: which user a workflow belongs to (who may read or cancel it:
//! checked against the identity the hub stamped), and which queue-manager runs it when
//! several share a store (a claim with a TTL, renewed every few seconds; requests about a
//! workflow another queue-manager runs are forwarded to it).

use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::{Envelope, Identity, Role, Target};
use serde_json::Value;
use tracing::warn;

use super::{Manager, OWNER_TTL};

/// What a request wants to do with a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    Read,
    Cancel,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Cancel => "cancel",
        }
    }
}

/// Whether an identity reaches every workflow: the roles that read all, and SERVICE, which
/// the hub lets through only for queue-managers (forwarding a checked request).
pub(super) fn sees_all(who: &Identity) -> bool {
    who.reads_all_workflows() || who.role == Role::Service
}

impl Manager {
    /// Renews ownership of every workflow in memory; one another queue-manager took over
    /// (this one was cut off for too long) is dropped here.
    pub(super) async fn renew_ownership(&mut self) {
        let owner = self.client.id().to_string();
        let ids: Vec<String> = self.machine.ids().iter().map(|k| k.to_string()).collect();
        if ids.is_empty() {
            return;
        }
        let lost = self
            .persistence
            .call(move |s| {
                let mut lost = Vec::new();
                for id in ids {
                    match s.claim(&id, &owner, OWNER_TTL) {
                        Ok(true) => {}
                        Ok(false) => lost.push(id),
                        Err(e) => warn!(workflow = %id, error = %e, "could not renew ownership"),
                    }
                }
                Ok(lost)
            })
            .await;
        match lost {
            Ok(lost) => {
                for id in lost {
                    warn!(workflow = %id, "another queue-manager owns this workflow now; leaving it");
                    self.machine.drop_workflow(&id);
                }
            }
            Err(e) => warn!(error = %e, "could not renew ownership"),
        }
    }

    /// A request about a workflow another queue-manager owns goes to the owner, whose
    /// answer is relayed; true when forwarded (the reply is then sent from here later).
    pub(super) async fn forward_to_owner(&self, env: &Envelope) -> bool {
        let Some(id) = env.payload.get("workflow_id").and_then(Value::as_str) else {
            return false;
        };
        let wid = id.to_string();
        let owner = match self.persistence.call(move |s| s.owner(&wid)).await {
            Ok(Some(o)) if o != self.client.id() => o,
            _ => return false,
        };
        let (client, env) = (self.client.clone(), env.clone());
        tokio::spawn(async move {
            let result = client
                .request_with_timeout(
                    Target::Component(owner),
                    &env.event,
                    env.payload.clone(),
                    Duration::from_secs(30),
                )
                .await;
            let _ = client.respond(&env, result);
        });
        true
    }

    /// The owner of a workflow: `None` when there is no such workflow, `Some(None)` when
    /// it has no owner (stored before identities existed).
    pub(super) async fn owner_of(&self, id: &str) -> Result<Option<Option<String>>, GzError> {
        if let Some(wf) = self.machine.workflow(id) {
            return Ok(Some(wf.record.owner.clone()));
        }
        let id = id.to_string();
        let record = self.persistence.call(move |s| s.workflow(&id)).await?;
        Ok(record.map(|w| w.owner))
    }

    /// Refuses (GZ4003) a request about a workflow that its sender may not read or cancel.
    /// Unknown workflows pass (the handler answers "not found").
    pub(super) async fn check_access(
        &self,
        env: &Envelope,
        id: &str,
        access: Access,
    ) -> Result<(), GzError> {
        let Some(who) = &env.auth else {
            return Ok(());
        };
        if who.role == Role::Service
            || (who.reads_all_workflows() && (access == Access::Read || who.may_cancel(None)))
        {
            return Ok(());
        }
        let Some(owner) = self.owner_of(id).await? else {
            return Ok(());
        };
        let allowed = match access {
            Access::Read => who.may_read(owner.as_deref()),
            Access::Cancel => who.may_cancel(owner.as_deref()),
        };
        if allowed {
            Ok(())
        } else {
            Err(GzError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{} ({}) may not {} workflow {id}",
                    who.user,
                    who.role,
                    access.verb()
                ),
            ))
        }
    }
}
