//! Prompt building: the trusted header (digest §1.10), one message's prompt (§3.1), catch-up
//! batches (§3.3) and attachment notes (§3.4).
//!
//! The header is built only from data the connector got from the server (room, sender, role,
//! server timestamp, server-side mentions), never from the message text.

use std::path::{Path, PathBuf};

use crate::types::{IncomingMessage, Role, RoomKind};

/// Everything the trusted header needs, all from trusted connector data.
#[derive(Debug, Clone)]
pub struct HeaderFields<'a> {
    /// Platform label, e.g. `Rocket.Chat`.
    pub platform: &'a str,
    /// Resolved room name (for DMs the configured `@user`).
    pub room_name: &'a str,
    /// Room kind (`Dm` makes `to: me`).
    pub room_kind: RoomKind,
    /// Sender's username.
    pub sender: &'a str,
    /// Sender's role.
    pub role: Role,
    /// Server timestamp in ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// IANA zone name for `day:`/`ts:`; `None` or unknown zone = omit both.
    pub timezone: Option<&'a str>,
    /// Usernames the server says were mentioned, in message order.
    pub mentions: &'a [String],
    /// The bot's own username.
    pub bot_username: Option<&'a str>,
    /// Usernames of configured peer agents (agent chain).
    pub peer_agents: &'a [String],
}

/// Replaces every `|`, `[`, `]`, CR and LF with `_` so a name cannot forge header fields.
pub fn sanitize_header_field(value: &str) -> String {
    todo!("{value}")
}

/// `[<platform> #<room> | from: <user> | role: <role> | day: <Ddd> | ts: <ISO> | to: <addr>]`.
pub fn prompt_header(fields: &HeaderFields<'_>) -> String {
    todo!("{fields:?}")
}

/// One message's prompt: `"<header> <text>"` (or the text alone), then warnings on new lines.
pub fn build_prompt(msg: &IncomingMessage) -> String {
    todo!("{msg:?}")
}

/// The prompt for one or more queued messages: `build_prompt` for one, the catch-up block
/// (§3.3) for several. The caller answers in the thread of the last message.
pub fn build_batch_prompt(msgs: &[IncomingMessage]) -> String {
    todo!("{msgs:?}")
}

/// Appends one `[Attached: <name> → <path> — use the Read tool to view it]` line per file;
/// paths under `working_directory` are shown relative to it.
pub fn with_attachment_notes(prompt: &str, attachments: &[PathBuf], working_directory: &Path) -> String {
    todo!("{prompt}{attachments:?}{working_directory:?}")
}
