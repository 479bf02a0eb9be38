//! The decision on one tool call, shared by every agent type: the Claude `PreToolUse` hook
//! ([`crate::broker`]) and OpenCode's `permission.asked` requests
//! ([`crate::opencode_permissions`]) both turn what they got into a [`ToolCall`] and ask the
//! daemon's one [`ToolGate`] (digest §4.4, §5.3, §6).
//!
//! The order, failing closed at every step:
//! 1. `ToolSearch` is always allowed (it only loads tool descriptions);
//! 2. the session's turn is looked up in the [`ApprovalRegistry`]; an unknown session, or one
//!    whose agent the gate does not know, counts as a guest of no agent (built-in guest rules
//!    only);
//! 3. guest: allowed when the agent's guest rules cover every param, else denied — the chat is
//!    not asked;
//! 4. owner: allowed when the owner rules cover every param;
//! 5. owner with `skip_owner_approval`: allowed;
//! 6. owner of an agent whose `permissions.enabled` is false (only OpenCode agents get here:
//!    their sidecar asks whatever the gateway does): denied without asking anyone;
//! 7. otherwise the owners are asked in the room ([`ApprovalRegistry::ask_then`]).
//!
//! Every decision is appended to the audit trail (`<runtime>/audit.jsonl`), an "asked" record
//! as soon as the request is in the room; an allow that cannot be recorded becomes a denial.
//! A denial's reason is what the model reads as the tool's result, so it says in plain words
//! what happened.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use acg_core::approval::{ApprovalRegistry, Ask, Decision, TurnContext};
use acg_core::Role;
use acg_policy::audit::{AuditDecision, AuditLog, AuditRecord};
use acg_policy::{Explanation, Role as PolicyRole, ToolInput, ToolPolicy};
use jiff::Timestamp;
use serde_json::Value;
use tracing::{error, info, warn};

/// One agent's permission settings and compiled allow-lists.
pub struct AgentPermissions {
    /// `permissions:` of the agent.
    pub settings: acg_config::PermissionSettings,
    /// Its allow-lists (built-in rules first).
    pub policy: ToolPolicy,
}

impl AgentPermissions {
    /// Compiles an agent's rules; fails on a pattern the policy cannot use.
    pub fn from_config(agent: &acg_config::AgentConfig) -> Result<Self, acg_policy::PolicyError> {
        Ok(AgentPermissions {
            settings: agent.permissions.clone(),
            policy: ToolPolicy::new(&agent.owner_allowed_tools, &agent.guest_allowed_tools)?,
        })
    }
}

/// Where a call's param strings come from.
#[derive(Debug, Clone)]
pub enum CallParams {
    /// A Claude tool input: params extracted per tool, paths made absolute against `cwd`.
    Input {
        /// The tool input, in the agent's key order.
        input: ToolInput,
        /// The agent's working directory.
        cwd: PathBuf,
    },
    /// The `patterns` of an OpenCode permission request (bash patterns are split again).
    Patterns(Vec<String>),
}

/// A tool call an agent wants to make, as every permission path describes it.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// The session whose turn is running (looked up in the approval registry).
    pub session_id: String,
    /// The tool's name as the agent calls it.
    pub tool: String,
    /// What the policy judges.
    pub params: CallParams,
    /// What the owners see in the request message (`key=value` pairs, in order).
    pub shown: Vec<(String, Value)>,
    /// The input as the audit trail records it (`json.dumps` form).
    pub audit_input: String,
}

/// The answer to a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the call may run.
    pub allow: bool,
    /// Why (for a denial: what the model reads as the tool's result).
    pub reason: String,
}

impl Verdict {
    /// The call may run.
    pub fn allow(reason: impl Into<String>) -> Self {
        Verdict {
            allow: true,
            reason: reason.into(),
        }
    }

    /// The call may not run.
    pub fn deny(reason: impl Into<String>) -> Self {
        Verdict {
            allow: false,
            reason: reason.into(),
        }
    }
}

/// The daemon's one place where tool calls are decided: the agents' policies, the approval
/// registry the owners answer through, and the audit trail.
pub struct ToolGate {
    approvals: Arc<ApprovalRegistry>,
    agents: HashMap<String, AgentPermissions>,
    fallback: ToolPolicy,
    audit: AuditLog,
}

impl ToolGate {
    /// A gate for the given agents (by name). Sessions no watcher ran are judged by the
    /// built-in guest rules alone.
    pub fn new(
        approvals: Arc<ApprovalRegistry>,
        agents: HashMap<String, AgentPermissions>,
        audit: AuditLog,
    ) -> Result<Self, acg_policy::PolicyError> {
        Ok(ToolGate {
            approvals,
            agents,
            fallback: ToolPolicy::new(&[], &[])?,
            audit,
        })
    }

    /// Whether this gate judges `agent`'s calls (it was configured and its rules compiled).
    pub fn covers(&self, agent: &str) -> bool {
        self.agents.contains_key(agent)
    }

    /// The names of the agents it judges.
    pub fn agent_names(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
    }

    /// Decides on one tool call (see the module doc for the order) and records it.
    pub async fn decide(&self, call: ToolCall) -> Verdict {
        let context = self.approvals.turn_context(&call.session_id);
        let mut record = AuditRecord {
            time: Timestamp::now(),
            connector: context
                .as_ref()
                .map(|c| c.connector.name().to_string())
                .unwrap_or_default(),
            watcher: context
                .as_ref()
                .map(|c| c.watcher.clone())
                .unwrap_or_default(),
            session: call.session_id.clone(),
            requester: context
                .as_ref()
                .map(|c| c.requester.clone())
                .unwrap_or_default(),
            approver: None,
            tool: call.tool.clone(),
            params: Vec::new(),
            input: call.audit_input.clone(),
            decision: AuditDecision::AutoAllowed,
            rule: None,
            reason: String::new(),
        };

        if call.tool == "ToolSearch" {
            record.reason = "ToolSearch only loads tool descriptions".into();
            return self
                .finish(record, Verdict::allow("ToolSearch is always allowed"))
                .await;
        }

        let agent = context.as_ref().and_then(|c| self.agents.get(&c.agent));
        if context.is_some() && agent.is_none() {
            warn!(session = %call.session_id,
                "tool call for an agent without permission settings; judged as a guest");
        }
        // An unknown session, or one whose agent is not configured here, is a guest's.
        let owner = match (agent, &context) {
            (Some(agent), Some(context)) if context.role == Role::Owner => Some((agent, context)),
            _ => None,
        };
        let role = if owner.is_some() {
            PolicyRole::Owner
        } else {
            PolicyRole::Guest
        };
        let policy = agent.map_or(&self.fallback, |a| &a.policy);
        let explanation = explain(policy, role, &call);
        record.params = explanation.param_strings();
        let rules = explanation.approving_rules();
        let covered = explanation.is_auto_allowed();

        let Some((agent, context)) = owner else {
            if covered {
                record.rule = (!rules.is_empty()).then(|| rules.join("; "));
                record.reason = "guest rules allow every param".into();
                return self
                    .finish(record, Verdict::allow("allowed by the guest rules"))
                    .await;
            }
            record.decision = AuditDecision::GuestDenied;
            record.reason = explanation.reason.clone();
            return self
                .finish(record, Verdict::deny(reason_guest(&call.tool)))
                .await;
        };

        if covered {
            record.rule = (!rules.is_empty()).then(|| rules.join("; "));
            record.reason = "owner rules allow every param".into();
            return self
                .finish(record, Verdict::allow("allowed by the owner rules"))
                .await;
        }
        if agent.settings.skip_owner_approval {
            record.decision = AuditDecision::SkipOwnerApproval;
            record.reason = "skip_owner_approval: owners' calls run without asking".into();
            return self
                .finish(
                    record,
                    Verdict::allow("owners' tool calls need no approval"),
                )
                .await;
        }
        if !agent.settings.enabled {
            record.decision = AuditDecision::Denied;
            record.reason =
                "no owner rule allows it and permissions.enabled is false: nobody is asked".into();
            return self
                .finish(record, Verdict::deny(reason_no_chat(&call.tool)))
                .await;
        }
        self.ask_owners(record, agent, context, call).await
    }

    async fn ask_owners(
        &self,
        mut record: AuditRecord,
        agent: &AgentPermissions,
        context: &TurnContext,
        call: ToolCall,
    ) -> Verdict {
        let ask = Ask {
            session_id: call.session_id,
            tool: call.tool,
            input: call.shown,
            timeout: agent.settings.timeout,
            require_other_owner: agent.settings.require_other_owner,
        };
        // The trail shows the question as soon as it is in the room, then the answer.
        let asked = record.clone();
        let outcome = self
            .approvals
            .ask_then(ask, |request| async move {
                let mut asked = asked;
                asked.time = Timestamp::now();
                asked.decision = AuditDecision::Asked;
                asked.reason = format!(
                    "owners asked in chat (request {}, {} s to answer)",
                    request.id,
                    request.timeout.as_secs()
                );
                if let Err(e) = self.append(asked).await {
                    error!(error = %e, "cannot write the audit trail");
                }
            })
            .await;
        let id = outcome.id.unwrap_or_else(|| "-".into());
        record.time = Timestamp::now();
        record.approver = outcome.decision.decided_by().map(str::to_string);
        let verdict = match &outcome.decision {
            Decision::Approved { by } => {
                record.decision = AuditDecision::Approved;
                record.reason = format!("approved by {by} in chat (request {id})");
                Verdict::allow(format!("approved by {by} in chat"))
            }
            Decision::Denied { by } => {
                record.decision = AuditDecision::Denied;
                record.reason = format!("denied by {by} in chat (request {id})");
                Verdict::deny(reason_denied(by, &id))
            }
            Decision::TimedOut { after } => {
                record.decision = AuditDecision::TimedOut;
                record.reason =
                    format!("nobody answered request {id} within {} s", after.as_secs());
                Verdict::deny(reason_timed_out(&id, *after))
            }
            Decision::Cancelled => {
                record.decision = AuditDecision::Denied;
                record.reason =
                    format!("request {id} withdrawn: the watcher was paused, reset or stopped");
                Verdict::deny(REASON_WITHDRAWN)
            }
            Decision::Undeliverable | Decision::NoRoom => {
                record.decision = AuditDecision::Undeliverable;
                record.reason = "the owners could not be asked in chat".into();
                Verdict::deny(reason_not_asked(&context.room.name))
            }
        };
        self.finish(record, verdict).await
    }

    /// Records the decision; an allow that cannot be recorded becomes a denial.
    async fn finish(&self, record: AuditRecord, verdict: Verdict) -> Verdict {
        info!(tool = %record.tool, watcher = %record.watcher, decision = %record.decision,
            rule = ?record.rule, approver = ?record.approver, "tool call decided");
        match self.append(record).await {
            Ok(()) => verdict,
            Err(e) => {
                error!(error = %e, "cannot write the audit trail");
                if verdict.allow {
                    Verdict::deny(REASON_NOT_RECORDED)
                } else {
                    verdict
                }
            }
        }
    }

    /// Appends off the async threads (the audit log syncs every record).
    async fn append(&self, record: AuditRecord) -> Result<(), String> {
        let audit = self.audit.clone();
        match tokio::task::spawn_blocking(move || audit.append(&record)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Records a request that never got to a decision (e.g. an unauthenticated hook call).
    pub async fn record_rejected(&self, reason: String) {
        let record = AuditRecord {
            time: Timestamp::now(),
            connector: String::new(),
            watcher: String::new(),
            session: String::new(),
            requester: String::new(),
            approver: None,
            tool: String::new(),
            params: Vec::new(),
            input: String::new(),
            decision: AuditDecision::HookRejected,
            rule: None,
            reason,
        };
        if let Err(e) = self.append(record).await {
            error!(error = %e, "cannot write the audit trail");
        }
    }
}

fn explain(policy: &ToolPolicy, role: PolicyRole, call: &ToolCall) -> Explanation {
    match &call.params {
        CallParams::Input { input, cwd } => policy.explain(role, &call.tool, input, cwd),
        CallParams::Patterns(patterns) => policy.explain_patterns(role, &call.tool, patterns),
    }
}

/// What the model reads when an allow could not be written to the audit trail.
pub const REASON_NOT_RECORDED: &str = "Blocked by the gateway: the decision could not be \
recorded in the audit trail, so the tool call was refused as a safe default.";

/// What the model reads when the watcher stopped while the owners were being asked.
pub const REASON_WITHDRAWN: &str = "This tool call was denied because the chat watcher was \
paused, reset or stopped while the owners were being asked.";

/// What the model reads when an owner denied the call in chat.
pub fn reason_denied(owner: &str, id: &str) -> String {
    format!(
        "The owner {owner} denied this tool call in chat (they replied `deny {id}`). Do not \
         retry it unless they ask you to."
    )
}

/// What the model reads when nobody answered in time.
pub fn reason_timed_out(id: &str, after: Duration) -> String {
    format!(
        "This tool call was denied because nobody answered the permission request `{id}` in \
         chat within {} s (it timed out; no owner denied it). The user may ask again when an \
         owner is available.",
        after.as_secs()
    )
}

/// What the model reads when the owners could not be asked at all.
pub fn reason_not_asked(room: &str) -> String {
    format!(
        "Blocked by the gateway: the owners of {room} could not be asked in chat (the \
         permission request could not be posted), so the tool call was refused as a safe \
         default. Please retry later."
    )
}

/// What the model reads when a guest may not use a tool.
pub fn reason_guest(tool: &str) -> String {
    format!(
        "The tool '{tool}' is not permitted for guests in this chat, so the call was denied. \
         Answer without it, or ask an owner to run it."
    )
}

/// What the model reads when an owner's call needs approval but approvals in chat are off
/// for the agent (`permissions.enabled: false`).
pub fn reason_no_chat(tool: &str) -> String {
    format!(
        "This '{tool}' call needs an owner's approval, but approvals in chat are turned off for \
         this agent, so nobody can be asked and the call was denied. Answer without it; an \
         owner can allow such calls with a rule in owner_allowed_tools."
    )
}
