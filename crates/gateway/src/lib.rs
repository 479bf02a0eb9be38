//! agent-chat-gateway as a library: the one dependency a Rust program needs to script agent
//! sessions or to run a gateway inside its own process.
//!
//! The `agent-chat-gateway` binary built from this package is the daemon and its CLI; this
//! library re-exports the crates it is made of under short names:
//!
//! - [`core`] (`acg-core`): the normalized types, the [`core::Connector`] and
//!   [`core::AgentBackend`] ports, watchers, prompts, state files, the
//!   [`core::gateway::Gateway`] service and the [`core::session`] scripting API.
//! - [`config`] (`acg-config`): loading and validating `config.yaml`.
//! - [`claude`] (`acg-claude`): the Claude Code CLI agent backend.
//! - [`opencode`] (`acg-opencode`): the OpenCode agent backend (a supervised `opencode serve`).
//! - [`script`] (`acg-script`): the in-memory `script` connector, to talk to watchers from code.
//! - [`policy`] (`acg-policy`): tool allow-lists, their explanations and the audit trail.
//!
//! And modules of its own, for tool permissions:
//! - [`decision`]: the [`decision::ToolGate`], where every agent's tool calls are decided
//!   (policy, guest denial, owner approval in chat, audit trail);
//! - [`broker`]: the Claude permission broker (the local HTTP server behind every
//!   `PreToolUse` hook), which the daemon runs for Claude agents with `permissions.enabled`;
//! - [`opencode_permissions`]: OpenCode's `permission.asked` requests through the same gate.
//!
//! # Script one agent session
//!
//! ```no_run
//! use std::sync::Arc;
//! use agent_chat_gateway::claude::{ClaudeBackend, ClaudeSettings};
//! use agent_chat_gateway::core::session::AgentSession;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let claude = Arc::new(ClaudeBackend::new(ClaudeSettings::new("claude")));
//! let session = AgentSession::new(claude, "/work/my-project");
//! session.start().await?;
//! let reply = session.send("Summarize the README in one sentence.").await?;
//! println!("{}", reply.text);
//! // The next turn continues the same session.
//! let reply = session.send("Now in French.").await?;
//! println!("{}", reply.text);
//! session.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Run a gateway in your process
//!
//! A gateway binds rooms of connectors to agent sessions ("watchers"). Here a `script`
//! connector stands in for a chat server, so the program itself plays the chat user:
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use agent_chat_gateway::claude::{ClaudeBackend, ClaudeSettings};
//! use agent_chat_gateway::core::context::ContextSources;
//! use agent_chat_gateway::core::gateway::{AgentSetup, ConnectorSetup, Gateway, GatewayOptions};
//! use agent_chat_gateway::core::watcher::WatcherSpec;
//! use agent_chat_gateway::script::ScriptConnector;
//!
//! # async fn demo() {
//! let chat = Arc::new(ScriptConnector::new("local"));
//! let claude = Arc::new(ClaudeBackend::new(ClaudeSettings::new("claude")));
//! let watcher = WatcherSpec {
//!     name: "helper".into(),
//!     connector: "local".into(),
//!     room: "desk".into(),
//!     agent: "claude".into(),
//!     pinned_session_id: None,
//!     working_directory: "/work/my-project".into(),
//!     new_session_args: vec![],
//!     session_prefix: "agent-chat".into(),
//!     turn_timeout: Duration::from_secs(360),
//!     max_queue_depth: 0,
//!     context: ContextSources::default(),
//!     online_notification: None,
//!     offline_notification: None,
//! };
//! let (gateway, report) = Gateway::start(
//!     GatewayOptions {
//!         runtime_dir: "/tmp/acg-runtime".into(),
//!         drain_timeout: Duration::from_secs(30),
//!     },
//!     vec![AgentSetup { name: "claude".into(), backend: claude }],
//!     vec![ConnectorSetup {
//!         connector: chat.clone(),
//!         connector_type: "script".into(),
//!         watchers: vec![watcher],
//!     }],
//! )
//! .await;
//! assert!(report.errors.is_empty(), "{:?}", report.errors);
//!
//! chat.inject("desk", "What does this project do?").await.unwrap();
//! let reply = chat.receive_reply("desk").await;
//! println!("{}", reply.text);
//! gateway.shutdown().await;
//! # }
//! ```
//!
//! To run the gateway from a `config.yaml` instead, use the binary (`agent-chat-gateway
//! start`), or load it with [`config::load`] and build the same setups from it.

pub mod broker;
pub mod decision;
pub mod opencode_permissions;
#[cfg(test)]
mod test_chat;

pub use acg_claude as claude;
pub use acg_config as config;
pub use acg_core as core;
pub use acg_opencode as opencode;
pub use acg_policy as policy;
pub use acg_script as script;
