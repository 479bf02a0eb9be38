//! [`HumanClient`]: a test acting as a person in the chat — posting, replying in threads,
//! uploading files, writing DMs, editing, typing. Every action goes through the same rules as
//! the REST API (auto-join, size limit, mentions, threads) and is streamed to DDP subscribers,
//! but skips HTTP, so REST fault injection never hits the human side of a test.

use std::sync::Arc;

use serde_json::{json, Value};

use super::server::{resolve_room, Shared};
use super::world::{self, ApiError, Draft};
use super::FakeError;

/// A logged-in human (see `FakeRocketChat::login_as`).
#[derive(Clone)]
pub struct HumanClient {
    shared: Arc<Shared>,
    user_id: String,
    username: String,
}

fn api(e: ApiError) -> FakeError {
    FakeError::Api(format!("{e:?}"))
}

impl HumanClient {
    pub(crate) fn new(shared: Arc<Shared>, user_id: String, username: String) -> Self {
        HumanClient {
            shared,
            user_id,
            username,
        }
    }

    /// The user's `_id`.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Resolves a room for posting: id, name, `#name`, or `@user` (creates the DM).
    fn room_for_post(&self, room: &str) -> Result<String, FakeError> {
        let mut w = self.shared.world();
        if let Some(user) = room.strip_prefix('@') {
            let other = w
                .user_by_username(user)
                .map(|u| u.id.clone())
                .ok_or_else(|| FakeError::UnknownUser(user.to_owned()))?;
            return Ok(w.ensure_dm(&self.user_id, &other));
        }
        resolve_room(&w, room).ok_or_else(|| FakeError::UnknownRoom(room.to_owned()))
    }

    fn send(&self, room: &str, text: &str, tmid: Option<&str>) -> Result<Value, FakeError> {
        let rid = self.room_for_post(room)?;
        let draft = Draft {
            msg: text.to_owned(),
            tmid: tmid.map(str::to_owned),
            parse_urls: true,
            ..Draft::default()
        };
        let doc = self
            .shared
            .world()
            .send_message(&self.user_id, &rid, draft)
            .map_err(api)?;
        Ok(world::rest_doc(&doc))
    }

    /// Posts `text` to a room (id, name, `#name` or `@user`); returns the message (REST form).
    pub async fn post(&self, room: &str, text: &str) -> Result<Value, FakeError> {
        self.send(room, text, None)
    }

    /// Replies in the thread of message `tmid`.
    pub async fn reply_in_thread(
        &self,
        room: &str,
        tmid: &str,
        text: &str,
    ) -> Result<Value, FakeError> {
        self.send(room, text, Some(tmid))
    }

    /// Sends a direct message to `user` (creating the DM room on first use).
    pub async fn dm(&self, user: &str, text: &str) -> Result<Value, FakeError> {
        self.send(&format!("@{user}"), text, None)
    }

    /// Uploads a file like the web client does (file + description, no message text); the
    /// MIME type comes from the extension. Returns the file message.
    pub async fn upload(
        &self,
        room: &str,
        file_name: &str,
        bytes: Vec<u8>,
        description: Option<&str>,
    ) -> Result<Value, FakeError> {
        let rid = self.room_for_post(room)?;
        let mime = mime_for(file_name);
        let mut w = self.shared.world();
        let file_id = w.store_upload(&rid, file_name, mime, bytes);
        let doc = w
            .send_file_message(&self.user_id, &rid, &file_id, None, description, None)
            .map_err(api)?;
        Ok(world::rest_doc(&doc))
    }

    /// Edits one of this user's messages.
    pub async fn edit(&self, msg_id: &str, text: &str) -> Result<Value, FakeError> {
        let doc = self
            .shared
            .world()
            .edit_message(&self.user_id, msg_id, None, text)
            .map_err(api)?;
        Ok(world::rest_doc(&doc))
    }

    /// Shows or hides "typing…" in a room (what other DDP subscribers of
    /// `<rid>/user-activity` see).
    pub async fn typing(&self, room: &str, on: bool) -> Result<(), FakeError> {
        let rid = self.room_for_post(room)?;
        let activity = if on {
            json!(["user-typing"])
        } else {
            json!([])
        };
        self.shared.world().publish_notify_room(
            format!("{rid}/user-activity"),
            vec![json!(self.username), activity],
            0,
        );
        Ok(())
    }
}

/// The MIME type a browser would send for a file name.
fn mime_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "html" => "text/html",
        _ => "application/octet-stream",
    }
}
