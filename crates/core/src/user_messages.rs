//! Every text the gateway itself shows chat users, in one place. None contains internals:
//! details go to the log.

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

/// The chat text for a failed turn, with ` (ref: <first 8 chars of the session>)`.
pub fn agent_failure(error: &AgentError, session_id: Option<&str>) -> String {
    todo!("{error:?}{session_id:?}")
}
