//! OpenCode's permission requests through the gateway's [`ToolGate`]: the same policy, chat
//! approval flow and audit trail as the Claude hook (digest §5.3, §6), with no plugin to
//! install.
//!
//! Every OpenCode backend the daemon builds gets an [`OpencodeApprovals`] as its
//! [`PermissionHandler`]. A `permission.asked` event becomes a [`ToolCall`]: the tool is the
//! request's `permission` (`bash`, `edit`, `webfetch`, …), the params are its `patterns` (bash
//! patterns split again by the policy), the owners see its `metadata` (for `bash`:
//! `command='…'`), and the turn is found in the approval registry by the turn's own session
//! (a sub-agent's request is judged as its parent turn's). The gate's verdict is answered
//! `once` (never `always`: every call is judged on its own) or `reject` with the verdict's
//! reason as the message, so the model reads why and the turn goes on.
//!
//! - Guests: allowed by their rules, else rejected at once; the chat never hears of it.
//! - Owners: allowed by their rules (or `skip_owner_approval`), else asked in the room; an
//!   approval answers `once`, anything else (deny, timeout, the watcher paused, reset or
//!   stopped, the request undeliverable) answers `reject`.
//! - `permissions.enabled: false`: the sidecar keeps its defaults (shell commands ask, a few
//!   read-only git commands do not) and its requests are answered by the rules alone — owners
//!   and guests are never asked in chat; an owner's call no rule allows is rejected with a
//!   message saying approvals are off.
//!
//! With `permissions.enabled: true` the backend's sessions also make *every* tool ask
//! ([`OpencodeSettings::gate_every_tool`](acg_opencode::OpencodeSettings::gate_every_tool)),
//! so the gateway, not OpenCode's own config, decides each call — as the Claude hook does.

use std::sync::Arc;

use acg_opencode::{PermissionAsked, PermissionHandler, PermissionReply};
use acg_policy::ToolInput;
use async_trait::async_trait;
use serde_json::{json, Value};

use crate::decision::{CallParams, ToolCall, ToolGate, Verdict};

/// The [`PermissionHandler`] of the daemon's OpenCode backends.
#[derive(Clone)]
pub struct OpencodeApprovals {
    gate: Arc<ToolGate>,
}

impl OpencodeApprovals {
    /// A handler deciding through `gate`.
    pub fn new(gate: Arc<ToolGate>) -> Self {
        OpencodeApprovals { gate }
    }
}

impl std::fmt::Debug for OpencodeApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpencodeApprovals").finish_non_exhaustive()
    }
}

#[async_trait]
impl PermissionHandler for OpencodeApprovals {
    async fn decide(&self, request: PermissionAsked) -> PermissionReply {
        let id = request.id.clone();
        let verdict = self.gate.decide(tool_call(request)).await;
        tracing::debug!(request = %id, allow = verdict.allow, "opencode permission request answered");
        reply_for(verdict)
    }
}

/// The reply for a verdict: `once`, or `reject` with the reason for the model.
pub fn reply_for(verdict: Verdict) -> PermissionReply {
    if verdict.allow {
        PermissionReply::Once
    } else {
        PermissionReply::Reject {
            message: Some(verdict.reason),
        }
    }
}

/// What the owners are shown: the request's `metadata` fields when it has any, else its
/// patterns as `commands`, else nothing.
pub fn shown_input(request: &PermissionAsked) -> Vec<(String, Value)> {
    match &request.metadata {
        Value::Object(fields) if !fields.is_empty() => {
            fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        _ if !request.patterns.is_empty() => {
            vec![("commands".to_string(), json!(request.patterns))]
        }
        _ => Vec::new(),
    }
}

/// The request as the gate judges it.
pub fn tool_call(request: PermissionAsked) -> ToolCall {
    let shown = shown_input(&request);
    let audit_input = ToolInput::Object(
        shown
            .iter()
            .map(|(k, v)| (k.clone(), ToolInput::from_value(v)))
            .collect(),
    )
    .to_python_json();
    ToolCall {
        session_id: request.turn_session_id,
        tool: request.permission,
        params: CallParams::Patterns(request.patterns),
        shown,
        audit_input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    use acg_core::approval::{parse_command, ApprovalRegistry, TurnContext};
    use acg_core::{IncomingMessage, Role};
    use acg_policy::audit::{AuditDecision, AuditFilter, AuditLog};
    use acg_policy::ToolPolicy;

    use crate::decision::AgentPermissions;
    use crate::test_chat::{room_named, Chat};

    struct Setup {
        dir: tempfile::TempDir,
        chat: Arc<Chat>,
        approvals: Arc<ApprovalRegistry>,
        handler: OpencodeApprovals,
    }

    fn setup(enabled: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let chat = Arc::new(Chat::default());
        let approvals = Arc::new(ApprovalRegistry::new());
        let rule = |tool: &str, params: &str| acg_config::ToolRule {
            tool: tool.into(),
            params: Some(params.into()),
        };
        let mut agents = HashMap::new();
        agents.insert(
            "coder".to_string(),
            AgentPermissions {
                settings: acg_config::PermissionSettings {
                    enabled,
                    timeout: Duration::from_secs(60),
                    skip_owner_approval: false,
                    require_other_owner: false,
                },
                policy: ToolPolicy::new(&[rule("bash", "ls( .*)?")], &[rule("read", ".*")])
                    .unwrap(),
            },
        );
        let audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let gate = Arc::new(ToolGate::new(approvals.clone(), agents, audit).unwrap());
        Setup {
            dir,
            chat,
            approvals,
            handler: OpencodeApprovals::new(gate),
        }
    }

    impl Setup {
        fn turn(&self, session: &str, role: Role) {
            self.approvals.register_turn(
                session,
                TurnContext {
                    watcher: "w".into(),
                    agent: "coder".into(),
                    connector: self.chat.clone(),
                    room: room_named("desk"),
                    thread: None,
                    requester: "alice".into(),
                    role,
                },
            );
        }

        fn decisions(&self) -> Vec<AuditDecision> {
            AuditLog::read(
                &self.dir.path().join("audit.jsonl"),
                &AuditFilter::default(),
            )
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.record.decision)
            .collect()
        }

        fn posts(&self) -> Vec<String> {
            self.chat.texts()
        }
    }

    fn asked(permission: &str, patterns: &[&str], metadata: Value) -> PermissionAsked {
        PermissionAsked {
            id: "per_1".into(),
            session_id: "ses_child".into(),
            turn_session_id: "ses_turn".into(),
            permission: permission.into(),
            patterns: patterns.iter().map(|p| (*p).to_string()).collect(),
            metadata,
            always: vec![],
            call_id: Some("call_1".into()),
            watcher: Some("w".into()),
        }
    }

    fn owner_says(s: &Setup, text: &str) {
        let msg = IncomingMessage {
            id: "m".into(),
            room: room_named("desk"),
            sender: acg_core::Sender {
                id: "bob".into(),
                username: "bob".into(),
                display_name: None,
            },
            role: Role::Owner,
            text: text.into(),
            timestamp_ms: None,
            thread_id: None,
            permission_thread_id: None,
            mentions: vec![],
            attachments: vec![],
            warnings: vec![],
            prompt_header: String::new(),
        };
        s.approvals
            .apply("chat", &msg, &parse_command(text).unwrap());
    }

    async fn pending_id(approvals: &ApprovalRegistry) -> String {
        for _ in 0..3000 {
            if let Some(r) = approvals.pending().first() {
                return r.id.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no pending request");
    }

    #[test]
    fn requests_become_calls_with_what_owners_see() {
        let call = tool_call(asked(
            "bash",
            &["rm -rf build"],
            json!({"command": "rm -rf build"}),
        ));
        assert_eq!(call.session_id, "ses_turn");
        assert_eq!(call.tool, "bash");
        assert_eq!(call.shown, vec![("command".into(), json!("rm -rf build"))]);
        assert_eq!(call.audit_input, r#"{"command": "rm -rf build"}"#);
        assert!(matches!(call.params, CallParams::Patterns(p) if p == ["rm -rf build"]));
        // No metadata: the patterns are shown.
        let call = tool_call(asked("external_directory", &["/etc/*"], Value::Null));
        assert_eq!(call.shown, vec![("commands".into(), json!(["/etc/*"]))]);
        let call = tool_call(asked("doom_loop", &[], json!({})));
        assert!(call.shown.is_empty());
        assert_eq!(reply_for(Verdict::allow("ok")), PermissionReply::Once);
        assert_eq!(
            reply_for(Verdict::deny("no")),
            PermissionReply::Reject {
                message: Some("no".into())
            }
        );
    }

    #[tokio::test]
    async fn guests_by_their_rules_owners_by_rules_or_in_chat() {
        let s = setup(true);
        s.turn("ses_turn", Role::Guest);
        let read = s
            .handler
            .decide(asked("read", &["/w/notes.txt"], json!({})))
            .await;
        assert_eq!(read, PermissionReply::Once);
        let bash = s
            .handler
            .decide(asked("bash", &["ls"], json!({"command": "ls"})))
            .await;
        let PermissionReply::Reject { message: Some(why) } = bash else {
            panic!("{bash:?}");
        };
        assert!(why.contains("not permitted for guests"), "{why}");
        assert!(s.posts().is_empty(), "guests never reach the chat");

        s.turn("ses_turn", Role::Owner);
        let ls = s
            .handler
            .decide(asked("bash", &["ls -la"], json!({"command": "ls -la"})))
            .await;
        assert_eq!(ls, PermissionReply::Once);
        assert!(s.posts().is_empty());

        let handler = s.handler.clone();
        let asking = tokio::spawn(async move {
            handler
                .decide(asked("bash", &["touch x"], json!({"command": "touch x"})))
                .await
        });
        let id = pending_id(&s.approvals).await;
        assert_eq!(
            s.posts()[0],
            format!(
                "🔐 **Permission required** `[{id}]`\n**Tool:** `bash`\n**Params:** `command='touch x'`\nReply `approve {id}` or `deny {id}`"
            )
        );
        owner_says(&s, &format!("approve {id}"));
        assert_eq!(asking.await.unwrap(), PermissionReply::Once);

        let handler = s.handler.clone();
        let asking = tokio::spawn(async move {
            handler
                .decide(asked("bash", &["rm x"], json!({"command": "rm x"})))
                .await
        });
        let id = pending_id(&s.approvals).await;
        owner_says(&s, &format!("deny {id}"));
        let PermissionReply::Reject { message: Some(why) } = asking.await.unwrap() else {
            panic!("not a reject with a message");
        };
        assert!(why.contains("bob denied"), "{why}");

        assert_eq!(
            s.decisions(),
            [
                AuditDecision::AutoAllowed,
                AuditDecision::GuestDenied,
                AuditDecision::AutoAllowed,
                AuditDecision::Asked,
                AuditDecision::Approved,
                AuditDecision::Asked,
                AuditDecision::Denied,
            ]
        );
    }

    #[tokio::test]
    async fn a_stopping_watcher_rejects_the_pending_request() {
        let s = setup(true);
        s.turn("ses_turn", Role::Owner);
        let handler = s.handler.clone();
        let asking = tokio::spawn(async move {
            handler
                .decide(asked("bash", &["make"], json!({"command": "make"})))
                .await
        });
        pending_id(&s.approvals).await;
        assert_eq!(s.approvals.close_watcher("w"), 1);
        let PermissionReply::Reject { message: Some(why) } = asking.await.unwrap() else {
            panic!("not a reject with a message");
        };
        assert!(why.contains("paused, reset or stopped"), "{why}");
    }

    #[tokio::test]
    async fn with_approvals_off_nobody_is_asked() {
        let s = setup(false);
        s.turn("ses_turn", Role::Owner);
        let ls = s
            .handler
            .decide(asked("bash", &["ls"], json!({"command": "ls"})))
            .await;
        assert_eq!(ls, PermissionReply::Once);
        let touch = s
            .handler
            .decide(asked("bash", &["touch x"], json!({"command": "touch x"})))
            .await;
        let PermissionReply::Reject { message: Some(why) } = touch else {
            panic!("{touch:?}");
        };
        assert!(why.contains("approvals in chat are turned off"), "{why}");
        s.turn("ses_turn", Role::Guest);
        assert!(matches!(
            s.handler
                .decide(asked("bash", &["ls"], json!({"command": "ls"})))
                .await,
            PermissionReply::Reject { .. }
        ));
        // An unknown session is a guest's, whatever the agent.
        let mut stranger = asked("read", &["/x"], json!({}));
        stranger.turn_session_id = "ses_unknown".into();
        assert!(matches!(
            s.handler.decide(stranger).await,
            PermissionReply::Reject { .. }
        ));
        assert!(s.posts().is_empty());
        assert_eq!(
            s.decisions(),
            [
                AuditDecision::AutoAllowed,
                AuditDecision::Denied,
                AuditDecision::GuestDenied,
                AuditDecision::GuestDenied,
            ]
        );
    }
}
