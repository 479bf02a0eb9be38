//! The fake server's database and business rules: users, login tokens, rooms, memberships,
//! messages, uploads and settings, plus every rule a bot can observe (how a `channel` string is
//! resolved, auto-join, DM creation, size limits, mentions, threads, edits, history windows).
//!
//! Everything here is synchronous and runs under one mutex; REST handlers, DDP sessions and the
//! human helpers all call these methods, so the three see one consistent world. Each change to
//! a message is published as a [`WorldEvent`] while the lock is held, which keeps the order of
//! `changed` frames equal to the order of writes.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::seed::{RoomKind, Seed, SeedError};
use super::text;
use super::wire::{self, ejson_date, ejson_ms, iso, js_length, js_trim};

/// Server version facts that change behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerVersion {
    /// As configured, e.g. `7.10.0`.
    pub full: String,
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
}

impl ServerVersion {
    /// Parses `X.Y[.Z…]`.
    pub(crate) fn parse(s: &str) -> Option<ServerVersion> {
        let mut parts = s.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>();
        Some(ServerVersion {
            full: s.trim().to_owned(),
            major,
            minor: minor.parse().ok()?,
        })
    }

    /// Whether the 8.0 breaking REST changes apply (`shouldBreakInVersion('8.0.0')`).
    pub(crate) fn breaking(&self) -> bool {
        self.major >= 8
    }

    /// `rooms.upload/:rid` exists only before 8.0.
    pub(crate) fn has_rooms_upload(&self) -> bool {
        self.major < 8
    }

    /// What `/api/info` shows to anonymous callers: the version without the patch level.
    pub(crate) fn trimmed(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

/// Settings the fake honours (and publishes through `settings.public`).
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    pub message_max_allowed_size: usize,
    pub file_upload_max_size: usize,
    pub site_url: String,
    pub token_lifetime_ms: i64,
}

/// One change other parts of the fake react to.
#[derive(Debug, Clone)]
pub(crate) enum WorldEvent {
    /// A message document was inserted or updated (EJSON form).
    Message { rid: String, doc: Value },
    /// A `stream-notify-room` event (typing), re-emitted to other subscribers.
    NotifyRoom {
        event_name: String,
        args: Vec<Value>,
        origin: u64,
    },
}

/// An error the way a real server reports it (rendered per version in `rest.rs`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApiError {
    /// `API.v1.failure(...)`: 400 `{success: false, error, errorType?, details?}`.
    Failure {
        error: String,
        error_type: Option<String>,
        details: Option<Value>,
    },
    /// `API.v1.forbidden()`: 403.
    Forbidden,
    /// `API.v1.unauthorized(...)` for a missing/invalid login: 401.
    Unauthorized,
    /// No such endpoint or file: 404.
    NotFound,
}

impl ApiError {
    /// A thrown `Meteor.Error(error, reason)`: message `"<reason> [<error>]"` or `"[<error>]"`.
    pub(crate) fn meteor(error: &str, reason: Option<&str>) -> ApiError {
        ApiError::Failure {
            error: match reason {
                Some(r) => format!("{r} [{error}]"),
                None => format!("[{error}]"),
            },
            error_type: Some(error.to_owned()),
            details: None,
        }
    }

    /// `Meteor.Error` with details.
    pub(crate) fn meteor_with(error: &str, reason: Option<&str>, details: Value) -> ApiError {
        match ApiError::meteor(error, reason) {
            ApiError::Failure {
                error, error_type, ..
            } => ApiError::Failure {
                error,
                error_type,
                details: Some(details),
            },
            other => other,
        }
    }

    /// `API.v1.failure('text')` or a plain `Error('text')`: `{success: false, error: text}`.
    pub(crate) fn plain(message: &str) -> ApiError {
        ApiError::Failure {
            error: message.to_owned(),
            error_type: None,
            details: None,
        }
    }
}

/// An account.
#[derive(Debug, Clone)]
pub(crate) struct UserRecord {
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub password: String,
    pub roles: Vec<String>,
    pub email: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UserRecord {
    /// The `u` sub-document of a message: `{_id, username, name?}`.
    pub(crate) fn u(&self) -> Value {
        let mut u = json!({ "_id": self.id, "username": self.username });
        if let Some(name) = &self.name {
            u["name"] = json!(name);
        }
        u
    }

    fn may_impersonate(&self) -> bool {
        self.roles.iter().any(|r| r == "bot" || r == "admin")
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// A room and its members.
#[derive(Debug, Clone)]
pub(crate) struct RoomRecord {
    pub id: String,
    pub kind: RoomKind,
    pub name: Option<String>,
    pub members: Vec<String>,
    pub owner: Option<String>,
    pub topic: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub msgs: u64,
    pub lm: Option<i64>,
    pub last_message: Option<Value>,
}

/// A stored file.
#[derive(Debug, Clone)]
pub(crate) struct UploadRecord {
    pub id: String,
    pub name: String,
    pub mime: String,
    pub bytes: Arc<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct LoginToken {
    token: String,
    user_id: String,
    expires: i64,
    revoked: bool,
}

/// A successful login.
#[derive(Debug, Clone)]
pub(crate) struct LoginOk {
    pub user: UserRecord,
    pub token: String,
    pub expires: i64,
}

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginError {
    UserNotFound,
    IncorrectPassword,
    /// The resume token is unknown, expired or revoked.
    LoggedOut,
}

/// How the password arrives.
#[derive(Debug, Clone)]
pub(crate) enum Secret {
    /// The plain password (REST).
    Plain(String),
    /// Lower-case hex SHA-256 of the password (DDP `{digest, algorithm: "sha-256"}`).
    Digest(String),
}

/// The text parts of a new message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Draft {
    pub msg: String,
    pub tmid: Option<String>,
    /// Extra fields merged into the document (alias, attachments, file, …).
    pub fields: Map<String, Value>,
    /// Whether to compute `urls` (`parseUrls !== false`).
    pub parse_urls: bool,
}

/// Parameters of `channels.history` & co. after parsing.
#[derive(Debug, Clone)]
pub(crate) struct HistoryQuery {
    pub latest: i64,
    pub oldest: Option<i64>,
    pub inclusive: bool,
    pub offset: usize,
    /// `None` = no limit (`count=0` with `API_Allow_Infinite_Count`).
    pub count: Option<usize>,
    pub show_thread_messages: bool,
}

/// The whole database.
pub(crate) struct World {
    pub version: ServerVersion,
    pub settings: ServerSettings,
    users: Vec<UserRecord>,
    rooms: Vec<RoomRecord>,
    messages: Vec<Value>,
    uploads: Vec<UploadRecord>,
    tokens: Vec<LoginToken>,
    last_ts: i64,
    events: broadcast::Sender<WorldEvent>,
}

/// The SHA-256 hex digest Meteor clients send instead of the password.
pub(crate) fn password_digest(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl World {
    /// Builds the world from a seed.
    pub(crate) fn new(
        version: ServerVersion,
        settings: ServerSettings,
        seed: &Seed,
        events: broadcast::Sender<WorldEvent>,
    ) -> Result<World, SeedError> {
        let now = wire::now_ms();
        let mut world = World {
            version,
            settings,
            users: Vec::new(),
            rooms: Vec::new(),
            messages: Vec::new(),
            uploads: Vec::new(),
            tokens: Vec::new(),
            last_ts: now,
            events,
        };
        for u in &seed.users {
            if world.user_by_username(&u.username).is_some() {
                return Err(SeedError::Invalid(format!("duplicate user {}", u.username)));
            }
            world.users.push(UserRecord {
                id: u.id.clone().unwrap_or_else(wire::random_id),
                username: u.username.clone(),
                name: u.name.clone(),
                password: u.password.clone(),
                roles: if u.roles.is_empty() {
                    vec!["user".to_owned()]
                } else {
                    u.roles.clone()
                },
                email: u
                    .email
                    .clone()
                    .unwrap_or_else(|| format!("{}@example.invalid", u.username)),
                created_at: now,
                updated_at: now,
            });
        }
        let names_general = seed
            .rooms
            .iter()
            .any(|r| r.name.as_deref() == Some("general"));
        if seed.general && !names_general {
            world.rooms.push(RoomRecord {
                id: "GENERAL".to_owned(),
                kind: RoomKind::Channel,
                name: Some("general".to_owned()),
                members: world.users.iter().map(|u| u.id.clone()).collect(),
                owner: None,
                topic: None,
                created_at: now,
                updated_at: now,
                msgs: 0,
                lm: None,
                last_message: None,
            });
        }
        for r in &seed.rooms {
            let mut members = Vec::new();
            for m in &r.members {
                let user = world
                    .user_by_username(m)
                    .ok_or_else(|| SeedError::Invalid(format!("room member {m} is not a user")))?;
                if !members.contains(&user.id) {
                    members.push(user.id.clone());
                }
            }
            let id = match (r.kind, &r.id) {
                (_, Some(id)) => id.clone(),
                (RoomKind::Direct, None) => dm_id(&members),
                (_, None) => wire::random_id(),
            };
            match r.kind {
                RoomKind::Direct if members.is_empty() || members.len() > 2 => {
                    return Err(SeedError::Invalid(
                        "a DM room has one or two members".to_owned(),
                    ))
                }
                RoomKind::Channel | RoomKind::Group if r.name.is_none() => {
                    return Err(SeedError::Invalid(format!("room {id} needs a name")))
                }
                _ => {}
            }
            if world.room(&id).is_some()
                || (r.name.is_some()
                    && world
                        .room_by_name(r.name.as_deref().unwrap_or(""))
                        .is_some())
            {
                return Err(SeedError::Invalid(format!("duplicate room {id}")));
            }
            world.rooms.push(RoomRecord {
                id,
                kind: r.kind,
                name: r.name.clone(),
                owner: members
                    .first()
                    .cloned()
                    .filter(|_| r.kind != RoomKind::Direct),
                members,
                topic: r.topic.clone(),
                created_at: now,
                updated_at: now,
                msgs: 0,
                lm: None,
                last_message: None,
            });
        }
        Ok(world)
    }

    /// Publishes an event (no receiver is fine).
    fn publish(&self, event: WorldEvent) {
        let _ = self.events.send(event);
    }

    /// Publishes a typing (or any `stream-notify-room`) event on behalf of a session.
    pub(crate) fn publish_notify_room(&self, event_name: String, args: Vec<Value>, origin: u64) {
        self.publish(WorldEvent::NotifyRoom {
            event_name,
            args,
            origin,
        });
    }

    /// "Now" for queries: never before the newest stored timestamp (see [`World::next_ts`]).
    pub(crate) fn now(&self) -> i64 {
        wire::now_ms().max(self.last_ts + 1)
    }

    /// A fresh timestamp, strictly after the previous one (a burst of writes within one
    /// millisecond runs slightly ahead of the wall clock).
    fn next_ts(&mut self) -> i64 {
        let now = wire::now_ms().max(self.last_ts + 1);
        self.last_ts = now;
        now
    }

    // ---- users and tokens ----------------------------------------------------------------

    pub(crate) fn user_by_username(&self, username: &str) -> Option<&UserRecord> {
        self.users.iter().find(|u| u.username == username)
    }

    pub(crate) fn user(&self, id: &str) -> Option<&UserRecord> {
        self.users.iter().find(|u| u.id == id)
    }

    fn user_by_id_or_username(&self, key: &str) -> Option<&UserRecord> {
        self.users.iter().find(|u| u.id == key || u.username == key)
    }

    /// Password login (`user` is a username or an e-mail address).
    pub(crate) fn login(&mut self, user: &str, secret: &Secret) -> Result<LoginOk, LoginError> {
        let record = self
            .users
            .iter()
            .find(|u| u.username == user || u.email.eq_ignore_ascii_case(user))
            .cloned()
            .ok_or(LoginError::UserNotFound)?;
        let ok = match secret {
            Secret::Plain(p) => *p == record.password,
            Secret::Digest(d) => d.eq_ignore_ascii_case(&password_digest(&record.password)),
        };
        if !ok {
            return Err(LoginError::IncorrectPassword);
        }
        let token = wire::random_secret();
        let expires = wire::now_ms() + self.settings.token_lifetime_ms;
        self.tokens.push(LoginToken {
            token: token.clone(),
            user_id: record.id.clone(),
            expires,
            revoked: false,
        });
        Ok(LoginOk {
            user: record,
            token,
            expires,
        })
    }

    /// `{"resume": token}` login: the same token, if it is still valid.
    pub(crate) fn resume(&self, token: &str) -> Result<LoginOk, LoginError> {
        let now = wire::now_ms();
        let t = self
            .tokens
            .iter()
            .find(|t| t.token == token && !t.revoked && t.expires > now)
            .ok_or(LoginError::LoggedOut)?;
        let user = self
            .user(&t.user_id)
            .cloned()
            .ok_or(LoginError::LoggedOut)?;
        Ok(LoginOk {
            user,
            token: t.token.clone(),
            expires: t.expires,
        })
    }

    /// The user the `X-User-Id`/`X-Auth-Token` pair authenticates, if any.
    pub(crate) fn authenticate(&self, user_id: &str, token: &str) -> Option<UserRecord> {
        let now = wire::now_ms();
        self.tokens
            .iter()
            .any(|t| t.token == token && t.user_id == user_id && !t.revoked && t.expires > now)
            .then(|| self.user(user_id).cloned())
            .flatten()
    }

    /// Whether a token is still valid (DDP sessions logged in with a revoked token close).
    pub(crate) fn token_valid(&self, token: &str) -> bool {
        self.resume(token).is_ok()
    }

    /// Revokes every login token (like an admin forcing everyone out).
    pub(crate) fn expire_tokens(&mut self) {
        for t in &mut self.tokens {
            t.revoked = true;
        }
    }

    /// Removes one token (`/logout`).
    pub(crate) fn revoke_token(&mut self, token: &str) {
        for t in self.tokens.iter_mut().filter(|t| t.token == token) {
            t.revoked = true;
        }
    }

    /// Every user id in creation order (for human helpers and inspection).
    pub(crate) fn users(&self) -> &[UserRecord] {
        &self.users
    }

    // ---- rooms ---------------------------------------------------------------------------

    pub(crate) fn room(&self, id: &str) -> Option<&RoomRecord> {
        self.rooms.iter().find(|r| r.id == id)
    }

    fn room_mut(&mut self, id: &str) -> Option<&mut RoomRecord> {
        self.rooms.iter_mut().find(|r| r.id == id)
    }

    pub(crate) fn room_by_name(&self, name: &str) -> Option<&RoomRecord> {
        self.rooms.iter().find(|r| r.name.as_deref() == Some(name))
    }

    /// `Rooms.findOneByIdOrName`.
    pub(crate) fn room_by_id_or_name(&self, key: &str) -> Option<&RoomRecord> {
        self.room(key).or_else(|| self.room_by_name(key))
    }

    /// `canAccessRoom` for a logged-in user with the default permissions: public channels are
    /// open to everyone (`view-c-room`), groups and DMs to members only.
    pub(crate) fn can_access(&self, user_id: &str, room: &RoomRecord) -> bool {
        room.kind == RoomKind::Channel || room.members.iter().any(|m| m == user_id)
    }

    /// Whether the user has a subscription to the room.
    pub(crate) fn is_member(&self, user_id: &str, rid: &str) -> bool {
        self.room(rid)
            .is_some_and(|r| r.members.iter().any(|m| m == user_id))
    }

    /// The room document as REST/DDP show it (EJSON dates).
    pub(crate) fn room_doc(&self, room: &RoomRecord) -> Value {
        let mut doc = json!({
            "_id": room.id,
            "t": room.kind.letter(),
            "msgs": room.msgs,
            "usersCount": room.members.len(),
            "ts": ejson_date(room.created_at),
            "_updatedAt": ejson_date(room.updated_at),
            "default": room.id == "GENERAL",
            "ro": false,
            "sysMes": true,
        });
        match room.kind {
            RoomKind::Direct => {
                let (uids, usernames): (Vec<_>, Vec<_>) = room
                    .members
                    .iter()
                    .filter_map(|m| self.user(m))
                    .map(|u| (u.id.clone(), u.username.clone()))
                    .unzip();
                doc["uids"] = json!(uids);
                doc["usernames"] = json!(usernames);
            }
            RoomKind::Channel | RoomKind::Group => {
                doc["name"] = json!(room.name);
                doc["fname"] = json!(room.name);
                doc["customFields"] = json!({});
                doc["broadcast"] = json!(false);
                doc["encrypted"] = json!(false);
                let owner = room.owner.as_deref().and_then(|o| self.user(o));
                doc["u"] = match owner {
                    Some(o) => json!({ "_id": o.id, "username": o.username }),
                    // #general is created by the system on a fresh server.
                    None => json!({ "_id": "rocket.cat", "username": "rocket.cat" }),
                };
                if let Some(topic) = &room.topic {
                    doc["topic"] = json!(topic);
                }
            }
        }
        if let Some(lm) = room.lm {
            doc["lm"] = ejson_date(lm);
        }
        if let Some(last) = &room.last_message {
            doc["lastMessage"] = last.clone();
        }
        doc
    }

    /// Adds a member to a public channel and posts the `uj` system message (`Room.join`).
    fn join_channel(&mut self, rid: &str, user_id: &str) {
        let Some(user) = self.user(user_id).cloned() else {
            return;
        };
        let Some(room) = self.room_mut(rid) else {
            return;
        };
        if room.kind != RoomKind::Channel || room.members.iter().any(|m| m == user_id) {
            return;
        }
        room.members.push(user_id.to_owned());
        self.system_message(rid, "uj", &user.username, &user);
    }

    /// Finds or creates the DM between two users (`createDirectMessage`); returns its id.
    pub(crate) fn ensure_dm(&mut self, a: &str, b: &str) -> String {
        let mut ids = vec![a.to_owned()];
        if a != b {
            ids.push(b.to_owned());
        }
        let rid = dm_id(&ids);
        if self.room(&rid).is_none() {
            let now = self.next_ts();
            self.rooms.push(RoomRecord {
                id: rid.clone(),
                kind: RoomKind::Direct,
                name: None,
                members: ids,
                owner: None,
                topic: None,
                created_at: now,
                updated_at: now,
                msgs: 0,
                lm: None,
                last_message: None,
            });
        }
        rid
    }

    /// `im.create {username}` → the DM room document (plus `rid`).
    pub(crate) fn im_create(&mut self, me: &str, username: &str) -> Result<Value, ApiError> {
        let other = self
            .user_by_username(username)
            .map(|u| u.id.clone())
            .ok_or_else(|| {
                ApiError::meteor_with(
                    "error-invalid-user",
                    Some("Invalid user"),
                    json!({ "method": "createDirectMessage" }),
                )
            })?;
        let rid = self.ensure_dm(me, &other);
        let room = self.room(&rid).cloned().ok_or(ApiError::NotFound)?;
        let mut doc = self.room_doc(&room);
        doc["rid"] = json!(rid);
        Ok(doc)
    }

    /// `channels.info` / `groups.info` lookup (`roomId` or `roomName`).
    pub(crate) fn info(
        &self,
        kind: RoomKind,
        user_id: &str,
        room_id: Option<&str>,
        room_name: Option<&str>,
    ) -> Result<Value, ApiError> {
        let found = match (room_id, room_name) {
            (Some(id), _) => self.room(id),
            (None, Some(name)) => self.room_by_name(name),
            (None, None) => {
                return Err(ApiError::meteor(
                    "error-roomid-param-not-provided",
                    Some("The parameter \"roomId\" or \"roomName\" is required"),
                ))
            }
        };
        let not_found = || {
            match kind {
            RoomKind::Group => ApiError::meteor(
                "error-room-not-found",
                Some("The required \"roomId\" or \"roomName\" param provided does not match any group"),
            ),
            _ => ApiError::meteor(
                "error-room-not-found",
                Some("The required \"roomId\" or \"roomName\" param provided does not match any channel"),
            ),
        }
        };
        let room = found.filter(|r| r.kind == kind).ok_or_else(not_found)?;
        if kind == RoomKind::Group && !self.can_access(user_id, room) {
            return Err(not_found());
        }
        Ok(self.room_doc(room))
    }

    /// Resolves the `channel`/`roomId` of `chat.postMessage` like `processWebhookMessage` +
    /// `getRoomByNameOrIdWithOptionToJoin`, joining public channels and creating DMs on the way.
    pub(crate) fn resolve_post_target(
        &mut self,
        me: &str,
        channel: &str,
    ) -> Result<String, ApiError> {
        let invalid = || ApiError::meteor("invalid-channel", None);
        let rid = if let Some(rest) = channel.strip_prefix('@') {
            match self.user_by_id_or_username(rest).map(|u| u.id.clone()) {
                Some(other) => self.ensure_dm(me, &other),
                None => match self.room(rest) {
                    Some(r) if r.kind == RoomKind::Direct => r.id.clone(),
                    _ => return Err(invalid()),
                },
            }
        } else {
            let key = channel.strip_prefix('#').unwrap_or(channel);
            match self.room_by_id_or_name(key).map(|r| r.id.clone()) {
                Some(rid) => rid,
                None if !channel.starts_with('#') => {
                    // "Try direct by user id only".
                    match self.user(key).map(|u| u.id.clone()) {
                        Some(other) => self.ensure_dm(me, &other),
                        None => return Err(invalid()),
                    }
                }
                None => return Err(invalid()),
            }
        };
        let kind = self.room(&rid).map(|r| r.kind).ok_or_else(invalid)?;
        if kind == RoomKind::Channel {
            self.join_channel(&rid, me);
        }
        let room = self.room(&rid).ok_or_else(invalid)?;
        if !self.can_access(me, room) {
            return Err(ApiError::plain("error-not-allowed"));
        }
        Ok(rid)
    }

    // ---- messages ------------------------------------------------------------------------

    /// Every stored message of a room, oldest first (EJSON).
    pub(crate) fn room_messages(&self, rid: &str) -> Vec<Value> {
        self.messages
            .iter()
            .filter(|m| m["rid"] == rid)
            .cloned()
            .collect()
    }

    pub(crate) fn message(&self, id: &str) -> Option<&Value> {
        self.messages.iter().find(|m| m["_id"] == id)
    }

    /// `Message_MaxAllowedSize` check on a message text (UTF-16 length, like JS).
    pub(crate) fn check_size(&self, text: &str) -> bool {
        js_length(text) <= self.settings.message_max_allowed_size
    }

    /// Posts like `chat.postMessage`: `alias`, `attachments`, `parseUrls`, `groupable` are set
    /// as `processWebhookMessage` sets them. `rid` must come from [`World::resolve_post_target`].
    pub(crate) fn post_webhook_message(
        &mut self,
        sender_id: &str,
        rid: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let sender = self
            .user(sender_id)
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        let text = body["text"]
            .as_str()
            .or_else(|| body["msg"].as_str())
            .unwrap_or("");
        let alias = body["username"]
            .as_str()
            .or_else(|| body["alias"].as_str())
            .unwrap_or("");
        let avatar = body["icon_url"]
            .as_str()
            .or_else(|| body["avatar"].as_str());
        let emoji = body["icon_emoji"]
            .as_str()
            .or_else(|| body["emoji"].as_str());
        if (!alias.is_empty() || avatar.is_some_and(|a| !a.is_empty())) && !sender.may_impersonate()
        {
            return Err(ApiError::plain("Not enough permission"));
        }
        let mut attachments = match &body["attachments"] {
            Value::Array(items) => items.clone(),
            _ => Vec::new(),
        };
        for a in attachments.iter_mut() {
            if let Some(obj) = a.as_object_mut() {
                if let Some(Value::String(m)) = obj.remove("msg") {
                    obj.insert("text".to_owned(), json!(js_trim(&m)));
                }
            }
        }
        let has_attachments = body["attachments"].is_array();
        let mut fields = Map::new();
        fields.insert("alias".to_owned(), json!(alias));
        fields.insert("attachments".to_owned(), json!(attachments));
        let parse_urls = body["parseUrls"].as_bool().unwrap_or(!has_attachments);
        fields.insert("parseUrls".to_owned(), json!(parse_urls));
        fields.insert(
            "groupable".to_owned(),
            json!(body["groupable"].as_bool().unwrap_or(false)),
        );
        if let Some(a) = avatar.filter(|a| !a.is_empty()) {
            fields.insert("avatar".to_owned(), json!(a));
        } else if let Some(e) = emoji.filter(|e| !e.is_empty()) {
            fields.insert("emoji".to_owned(), json!(e));
        }
        for key in ["bot", "customFields"] {
            if !body[key].is_null() {
                fields.insert(key.to_owned(), body[key].clone());
            }
        }
        let draft = Draft {
            msg: js_trim(text).to_owned(),
            tmid: body["tmid"].as_str().map(str::to_owned),
            fields,
            parse_urls,
        };
        Ok(self.save_message(rid, &sender, draft))
    }

    /// Posts a message the way the `sendMessage` method does (human helpers, file messages).
    pub(crate) fn send_message(
        &mut self,
        sender_id: &str,
        rid: &str,
        draft: Draft,
    ) -> Result<Value, ApiError> {
        let sender = self
            .user(sender_id)
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        let room = self
            .room(rid)
            .ok_or_else(|| ApiError::meteor("error-invalid-room", Some("Invalid room")))?;
        if !self.can_access(sender_id, room) {
            return Err(ApiError::meteor("error-not-allowed", Some("Not allowed")));
        }
        if !self.check_size(&draft.msg) {
            return Err(ApiError::meteor_with(
                "error-message-size-exceeded",
                Some("Message size exceeds Message_MaxAllowedSize"),
                json!({ "method": "sendMessage" }),
            ));
        }
        if room.kind == RoomKind::Channel {
            self.join_channel(rid, sender_id);
        }
        Ok(self.save_message(rid, &sender, draft))
    }

    /// Stores a user message: mentions, channels, md, urls, thread bookkeeping, room update,
    /// and the stream event.
    fn save_message(&mut self, rid: &str, sender: &UserRecord, draft: Draft) -> Value {
        let ts = self.next_ts();
        let mut doc = Map::new();
        doc.insert("_id".to_owned(), json!(wire::random_id()));
        doc.insert("rid".to_owned(), json!(rid));
        doc.insert("msg".to_owned(), json!(draft.msg));
        doc.insert("ts".to_owned(), ejson_date(ts));
        doc.insert("u".to_owned(), sender.u());
        for (k, v) in draft.fields {
            doc.insert(k, v);
        }
        if let Some(tmid) = &draft.tmid {
            doc.insert("tmid".to_owned(), json!(tmid));
        }
        let mut value = Value::Object(doc);
        self.derive_text_fields(&mut value, draft.parse_urls);
        value["_updatedAt"] = ejson_date(ts);
        self.messages.push(value.clone());
        self.after_save(rid, &value, ts);
        // The thread hook runs after the reply is saved (and streamed).
        if let Some(tmid) = &draft.tmid {
            self.bump_thread(tmid, rid, &sender.id, ts);
        }
        value
    }

    /// Posts a system message (`t` set): `{t, rid, ts, msg, u, groupable: false}`.
    fn system_message(&mut self, rid: &str, t: &str, msg: &str, user: &UserRecord) -> Value {
        let ts = self.next_ts();
        let doc = json!({
            "_id": wire::random_id(),
            "t": t,
            "rid": rid,
            "ts": ejson_date(ts),
            "msg": msg,
            "u": user.u(),
            "groupable": false,
            "_updatedAt": ejson_date(ts),
        });
        self.messages.push(doc.clone());
        self.after_save(rid, &doc, ts);
        doc
    }

    /// `mentions`, `channels`, `md` and `urls` from the text (and attachment descriptions).
    fn derive_text_fields(&self, doc: &mut Value, parse_urls: bool) {
        let msg = doc["msg"].as_str().unwrap_or("").to_owned();
        let mut tokens = text::user_mentions(&msg);
        if let Some(atts) = doc["attachments"].as_array() {
            for a in atts {
                if let Some(d) = a["description"].as_str() {
                    tokens.extend(text::user_mentions(d));
                }
            }
        }
        let mut mentions: Vec<Value> = Vec::new();
        let mut wanted: Vec<String> = Vec::new();
        for t in tokens {
            if t == "all" || t == "here" {
                mentions.push(json!({ "_id": t, "username": t }));
            } else {
                wanted.push(t);
            }
        }
        for u in self.users.iter().filter(|u| wanted.contains(&u.username)) {
            let mut m = json!({ "_id": u.id, "username": u.username });
            if let Some(name) = &u.name {
                m["name"] = json!(name);
            }
            m["type"] = json!("user");
            mentions.push(m);
        }
        let channel_names = text::channel_mentions(&msg);
        let channels: Vec<Value> = self
            .rooms
            .iter()
            .filter(|r| r.kind != RoomKind::Direct)
            .filter(|r| r.name.as_ref().is_some_and(|n| channel_names.contains(n)))
            .map(|r| json!({ "_id": r.id, "name": r.name, "fname": r.name }))
            .collect();
        if parse_urls {
            doc["urls"] = json!(text::urls(&msg));
        }
        doc["mentions"] = json!(mentions);
        doc["channels"] = json!(channels);
        // The message parser throws on an empty text; the server then stores no `md`.
        if msg.is_empty() {
            if let Some(obj) = doc.as_object_mut() {
                obj.remove("md");
            }
        } else {
            doc["md"] = text::markdown(&msg);
        }
    }

    /// Thread bookkeeping on the parent: `tcount`, `tlm`, `replies`, re-streamed.
    fn bump_thread(&mut self, tmid: &str, rid: &str, replier: &str, ts: i64) {
        let Some(parent) = self
            .messages
            .iter_mut()
            .find(|m| m["_id"] == tmid && m["rid"] == rid)
        else {
            return;
        };
        let count = parent["tcount"].as_u64().unwrap_or(0) + 1;
        parent["tcount"] = json!(count);
        parent["tlm"] = ejson_date(ts);
        let mut replies: Vec<Value> = parent["replies"].as_array().cloned().unwrap_or_default();
        let author = parent["u"]["_id"].clone();
        for id in [author, json!(replier)] {
            if !replies.contains(&id) {
                replies.push(id);
            }
        }
        parent["replies"] = json!(replies);
        parent["_updatedAt"] = ejson_date(ts);
        let doc = parent.clone();
        self.publish(WorldEvent::Message {
            rid: rid.to_owned(),
            doc,
        });
    }

    /// Room counters and the stream event for a saved message.
    fn after_save(&mut self, rid: &str, doc: &Value, ts: i64) {
        if let Some(room) = self.room_mut(rid) {
            room.msgs += 1;
            room.lm = Some(ts);
            room.updated_at = ts;
            room.last_message = Some(doc.clone());
        }
        self.publish(WorldEvent::Message {
            rid: rid.to_owned(),
            doc: doc.clone(),
        });
    }

    /// Edits a message's text (`chat.update` / `updateMessage`): `editedAt`, `editedBy`,
    /// re-derived mentions/md/urls, same `_id`, streamed again.
    pub(crate) fn edit_message(
        &mut self,
        editor_id: &str,
        msg_id: &str,
        room_id: Option<&str>,
        text: &str,
    ) -> Result<Value, ApiError> {
        let editor = self
            .user(editor_id)
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        let index = self
            .messages
            .iter()
            .position(|m| m["_id"] == msg_id)
            .ok_or_else(|| {
                ApiError::plain(&format!("No message found with the id of \"{msg_id}\"."))
            })?;
        let rid = self.messages[index]["rid"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if room_id.is_some_and(|r| r != rid) {
            return Err(ApiError::plain(
                "The room id provided does not match where the message is from.",
            ));
        }
        let author = self.messages[index]["u"]["_id"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if author != editor.id && !editor.is_admin() {
            return Err(ApiError::meteor_with(
                "error-action-not-allowed",
                Some("Message editing not allowed"),
                json!({ "method": "updateMessage", "action": "Message_editing" }),
            ));
        }
        if !self.check_size(text) {
            return Err(ApiError::meteor_with(
                "error-message-size-exceeded",
                Some("Message size exceeds Message_MaxAllowedSize"),
                json!({ "method": "updateMessage" }),
            ));
        }
        if self.messages[index]["msg"] == text {
            // `updateMessage` returns early when nothing changed.
            return Ok(self.messages[index].clone());
        }
        let ts = self.next_ts();
        let mut doc = self.messages[index].clone();
        doc["msg"] = json!(text);
        doc["editedAt"] = ejson_date(ts);
        doc["editedBy"] = json!({ "_id": editor.id, "username": editor.username });
        let parse_urls = doc["parseUrls"].as_bool() != Some(false);
        self.derive_text_fields(&mut doc, parse_urls);
        doc["_updatedAt"] = ejson_date(ts);
        self.messages[index] = doc.clone();
        if let Some(room) = self.room_mut(&rid) {
            if room
                .last_message
                .as_ref()
                .is_some_and(|m| m["_id"] == msg_id)
            {
                room.last_message = Some(doc.clone());
            }
        }
        self.publish(WorldEvent::Message {
            rid: rid.clone(),
            doc: doc.clone(),
        });
        Ok(doc)
    }

    /// Messages of a room for `*.history`, newest first.
    pub(crate) fn history(&self, rid: &str, q: &HistoryQuery) -> Vec<Value> {
        let mut docs: Vec<&Value> = self
            .messages
            .iter()
            .filter(|m| m["rid"] == rid && m["_hidden"] != true)
            .filter(|m| {
                let ts = ejson_ms(&m["ts"]).unwrap_or(0);
                let below = if q.inclusive {
                    ts <= q.latest
                } else {
                    ts < q.latest
                };
                let above = match q.oldest {
                    None => true,
                    Some(o) if q.inclusive => ts >= o,
                    Some(o) => ts > o,
                };
                below && above
            })
            .filter(|m| q.show_thread_messages || m["tmid"].is_null() || m["tshow"] == true)
            .collect();
        docs.sort_by_key(|m| std::cmp::Reverse(ejson_ms(&m["ts"]).unwrap_or(0)));
        docs.into_iter()
            .skip(q.offset)
            .take(q.count.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    // ---- uploads -------------------------------------------------------------------------

    /// Stores an uploaded file; returns its id.
    pub(crate) fn store_upload(
        &mut self,
        _rid: &str,
        name: &str,
        mime: &str,
        bytes: Vec<u8>,
    ) -> String {
        let id = wire::random_id();
        self.uploads.push(UploadRecord {
            id: id.clone(),
            name: name.to_owned(),
            mime: mime.to_owned(),
            bytes: Arc::new(bytes),
        });
        id
    }

    pub(crate) fn upload(&self, id: &str) -> Option<&UploadRecord> {
        self.uploads.iter().find(|u| u.id == id)
    }

    /// `sendFileMessage`: the message that carries an uploaded file (`file`, `files`,
    /// `attachments` with `title_link` `/file-upload/<id>/<encodeURI(name)>`).
    pub(crate) fn send_file_message(
        &mut self,
        sender_id: &str,
        rid: &str,
        file_id: &str,
        msg: Option<&str>,
        description: Option<&str>,
        tmid: Option<&str>,
    ) -> Result<Value, ApiError> {
        let file = self
            .upload(file_id)
            .cloned()
            .ok_or_else(|| ApiError::meteor("invalid-file", None))?;
        if description.is_some_and(|d| !self.check_size(d)) {
            return Err(ApiError::meteor("error-message-size-exceeded", None));
        }
        let url = format!("/file-upload/{}/{}", file.id, wire::encode_uri(&file.name));
        let type_group = file.mime.split('/').next().unwrap_or("").to_owned();
        let file_prop = json!({
            "_id": file.id,
            "name": file.name,
            "type": file.mime,
            "size": file.bytes.len(),
            "format": "",
            "typeGroup": type_group,
        });
        let mut attachment = json!({
            "title": file.name,
            "type": "file",
            "title_link": url,
            "title_link_download": true,
            "fileId": file.id,
        });
        if let Some(d) = description {
            attachment["description"] = json!(d);
        }
        match type_group.as_str() {
            "image" => {
                attachment["image_url"] = json!(url);
                attachment["image_type"] = json!(file.mime);
                attachment["image_size"] = json!(file.bytes.len());
            }
            "audio" => {
                attachment["audio_url"] = json!(url);
                attachment["audio_type"] = json!(file.mime);
                attachment["audio_size"] = json!(file.bytes.len());
            }
            "video" => {
                attachment["video_url"] = json!(url);
                attachment["video_type"] = json!(file.mime);
                attachment["video_size"] = json!(file.bytes.len());
            }
            _ => {
                let ext = file
                    .name
                    .rsplit_once('.')
                    .map(|(_, e)| e.to_owned())
                    .unwrap_or_default();
                attachment["format"] = json!(ext);
                attachment["size"] = json!(file.bytes.len());
            }
        }
        let mut fields = Map::new();
        fields.insert("groupable".to_owned(), json!(false));
        fields.insert("file".to_owned(), file_prop.clone());
        fields.insert("files".to_owned(), json!([file_prop]));
        fields.insert("attachments".to_owned(), json!([attachment]));
        let draft = Draft {
            msg: msg.unwrap_or("").to_owned(),
            tmid: tmid.map(str::to_owned),
            fields,
            parse_urls: true,
        };
        self.send_message(sender_id, rid, draft)
    }
}

/// A DM's id: the member ids sorted and concatenated.
pub(crate) fn dm_id(members: &[String]) -> String {
    let mut ids = members.to_vec();
    ids.sort();
    ids.dedup();
    ids.concat()
}

/// The REST form of a stored document.
pub(crate) fn rest_doc(doc: &Value) -> Value {
    wire::to_rest(doc)
}

/// `getUserInfo(user)`: the `me` object of `login` and `GET /me`.
pub(crate) fn user_info(user: &UserRecord, site_url: &str) -> Value {
    let mut me = json!({
        "_id": user.id,
        "username": user.username,
        "emails": [{ "address": user.email, "verified": true }],
        "status": "online",
        "statusConnection": "online",
        "utcOffset": 0,
        "active": true,
        "roles": user.roles,
        "settings": { "profile": {}, "preferences": {}, "calendar": {} },
        "avatarUrl": format!("{site_url}/avatar/{}", user.username),
        "isOAuthUser": false,
        "email": user.email,
        "services": { "password": { "exists": true } },
        "createdAt": iso(user.created_at),
        "_updatedAt": iso(user.updated_at),
    });
    if let Some(name) = &user.name {
        me["name"] = json!(name);
    }
    me
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rocketchat::seed::{SeedRoom, SeedUser};

    fn world() -> World {
        let (tx, _) = broadcast::channel(16);
        let seed = Seed::new()
            .with_user(SeedUser::new("bot", "pw").role("bot").id("BOT"))
            .with_user(SeedUser::new("alice", "apw").id("ALICE"))
            .with_user(SeedUser::new("carol", "cpw").id("CAROL"))
            .with_room(SeedRoom::channel("dev", &["alice"]).id("DEV"))
            .with_room(SeedRoom::group("secret", &["alice"]).id("SECRET"));
        World::new(
            ServerVersion::parse("7.10.0").unwrap(),
            ServerSettings {
                message_max_allowed_size: 20,
                file_upload_max_size: 1000,
                site_url: "http://x".into(),
                token_lifetime_ms: 1000 * 60,
            },
            &seed,
            tx,
        )
        .unwrap()
    }

    #[test]
    fn posting_to_a_channel_joins_it_with_a_uj_message() {
        let mut w = world();
        let rid = w.resolve_post_target("BOT", "#dev").unwrap();
        assert_eq!(rid, "DEV");
        let msgs = w.room_messages("DEV");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0]["t"], "uj");
        assert_eq!(msgs[0]["msg"], "bot");
        assert!(w.is_member("BOT", "DEV"));
    }

    #[test]
    fn private_groups_refuse_non_members_and_at_user_makes_a_dm() {
        let mut w = world();
        assert_eq!(
            w.resolve_post_target("BOT", "secret"),
            Err(ApiError::plain("error-not-allowed"))
        );
        assert_eq!(w.resolve_post_target("BOT", "@alice").unwrap(), "ALICEBOT");
        assert_eq!(
            w.resolve_post_target("BOT", "#nope"),
            Err(ApiError::meteor("invalid-channel", None))
        );
        // A bare user id reaches the DM too ("try direct by user id only").
        assert_eq!(w.resolve_post_target("BOT", "CAROL").unwrap(), "BOTCAROL");
    }

    #[test]
    fn mentions_list_all_and_here_first_then_known_users_in_database_order() {
        let mut w = world();
        let doc = w
            .send_message(
                "ALICE",
                "DEV",
                Draft {
                    msg: "@carol @all is too long".into(),
                    ..Default::default()
                },
            )
            .unwrap_err();
        // 22 UTF-16 units > 20: the size limit applies.
        assert!(matches!(doc, ApiError::Failure { .. }));
        let doc = w
            .send_message(
                "ALICE",
                "DEV",
                Draft {
                    msg: "@carol @bot".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let names: Vec<_> = doc["mentions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["username"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, vec!["bot", "carol"]);
    }

    #[test]
    fn history_windows_are_exclusive_unless_inclusive_and_hide_thread_replies() {
        let mut w = world();
        let a = w
            .send_message(
                "ALICE",
                "DEV",
                Draft {
                    msg: "a".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let _reply = w
            .send_message(
                "ALICE",
                "DEV",
                Draft {
                    msg: "r".into(),
                    tmid: a["_id"].as_str().map(str::to_owned),
                    ..Default::default()
                },
            )
            .unwrap();
        let b = w
            .send_message(
                "ALICE",
                "DEV",
                Draft {
                    msg: "b".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let ta = ejson_ms(&a["ts"]).unwrap();
        let tb = ejson_ms(&b["ts"]).unwrap();
        let q = |oldest, inclusive, threads| HistoryQuery {
            latest: tb,
            oldest,
            inclusive,
            offset: 0,
            count: Some(50),
            show_thread_messages: threads,
        };
        let msgs = |q: &HistoryQuery| -> Vec<String> {
            w.history("DEV", q)
                .iter()
                .map(|m| m["msg"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(msgs(&q(Some(ta), false, false)), Vec::<String>::new());
        assert_eq!(msgs(&q(Some(ta), true, false)), vec!["b", "a"]);
        assert_eq!(msgs(&q(Some(ta), true, true)), vec!["b", "r", "a"]);
        // The parent counts its replies.
        assert_eq!(w.message(a["_id"].as_str().unwrap()).unwrap()["tcount"], 1);
    }

    #[test]
    fn logins_check_plain_passwords_and_digests() {
        let mut w = world();
        assert!(w.login("alice", &Secret::Plain("apw".into())).is_ok());
        assert!(w
            .login("alice", &Secret::Digest(password_digest("apw")))
            .is_ok());
        assert_eq!(
            w.login("alice", &Secret::Plain("x".into())).unwrap_err(),
            LoginError::IncorrectPassword
        );
        let ok = w.login("bot", &Secret::Plain("pw".into())).unwrap();
        assert!(w.authenticate("BOT", &ok.token).is_some());
        w.expire_tokens();
        assert!(w.authenticate("BOT", &ok.token).is_none());
        assert_eq!(w.resume(&ok.token).unwrap_err(), LoginError::LoggedOut);
    }
}
