//! Rocket.Chat connector for agent-chat-gateway.
//!
//! Layout, in the order a message travels:
//! - [`ddp`]: the WebSocket protocol's frames (`parse_frame` and the frames we send).
//! - [`doc`]: a message document read leniently into [`doc::RcMessage`].
//! - [`filter`]: which messages may start a turn (own, system, edits, duplicates, allow-list,
//!   mention gate, peer-agent budgets).
//! - [`mention`]: `@bot` in message text.
//! - [`normalize`]: document → [`acg_core::IncomingMessage`] with the trusted prompt header.
//! - [`attachments`]: files of a message, downloaded into a per-room cache.
//! - [`rest`]: the REST API (login, re-login on 401, posts, uploads, rooms, history).
//! - [`chunk`]: long replies split at the server's size limit.
//! - [`backoff`]: reconnect delays.
//! - [`connector`]: [`RocketChatConnector`], the [`acg_core::Connector`] that ties it together
//!   (background connection with reconnect, subscriptions, replay from history), tuned by
//!   [`options::RocketChatOptions`]; `link` (private) runs one DDP connection.
//!
//! `docs/rocketchat.md` describes the behaviour for operators.

#![warn(missing_docs)]

pub mod attachments;
pub mod backoff;
pub mod chunk;
pub mod connector;
pub mod ddp;
pub mod doc;
pub mod filter;
mod link;
pub mod mention;
pub mod normalize;
pub mod options;
pub mod rest;
pub mod tls;

pub use connector::{RocketChatConnector, RocketChatError};
pub use ddp::parse_frame;
pub use link::{CallError, LinkError};
pub use normalize::{normalize_doc, Ctx, Settings};
pub use options::RocketChatOptions;
