//! Permission requests OpenCode raises during a turn, and the hook that answers them.
//!
//! When a tool needs approval (e.g. `bash`, which the gateway sets to `ask`), OpenCode emits a
//! `permission.asked` event and waits. The backend turns it into a [`PermissionAsked`], hands it
//! to the configured [`PermissionHandler`] (the gateway's policy and chat approval flow plug in
//! here) and posts the [`PermissionReply`] to `POST /permission/{id}/reply`. Without a handler
//! every request is rejected at once with [`NO_HANDLER_MESSAGE`], so the model learns why and a
//! turn never hangs until its deadline waiting for an answer nobody will give.

use async_trait::async_trait;
use serde_json::{json, Value};

/// What the model is told when no approval handler is configured.
pub const NO_HANDLER_MESSAGE: &str = "This tool call needs approval, and nobody can approve it \
in this chat session. Do not retry it; continue without it or explain what you would have run.";

/// One `permission.asked` event.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionAsked {
    /// The request id (`per_…`), used in the reply.
    pub id: String,
    /// The session that asked (the turn's session, or a sub-agent session it started).
    pub session_id: String,
    /// The turn's own session (differs from `session_id` for sub-agents).
    pub turn_session_id: String,
    /// The permission (tool) name, e.g. `bash`, `edit`, `webfetch`.
    pub permission: String,
    /// What the call would touch (for `bash`: the commands).
    pub patterns: Vec<String>,
    /// The tool's details (for `bash`: `{"command": …}`).
    pub metadata: Value,
    /// The patterns an `always` reply would allow from now on.
    pub always: Vec<String>,
    /// The tool call's id, when the request came from a tool call.
    pub call_id: Option<String>,
    /// The watcher the turn belongs to (for routing the question to a chat room).
    pub watcher: Option<String>,
}

impl PermissionAsked {
    /// Reads the `properties` of a `permission.asked` event; `None` when the id is missing.
    pub fn from_event(
        properties: &Value,
        turn_session_id: &str,
        watcher: Option<&str>,
    ) -> Option<Self> {
        let text = |key: &str| properties.get(key).and_then(Value::as_str);
        let list = |key: &str| -> Vec<String> {
            properties
                .get(key)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(PermissionAsked {
            id: text("id").filter(|id| !id.is_empty())?.to_owned(),
            session_id: text("sessionID").unwrap_or(turn_session_id).to_owned(),
            turn_session_id: turn_session_id.to_owned(),
            permission: text("permission").unwrap_or_default().to_owned(),
            patterns: list("patterns"),
            metadata: properties.get("metadata").cloned().unwrap_or(Value::Null),
            always: list("always"),
            call_id: properties
                .pointer("/tool/callID")
                .and_then(Value::as_str)
                .map(str::to_owned),
            watcher: watcher.map(str::to_owned),
        })
    }
}

/// The answer to a permission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionReply {
    /// Allow this one call.
    Once,
    /// Allow this call and the request's `always` patterns for the rest of the server's life.
    Always,
    /// Refuse. With a message the model gets it as feedback and the turn goes on; without one
    /// the turn stops.
    Reject {
        /// Feedback for the model.
        message: Option<String>,
    },
}

impl PermissionReply {
    /// The body of `POST /permission/{id}/reply`.
    pub fn to_body(&self) -> Value {
        match self {
            PermissionReply::Once => json!({"reply": "once"}),
            PermissionReply::Always => json!({"reply": "always"}),
            PermissionReply::Reject { message: None } => json!({"reply": "reject"}),
            PermissionReply::Reject {
                message: Some(message),
            } => json!({"reply": "reject", "message": message}),
        }
    }
}

/// Decides permission requests (the gateway's policy and chat approvals implement it).
///
/// Called on its own task while the turn keeps streaming; it may take as long as a person needs
/// (the turn's deadline still applies: when the turn ends, the pending call is dropped).
#[async_trait]
pub trait PermissionHandler: Send + Sync + 'static {
    /// Answers one request.
    async fn decide(&self, request: PermissionAsked) -> PermissionReply;
}

/// Any async closure `Fn(PermissionAsked) -> Future<Output = PermissionReply>` is a handler.
#[async_trait]
impl<F, Fut> PermissionHandler for F
where
    F: Fn(PermissionAsked) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = PermissionReply> + Send + 'static,
{
    async fn decide(&self, request: PermissionAsked) -> PermissionReply {
        self(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_event_and_builds_reply_bodies() {
        let props = json!({"id":"per_1","sessionID":"ses_child","permission":"bash",
            "patterns":["echo hi > out.txt"],"metadata":{"command":"echo hi > out.txt"},
            "always":["echo *"],"tool":{"messageID":"msg_1","callID":"call_1"}});
        let ask = PermissionAsked::from_event(&props, "ses_root", Some("w1")).unwrap();
        assert_eq!(ask.id, "per_1");
        assert_eq!(ask.session_id, "ses_child");
        assert_eq!(ask.turn_session_id, "ses_root");
        assert_eq!(ask.permission, "bash");
        assert_eq!(ask.patterns, vec!["echo hi > out.txt".to_owned()]);
        assert_eq!(ask.metadata["command"], "echo hi > out.txt");
        assert_eq!(ask.always, vec!["echo *".to_owned()]);
        assert_eq!(ask.call_id.as_deref(), Some("call_1"));
        assert_eq!(ask.watcher.as_deref(), Some("w1"));
        assert!(PermissionAsked::from_event(&json!({}), "s", None).is_none());

        assert_eq!(PermissionReply::Once.to_body(), json!({"reply": "once"}));
        assert_eq!(
            PermissionReply::Always.to_body(),
            json!({"reply": "always"})
        );
        assert_eq!(
            PermissionReply::Reject { message: None }.to_body(),
            json!({"reply": "reject"})
        );
        assert_eq!(
            PermissionReply::Reject {
                message: Some("no".into())
            }
            .to_body(),
            json!({"reply": "reject", "message": "no"})
        );
    }

    #[tokio::test]
    async fn closures_are_handlers() {
        let handler: std::sync::Arc<dyn PermissionHandler> =
            std::sync::Arc::new(|ask: PermissionAsked| async move {
                if ask.permission == "bash" {
                    PermissionReply::Once
                } else {
                    PermissionReply::Reject { message: None }
                }
            });
        let ask =
            PermissionAsked::from_event(&json!({"id": "per_1", "permission": "bash"}), "s", None)
                .unwrap();
        assert_eq!(handler.decide(ask).await, PermissionReply::Once);
    }
}
