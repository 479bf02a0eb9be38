//! The core of agent-chat-gateway. It knows nothing of Rocket.Chat, Claude or HTTP.
//!
//! Layout, in the order one message travels:
//! - [`types`]: the normalized vocabulary (rooms, senders, roles, incoming messages, agent
//!   requests, responses and events) every adapter speaks.
//! - [`ports`]: the two traits adapters implement: [`ports::Connector`] for a chat platform and
//!   [`ports::AgentBackend`] for an agent.
//! - [`prompt`]: the trusted prompt header, per-message prompts, catch-up batches and
//!   attachment notes.
//! - [`context`]: the durable system prompt (session identity + context files) written per watcher.
//! - [`watcher`]: one worker per watched room: bounded queue, one turn at a time, catch-up batching.
//! - [`dispatcher`]: routes normalized inbound messages to the watchers of their room, after
//!   letting the approval registry take owners' `approve`/`deny` commands.
//! - [`approval`]: human-in-the-loop approval of tool calls: pending permission requests,
//!   the session → turn directory, and owners' commands.
//! - [`state`]: `state.<connector>.json`, written atomically.
//! - [`user_messages`]: every text a chat user can see from the gateway itself, in one place.
//! - [`gateway`]: the service object the daemon runs and the control socket drives.
//! - [`session`]: the scripting API: drive one agent session from Rust code.

pub mod approval;
pub mod context;
pub mod dispatcher;
pub mod gateway;
pub mod ports;
pub mod prompt;
pub mod session;
pub mod state;
pub mod types;
pub mod user_messages;
pub mod watcher;

pub use ports::{AgentBackend, Connector, EventSink};
pub use types::*;
