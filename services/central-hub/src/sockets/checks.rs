//! Checks on what a socket asks for: its registration, its metadata, the rooms it may join,
//! and whose a workflow is (asked of the queue-manager, cached).

use super::*;

/// Checks a registration against the key's grant and the limits, and redacts its metadata.
pub(super) fn check_registration(
    state: &HubState,
    session: &Session,
    reg: &mut RegisterPayload,
) -> Result<(), GzError> {
    if reg.component_id.is_empty()
        || reg.component_type.is_empty()
        || reg.component_id.len() > MAX_NAME_LEN
        || reg.component_type.len() > MAX_NAME_LEN
        || reg.component_id.starts_with("sid:")
    {
        return Err(GzError::new(
            ErrorCode::InvalidPayload,
            "component_id and component_type must be non-empty and at most 256 bytes \
             (and an id may not start with \"sid:\")",
        ));
    }
    if !session.grant.may_register_as(&reg.component_type) {
        return Err(GzError::new(
            ErrorCode::PermissionDenied,
            format!(
                "{} ({}) may not register as a {}",
                session.identity.user, session.identity.role, reg.component_type
            ),
        )
        .with_hint(
            "use a SERVICE key that allows this component type \
             (`gz auth key create NAME --user U --component-types TYPE`)",
        ));
    }
    if reg.component_id == state.config.hub_id
        || state.registry().peers().contains(&reg.component_id)
    {
        return Err(GzError::new(
            ErrorCode::PermissionDenied,
            "a component may not take a hub's id",
        ));
    }
    let owner = state
        .registry()
        .owner_of(&reg.component_id)
        .map(str::to_string);
    if let Some(owner) = owner {
        if owner != session.identity.user
            && session.identity.role != gleitzeit_protocol::Role::Admin
        {
            return Err(GzError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "component id {:?} is registered by another user",
                    reg.component_id
                ),
            ));
        }
    }
    if reg.capabilities.len() > MAX_CAPABILITIES
        || reg
            .capabilities
            .iter()
            .any(|c| c.is_empty() || c.len() > MAX_NAME_LEN)
    {
        return Err(GzError::new(
            ErrorCode::TooLarge,
            format!(
                "{} capabilities declared; at most {MAX_CAPABILITIES} of 1..=256 bytes each",
                reg.capabilities.len()
            ),
        ));
    }
    check_metadata(&mut reg.metadata)
}

/// Limits metadata to [`MAX_METADATA_BYTES`] and redacts credentials in it, so the registry,
/// `/components`, `/providers`, events and the mesh never carry a password.
pub(super) fn check_metadata(metadata: &mut Value) -> Result<(), GzError> {
    let size = serde_json::to_string(metadata)
        .map(|s| s.len())
        .unwrap_or(0);
    if size > MAX_METADATA_BYTES {
        return Err(GzError::new(
            ErrorCode::TooLarge,
            format!("metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}"),
        ));
    }
    gleitzeit_protocol::identity::redact_json(metadata);
    Ok(())
}

/// Checks that the session may join every room asked for (asking the queue-manager who
/// owns a workflow when a USER asks for its room).
pub(super) async fn check_rooms(
    state: &Arc<HubState>,
    session: &Session,
    sender_type: Option<&str>,
    rooms: &[String],
) -> Result<(), GzError> {
    for room in rooms {
        match policy::room_access(&session.identity, sender_type, room) {
            RoomAccess::Allowed => {}
            RoomAccess::Denied(err) => return Err(err),
            RoomAccess::IfOwner(workflow_id) => {
                let owner = workflow_owner(state, &workflow_id).await?;
                if owner.as_deref() != Some(session.identity.user.as_str()) {
                    return Err(GzError::new(
                        ErrorCode::PermissionDenied,
                        format!(
                            "{} may not watch workflow {workflow_id}: it is not theirs",
                            session.identity.user
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Who owns a workflow, from the cache or a queue-manager.
pub(super) async fn workflow_owner(
    state: &Arc<HubState>,
    workflow_id: &str,
) -> Result<Option<String>, GzError> {
    let cached = lock(&state.owners).get(workflow_id).cloned();
    if let Some(owner) = cached {
        return Ok(owner);
    }
    let answer = ask(
        state,
        Target::Type(gleitzeit_protocol::events::component_types::QUEUE_MANAGER.into()),
        events::WORKFLOW_OWNER,
        json!({ "workflow_id": workflow_id }),
        OWNER_TIMEOUT,
    )
    .await?;
    let owner = answer
        .get("owner")
        .and_then(Value::as_str)
        .map(str::to_string);
    if owner.is_some() {
        let mut owners = lock(&state.owners);
        if owners.len() >= MAX_CACHED_OWNERS {
            owners.clear();
        }
        owners.insert(workflow_id.to_string(), owner.clone());
    }
    Ok(owner)
}
