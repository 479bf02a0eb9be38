//! The Claude Code CLI as an agent backend for agent-chat-gateway.
//!
//! [`ClaudeBackend`] implements [`acg_core::AgentBackend`] by running the `claude` CLI once per
//! session creation and once per turn (`-p`, print mode), resuming the session by id. See the
//! crate README for the exact argv and why each flag is there.
//!
//! Layout:
//! - [`backend`]: settings, argv, environment, and the trait implementation.
//! - [`process`]: running one CLI process under a deadline (own process group, capped pipes,
//!   graceful then forced termination, cancellation safety).
//! - [`proctree`]: finding and killing every process a run started, via `/proc` (the shared
//!   `acg-proctree` crate, re-exported).
//! - [`stream`]: parsing `stream-json` / `json` output by key.
//! - [`classify`]: turning an exit and its output into success or an error class.
//! - [`transcript`]: locating a session's transcript for `delete_session`.

pub mod backend;
pub mod classify;
pub mod process;
pub mod stream;
pub mod transcript;

pub use acg_proctree as proctree;
pub use backend::{ClaudeBackend, ClaudeSettings, INIT_PROMPT};
pub use process::RunTimings;
