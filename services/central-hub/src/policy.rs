//! Authorisation: which role may send which event, to which target, and join which room.
//!
//! Pure functions of the sender's identity, the component type it registered as (if any),
//! the event and the target, so the whole table is unit-tested here and documented in
//! `docs/security.md`. Ownership of workflows is the queue-manager's to judge (it stores the
//! owner); the hub only asks it when a USER wants to join a workflow's room.

use gleitzeit_protocol::events::{self, component_types as types, rooms};
use gleitzeit_protocol::{ErrorCode, GzError, Identity, Role, Target};

/// Hub events only ADMIN may send: user and key management.
const ADMIN_EVENTS: &[&str] = &[
    events::AUTH_USER_CREATE,
    events::AUTH_USER_LIST,
    events::AUTH_KEY_CREATE,
    events::AUTH_KEY_LIST,
    events::AUTH_KEY_REVOKE,
];

/// Client → queue-manager events that change workflows.
const WRITE_EVENTS: &[&str] = &[events::WORKFLOW_SUBMIT, events::WORKFLOW_CANCEL];

/// Client → queue-manager events that read workflows (the queue-manager filters by owner
/// for USERs).
const READ_EVENTS: &[&str] = &[
    events::WORKFLOW_GET,
    events::WORKFLOW_LIST,
    events::TASK_GET,
    events::WORKFLOW_EVENTS,
    events::STORE_STATUS,
];

/// Events between the suite's components, with the component types that may send each
/// (`None`: any registered component; an empty list: none, only the hub).
const COMPONENT_EVENTS: &[(&str, Option<&[&str]>)] = &[
    (events::EXECUTE_TASKS, Some(&[types::EXECUTION_ENGINE])),
    // The queue-manager tells the engine to cancel; the engine tells the providers.
    (
        events::CANCEL_TASKS,
        Some(&[types::EXECUTION_ENGINE, types::QUEUE_MANAGER]),
    ),
    (events::LEASE_TASKS, Some(&[types::EXECUTION_ENGINE])),
    (events::WORKFLOW_PLAN, Some(&[types::QUEUE_MANAGER])),
    (events::TASKS_FINISHED, Some(&[types::QUEUE_MANAGER])),
    (events::WORKFLOW_FORGET, Some(&[types::QUEUE_MANAGER])),
    (events::WORKFLOW_OWNER, Some(&[])),
    (events::TASK_OUTCOMES, None),
    (events::TASKS_HELD, None),
];

/// Events only the hub itself originates; no socket may send them anywhere.
const HUB_ONLY_EVENTS: &[&str] = &[
    events::COMPONENT_JOINED,
    events::COMPONENT_LEFT,
    events::COMPONENT_UNHEALTHY,
    events::HUB_SHUTTING_DOWN,
    events::SHUTDOWN,
    events::REGISTERED,
    // Components answer it with their figures; only the hub gathers them (`GET /metrics`).
    events::METRICS,
    // What the hub knows of its rooms' watchers (`watched.rs`).
    events::ROOMS_WATCHED,
];

fn denied(identity: &Identity, what: impl std::fmt::Display) -> GzError {
    GzError::new(
        ErrorCode::PermissionDenied,
        format!("{} ({}) may not {what}", identity.user, identity.role),
    )
}

/// May `identity` send the hub event `event` (target `hub`)? Room joins and registrations
/// are checked in detail by [`room_access`] and the key's grant.
pub fn check_hub_event(identity: &Identity, event: &str) -> Result<(), GzError> {
    let allowed = match event {
        e if ADMIN_EVENTS.contains(&e) => identity.role == Role::Admin,
        events::SHUTDOWN_REQUEST => matches!(identity.role, Role::Admin | Role::Operator),
        events::REGISTER => matches!(identity.role, Role::Admin | Role::Service),
        _ => true,
    };
    if allowed {
        Ok(())
    } else {
        Err(denied(identity, format_args!("send {event:?} to the hub")))
    }
}

/// May `identity`, registered as a component of type `sender_type` (if it is one), send
/// `event` to `target`?
pub fn check_routed(
    identity: &Identity,
    sender_type: Option<&str>,
    event: &str,
    target: &Target,
) -> Result<(), GzError> {
    if HUB_ONLY_EVENTS.contains(&event) {
        return Err(denied(
            identity,
            format_args!("send {event:?}: only the hub does"),
        ));
    }
    if event == events::REPLY || event == events::ERROR || event == events::PING {
        // Replies reach only the requester named by the target; unknown correlations are
        // dropped by the receiver.
        return Ok(());
    }
    if let Target::Room(_) = target {
        // Workflow and task events come from the queue-manager; streamed task progress from
        // the provider running the task.
        let ok = match sender_type {
            Some(types::QUEUE_MANAGER) => true,
            Some(_) => event == events::TASK_PROGRESS,
            None => false,
        };
        return if ok {
            Ok(())
        } else {
            Err(denied(identity, format_args!("send {event:?} to rooms")))
        };
    }
    if WRITE_EVENTS.contains(&event) || READ_EVENTS.contains(&event) {
        // A SERVICE identity reaches workflows only as a queue-manager (which forwards a
        // request about a workflow another queue-manager owns, after checking it).
        let ok = match identity.role {
            Role::Admin | Role::Operator | Role::User | Role::Hub => true,
            Role::Viewer => READ_EVENTS.contains(&event),
            Role::Service => sender_type == Some(types::QUEUE_MANAGER),
        };
        return if ok {
            Ok(())
        } else {
            Err(denied(identity, format_args!("send {event:?}")))
        };
    }
    if let Some((_, needed)) = COMPONENT_EVENTS.iter().find(|(e, _)| *e == event) {
        let ok = match (sender_type, needed) {
            (Some(_), None) => true,
            (Some(t), Some(types)) => types.contains(&t),
            (None, _) => false,
        };
        return if ok {
            Ok(())
        } else {
            let who = match needed {
                None => "registered".to_string(),
                Some([]) => "no".to_string(),
                Some(types) => types.join(" or "),
            };
            Err(denied(
                identity,
                format_args!("send {event:?}: only {who} components do"),
            ))
        };
    }
    // Other events (custom services' own): between registered components, or from ADMIN.
    if sender_type.is_some() || identity.role == Role::Admin {
        Ok(())
    } else {
        Err(denied(identity, format_args!("send {event:?}")))
    }
}

/// The answer to a room join.
#[derive(Debug, PartialEq)]
pub enum RoomAccess {
    /// Join.
    Allowed,
    /// Join if the queue-manager says this workflow is the user's.
    IfOwner(String),
    /// Refused.
    Denied(GzError),
}

/// May `identity` (registered as `sender_type`, if it is a component) join `room`?
pub fn room_access(identity: &Identity, sender_type: Option<&str>, room: &str) -> RoomAccess {
    let reads_all = identity.reads_all_workflows();
    let allowed = if room == rooms::COMPONENTS {
        true
    } else if let Some(id) = rooms::workflow_of(room) {
        if reads_all || sender_type.is_some() {
            true
        } else if identity.role == Role::User {
            return RoomAccess::IfOwner(id.to_string());
        } else {
            false
        }
    } else if room == rooms::EVENTS {
        reads_all
    } else {
        identity.role == Role::Admin
    };
    if allowed {
        RoomAccess::Allowed
    } else {
        RoomAccess::Denied(denied(identity, format_args!("join room {room:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role) -> Identity {
        Identity {
            user: format!("{role}").to_lowercase(),
            role,
            key_id: None,
        }
    }

    fn qm() -> Target {
        Target::Type(types::QUEUE_MANAGER.into())
    }

    #[test]
    fn only_admins_manage_keys_and_only_operators_and_admins_shut_down() {
        for role in Role::ASSIGNABLE {
            let i = who(*role);
            assert_eq!(
                check_hub_event(&i, events::AUTH_KEY_CREATE).is_ok(),
                *role == Role::Admin
            );
            assert_eq!(
                check_hub_event(&i, events::SHUTDOWN_REQUEST).is_ok(),
                matches!(role, Role::Admin | Role::Operator)
            );
            assert_eq!(
                check_hub_event(&i, events::REGISTER).is_ok(),
                matches!(role, Role::Admin | Role::Service)
            );
            assert!(check_hub_event(&i, events::HUB_STATUS).is_ok());
        }
    }

    #[test]
    fn viewers_read_but_do_not_submit_or_cancel() {
        let v = who(Role::Viewer);
        assert!(check_routed(&v, None, events::WORKFLOW_LIST, &qm()).is_ok());
        assert!(check_routed(&v, None, events::WORKFLOW_SUBMIT, &qm()).is_err());
        assert!(check_routed(&v, None, events::WORKFLOW_CANCEL, &qm()).is_err());
        let u = who(Role::User);
        assert!(check_routed(&u, None, events::WORKFLOW_SUBMIT, &qm()).is_ok());
        assert!(check_routed(&u, None, events::WORKFLOW_CANCEL, &qm()).is_ok());
    }

    #[test]
    fn only_engines_dispatch_tasks_and_clients_cannot_forge_component_events() {
        let cap = Target::Capability("python/execute".into());
        let admin = who(Role::Admin);
        assert!(check_routed(&admin, None, events::EXECUTE_TASKS, &cap).is_err());
        let svc = who(Role::Service);
        assert!(check_routed(&svc, Some("python-provider"), events::EXECUTE_TASKS, &cap).is_err());
        assert!(check_routed(
            &svc,
            Some(types::EXECUTION_ENGINE),
            events::EXECUTE_TASKS,
            &cap
        )
        .is_ok());
        assert!(check_routed(&who(Role::User), None, events::TASK_OUTCOMES, &qm()).is_err());
        assert!(check_routed(&svc, Some("python-provider"), events::TASK_OUTCOMES, &qm()).is_ok());
        let room = Target::Room(rooms::COMPONENTS.into());
        assert!(check_routed(&admin, None, events::COMPONENT_LEFT, &room).is_err());
        assert!(check_routed(
            &svc,
            Some(types::QUEUE_MANAGER),
            events::COMPONENT_LEFT,
            &room
        )
        .is_err());
        let wf = Target::Room("workflow:w1".into());
        assert!(check_routed(
            &svc,
            Some(types::QUEUE_MANAGER),
            events::TASK_COMPLETED,
            &wf
        )
        .is_ok());
        assert!(check_routed(&svc, Some("ollama-provider"), events::TASK_COMPLETED, &wf).is_err());
        assert!(check_routed(&svc, Some("ollama-provider"), events::TASK_PROGRESS, &wf).is_ok());
        assert!(check_routed(&admin, None, events::TASK_COMPLETED, &wf).is_err());
        assert!(
            check_routed(&svc, Some("python-provider"), events::WORKFLOW_OWNER, &qm()).is_err()
        );
    }

    #[test]
    fn only_the_hub_asks_components_for_their_metrics() {
        let provider = Target::Component("python-provider-1".into());
        for (identity, sender_type) in [
            (who(Role::Admin), None),
            (who(Role::Viewer), None),
            (who(Role::Service), Some(types::QUEUE_MANAGER)),
            (who(Role::Service), Some(types::EXECUTION_ENGINE)),
        ] {
            assert!(
                check_routed(&identity, sender_type, events::METRICS, &provider).is_err(),
                "{identity:?} as {sender_type:?}"
            );
            assert!(check_routed(&identity, sender_type, events::METRICS, &qm()).is_err());
        }
    }

    #[test]
    fn rooms_by_role() {
        assert_eq!(
            room_access(&who(Role::Viewer), None, rooms::EVENTS),
            RoomAccess::Allowed
        );
        assert!(matches!(
            room_access(&who(Role::User), None, rooms::EVENTS),
            RoomAccess::Denied(_)
        ));
        assert_eq!(
            room_access(&who(Role::User), None, "workflow:abc"),
            RoomAccess::IfOwner("abc".into())
        );
        assert_eq!(
            room_access(&who(Role::User), None, "summary:abc"),
            RoomAccess::IfOwner("abc".into())
        );
        assert!(matches!(
            room_access(&who(Role::Viewer), None, "summary:abc"),
            RoomAccess::Allowed
        ));
        assert_eq!(
            room_access(&who(Role::Operator), None, "workflow:abc"),
            RoomAccess::Allowed
        );
        assert!(matches!(
            room_access(&who(Role::Service), None, "workflow:abc"),
            RoomAccess::Denied(_)
        ));
        assert!(matches!(
            room_access(&who(Role::Operator), None, "secret-room"),
            RoomAccess::Denied(_)
        ));
        assert_eq!(
            room_access(&who(Role::User), None, rooms::COMPONENTS),
            RoomAccess::Allowed
        );
    }
}
