//! OpenCode as an agent backend for agent-chat-gateway.
//!
//! [`OpencodeBackend`] implements [`acg_core::AgentBackend`] by running one `opencode serve`
//! per agent (the *sidecar*, supervised: restarted when it dies, given up on after repeated
//! failures, password-protected) and talking to it over HTTP: sessions are created and
//! continued by id, turns are posted with `prompt_async` and followed on the `/event` stream.
//! See the crate README for the wire details and measurements.
//!
//! Layout:
//! - [`backend`]: settings, the trait implementation, turn timings.
//! - [`sidecar`]: starting, watching, restarting and stopping the server; [`SidecarState`].
//! - [`turn`]: following one turn on the event stream (pure state machine).
//! - [`permission`]: permission requests and the [`PermissionHandler`] hook for approvals.
//! - [`config_content`]: merging the gateway's permission defaults into
//!   `OPENCODE_CONFIG_CONTENT`.
//! - [`attachments`]: file parts or path notes for a message's files.
//! - [`events`]: one long-lived `/event` stream per server, shared by the turns.
//! - [`http`] and [`sse`]: the small HTTP client and event-stream parser.
//! - [`proctree`]: the sidecar's process tree (stop, kill, memory): the shared `acg-proctree`
//!   crate, re-exported.

pub mod attachments;
pub mod backend;
pub mod config_content;
pub mod events;
pub mod http;
pub mod permission;
pub mod sidecar;
pub mod sse;
pub mod turn;

pub use acg_proctree as proctree;
pub use backend::{OpencodeBackend, OpencodeSettings, TurnTimings};
pub use config_content::{merged_config_content, ConfigContentError};
pub use permission::{PermissionAsked, PermissionHandler, PermissionReply};
pub use sidecar::{SidecarError, SidecarState};
