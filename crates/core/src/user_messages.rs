//! Every text the gateway itself shows chat users, in one place. None contains internals:
//! details go to the log.
//!
//! The wording matches the reference (digest §4.6, §10.5) byte for byte, because users and
//! their scripts recognise these notices.

use crate::types::AgentError;

/// Stands in for a message with no text and no attachment description.
pub const EMPTY_MESSAGE: &str = "(empty message)";
/// Stands in for an agent reply with no text.
pub const EMPTY_RESPONSE: &str = "(empty response)";
/// A turn ran past its deadline.
pub const TIMED_OUT: &str = "⏱️ Request timed out. Please try again.";
/// The agent ended without a reply.
pub const NO_REPLY: &str = "❌ Agent response was empty. Please try again.";
/// A message was dropped because the watcher's queue is full.
pub const BUSY: &str = "⚠️ Server busy — your message was dropped. Please retry.";
/// The agent hit a usage or rate limit.
pub const RATE_LIMITED: &str =
    "❌ Agent is temporarily unavailable due to a usage limit. Please try again later.";
/// The agent was refused something it needed to answer.
pub const PERMISSION_RESTRICTED: &str =
    "❌ Agent could not complete the request because of a permission restriction.";
/// The agent (or its model service) cannot be reached right now.
pub const UNAVAILABLE: &str = "❌ Agent is temporarily unavailable. Please try again later.";
/// Any other failure of a turn; the cause goes to the log only.
pub const GENERIC_FAILURE: &str = "❌ Agent failed to process the request. Please try again.";

/// The ` (ref: <first 8 chars>)` suffix that lets an operator find the session in the log,
/// or `""` when there is no session id.
pub fn session_ref(session_id: Option<&str>) -> String {
    match session_id {
        Some(id) if !id.is_empty() => {
            let short: String = id.chars().take(8).collect();
            format!(" (ref: {short})")
        }
        _ => String::new(),
    }
}

/// The chat text for a failed turn, with ` (ref: <first 8 chars of the session>)`.
///
/// A timeout gets the plain timed-out notice without a reference; every other class gets its
/// fixed text plus the reference. The error's inner detail is never shown.
pub fn agent_failure(error: &AgentError, session_id: Option<&str>) -> String {
    let text = match error {
        AgentError::Timeout => return TIMED_OUT.to_string(),
        AgentError::RateLimited(_) => RATE_LIMITED,
        AgentError::Permission(_) => PERMISSION_RESTRICTED,
        AgentError::Unavailable(_) => UNAVAILABLE,
        AgentError::SessionNotFound(_) | AgentError::Protocol(_) | AgentError::Other(_) => {
            GENERIC_FAILURE
        }
    };
    format!("{text}{}", session_ref(session_id))
}

/// The chat message that asks the owners of a room to decide on a tool call (digest §6, §13):
/// `params` is the rendered parameter line (see `approval::render_params`).
pub fn permission_request(id: &str, tool: &str, params: &str) -> String {
    format!(
        "🔐 **Permission required** `[{id}]`\n**Tool:** `{tool}`\n**Params:** `{params}`\nReply `approve {id}` or `deny {id}`"
    )
}

/// Posted when nobody answered a permission request in time.
pub fn permission_timed_out(id: &str) -> String {
    format!("⏱️ Permission `{id}` timed out — **auto-denied**.")
}

/// The answer to an owner's `approve <id>`.
pub fn permission_approved(id: &str) -> String {
    format!("✅ Permission `{id}` approved.")
}

/// The answer to an owner's `deny <id>`.
pub fn permission_denied(id: &str) -> String {
    format!("❌ Permission `{id}` denied.")
}

/// The answer to `approve`/`deny` with an id of the wrong length; `action` is the word used.
pub fn permission_invalid_id(id: &str, action: &str) -> String {
    format!("⚠️ Invalid ID `{id}` — expected 4 characters (e.g. `{action} a3k9`).")
}

/// The answer when no request with this id is pending here (unknown, already settled, or
/// asked in another room or thread — the same words, so nothing leaks about other rooms).
pub fn permission_unknown(id: &str) -> String {
    format!("⚠️ No pending permission request with ID `{id}`.")
}

/// The answer when `permissions.require_other_owner` forbids approving one's own request.
pub fn permission_own_request(id: &str) -> String {
    format!(
        "⚠️ Permission `{id}` was requested by your own message, so another owner must approve it \
         (you may still `deny {id}`)."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "11111111-2222-3333-4444-555555555555";
    const DETAIL: &str = "SECRET-internal-detail /home/op/.token";

    fn all_errors() -> Vec<AgentError> {
        vec![
            AgentError::Timeout,
            AgentError::RateLimited(DETAIL.into()),
            AgentError::Permission(DETAIL.into()),
            AgentError::Unavailable(DETAIL.into()),
            AgentError::Protocol(DETAIL.into()),
            AgentError::SessionNotFound(DETAIL.into()),
            AgentError::Other(DETAIL.into()),
        ]
    }

    #[test]
    fn exact_texts_with_reference() {
        let s = Some(SESSION);
        assert_eq!(
            agent_failure(&AgentError::Timeout, s),
            "⏱️ Request timed out. Please try again."
        );
        assert_eq!(
            agent_failure(&AgentError::RateLimited("x".into()), s),
            "❌ Agent is temporarily unavailable due to a usage limit. Please try again later. (ref: 11111111)"
        );
        assert_eq!(
            agent_failure(&AgentError::Permission("x".into()), s),
            "❌ Agent could not complete the request because of a permission restriction. (ref: 11111111)"
        );
        assert_eq!(
            agent_failure(&AgentError::Unavailable("x".into()), s),
            "❌ Agent is temporarily unavailable. Please try again later. (ref: 11111111)"
        );
        for e in [
            AgentError::Protocol("x".into()),
            AgentError::SessionNotFound("x".into()),
            AgentError::Other("x".into()),
        ] {
            assert_eq!(
                agent_failure(&e, s),
                "❌ Agent failed to process the request. Please try again. (ref: 11111111)"
            );
        }
    }

    #[test]
    fn no_reference_without_session() {
        assert_eq!(
            agent_failure(&AgentError::Other("x".into()), None),
            GENERIC_FAILURE
        );
        assert_eq!(
            agent_failure(&AgentError::Other("x".into()), Some("")),
            GENERIC_FAILURE
        );
    }

    #[test]
    fn short_session_ids_are_used_whole() {
        assert_eq!(session_ref(Some("abc")), " (ref: abc)");
        assert_eq!(session_ref(Some("abcdefghij")), " (ref: abcdefgh)");
    }

    #[test]
    fn detail_never_leaks() {
        for e in all_errors() {
            for s in [None, Some(SESSION)] {
                let text = agent_failure(&e, s);
                assert!(!text.contains("SECRET"), "{text}");
                assert!(!text.contains(DETAIL), "{text}");
                assert!(!text.contains(&e.to_string()), "{text}");
            }
        }
    }

    #[test]
    fn fixed_notices() {
        assert_eq!(EMPTY_MESSAGE, "(empty message)");
        assert_eq!(EMPTY_RESPONSE, "(empty response)");
        assert_eq!(NO_REPLY, "❌ Agent response was empty. Please try again.");
        assert_eq!(
            BUSY,
            "⚠️ Server busy — your message was dropped. Please retry."
        );
    }
}
