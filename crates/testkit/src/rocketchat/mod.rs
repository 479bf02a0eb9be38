//! A faithful fake Rocket.Chat server (7.x and 8.x) for testing the Rocket.Chat connector
//! against the real wire protocol where no real server can run.
//!
//! [`FakeRocketChat::start`] serves on `127.0.0.1`:
//! - REST under `/api` — `login`, `logout`, `me`, `/api/info`, `settings.public`,
//!   `chat.postMessage`, `chat.update`, `channels.info`, `groups.info`, `im.create`,
//!   `channels/groups/im.history`, `rooms.upload` (7.x only), `rooms.media` +
//!   `rooms.mediaConfirm`, and file downloads at `/file-upload/<id>/<name>`;
//! - DDP over WebSocket at `/websocket` (`connect`, `ping`/`pong`, `login` by digest or resume
//!   token, `stream-room-messages`, `stream-notify-room` typing, `unsub`).
//!
//! Its behaviour was taken from Rocket.Chat's published typings (`@rocket.chat/rest-typings`,
//! `@rocket.chat/core-typings`) and server sources; `docs/fake-rocketchat.md` lists what is
//! imitated and every known difference. The `rocketchat_typings` test type-checks what the
//! fake sends against the real typings with `tsc`.
//!
//! Layout: [`server`] (lifecycle, faults, inspection), `rest` (HTTP handlers), `ddp` (WebSocket
//! sessions), `world` (the database and its rules), `text` (mentions, md, urls), `wire`
//! (ids, dates, EJSON), [`seed`] (initial users and rooms), [`human`] (acting as a person),
//! [`faults`] (malformed frames).

mod ddp;
pub mod faults;
pub mod human;
mod rest;
pub mod seed;
pub mod server;
mod text;
mod wire;
mod world;

pub use faults::MalformedFrames;
pub use human::HumanClient;
pub use seed::{RoomKind, Seed, SeedError, SeedRoom, SeedUser};
pub use server::{DdpFrame, FakeOptions, FakeRocketChat, RequestRecord, TypingEvent};

/// The SHA-256 hex digest a DDP client sends as `password.digest`.
pub fn password_digest(password: &str) -> String {
    world::password_digest(password)
}

/// Errors of the fake's own API (not the errors it serves to clients).
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// Binding or serving failed.
    #[error("fake Rocket.Chat I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The seed is invalid.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// The version string is not `X.Y[.Z]`.
    #[error("not a Rocket.Chat version: {0:?}")]
    BadVersion(String),
    /// No such user.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// No such room.
    #[error("unknown room {0:?}")]
    UnknownRoom(String),
    /// A human action was refused the way the server refuses it.
    #[error("the server refused: {0}")]
    Api(String),
    /// A wait ran out.
    #[error("timed out: {0}")]
    Timeout(String),
}
