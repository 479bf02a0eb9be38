//! The tool policy of agent-chat-gateway: which tool calls an agent may make without asking.
//!
//! An agent's config has two allow-lists of `{tool, params}` regex rules (owners' and
//! guests'). When the agent wants to run a tool, the permission broker asks this crate:
//! extract the call's param strings (a file path, a URL, the split-up bash command line…),
//! match each against the caller's rules, and say whether the call runs, goes to the owners
//! for approval, or (for guests) is refused. Every decision can be explained, and every
//! decision can be appended to an audit trail.
//!
//! Layout:
//! - [`rules`]: compiling rules (full match, case-insensitive, Python-like regexes) and the
//!   built-in rules.
//! - [`input`]: the tool input as order-preserving JSON, and Python's `json.dumps` form of it.
//! - [`params`]: the param strings per tool; path normalization.
//! - [`bash`]: the hardened tree-sitter splitter for Bash commands.
//! - [`policy`]: [`ToolPolicy`], [`Decision`], [`Explanation`].
//! - [`audit`]: the append-only JSON-lines audit file.
//!
//! Entry points: [`ToolPolicy::new`] / [`ToolPolicy::explain`] for the broker,
//! [`check_from_config`] for `agent-chat-gateway policy check`, [`audit::AuditLog`] for the
//! trail. `docs/permissions.md` explains the semantics to users.

#![warn(missing_docs)]

pub mod audit;
pub mod bash;
pub mod input;
pub mod params;
pub mod policy;
pub mod rules;

use std::path::Path;

pub use bash::{split_bash, BashAnalysis, Opaque, WRITE_PREFIX};
pub use input::ToolInput;
pub use params::{extract_params, extract_patterns, normalize_lexically, Extraction};
pub use policy::{Decision, Explanation, ParamMatch, Role, RuleRef, ToolPolicy};
pub use rules::{CompiledRule, RuleList};

/// What can go wrong building or consulting a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A rule's pattern does not compile (or uses verbose mode).
    #[error("{list} rule #{} has an invalid {field} pattern {pattern:?}: {message}", index + 1)]
    InvalidRule {
        /// The list it is in.
        list: RuleList,
        /// 0-based index in that list.
        index: usize,
        /// `tool` or `params`.
        field: &'static str,
        /// The pattern as written.
        pattern: String,
        /// What the regex engine said.
        message: String,
    },
    /// No agent of that name in the config.
    #[error("unknown agent {agent:?}; agents in the config: {available}")]
    UnknownAgent {
        /// The name asked for.
        agent: String,
        /// The configured names, comma-separated (or `(none)`).
        available: String,
    },
    /// A role word other than `owner`/`guest`.
    #[error("unknown role {0:?}: expected owner or guest")]
    UnknownRole(String),
}

/// The explanation `agent-chat-gateway policy check` prints: builds `agent`'s policy from the
/// loaded config and explains the call. Adds notes for `permissions.enabled: false` (the
/// gateway then checks nothing) and applies `skip_owner_approval` to owners' calls.
pub fn check_from_config(
    config: &acg_config::Config,
    agent: &str,
    role: Role,
    tool_name: &str,
    input: &ToolInput,
    cwd: &Path,
) -> Result<Explanation, PolicyError> {
    let Some(agent_config) = config.agents.iter().find(|a| a.name == agent) else {
        let names: Vec<&str> = config.agents.iter().map(|a| a.name.as_str()).collect();
        return Err(PolicyError::UnknownAgent {
            agent: agent.to_string(),
            available: if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            },
        });
    };
    let policy = ToolPolicy::new(
        &agent_config.owner_allowed_tools,
        &agent_config.guest_allowed_tools,
    )?;
    let mut explanation = policy.explain(role, tool_name, input, cwd);
    let permissions = &agent_config.permissions;
    if role == Role::Owner
        && permissions.skip_owner_approval
        && explanation.decision == Decision::AskOwner
    {
        explanation.decision = Decision::SkipOwnerApproval;
        explanation.reason =
            "no rule approves it, but skip_owner_approval lets owners' calls run".to_string();
    }
    if !permissions.enabled {
        explanation.notes.push(format!(
            "permissions.enabled is false for agent {agent:?}: the gateway does not check its \
             tool calls; this is the decision it would make if it did"
        ));
    }
    Ok(explanation)
}
