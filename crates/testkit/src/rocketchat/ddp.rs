//! DDP over WebSocket at `/websocket`, as Meteor's livedata server and Rocket.Chat's streamers
//! speak it.
//!
//! Per connection: the legacy `{"server_id":"0"}` greeting Meteor sends as soon as the socket
//! opens, `connect` → `connected {session}` (or `failed`), `ping`/`pong` both ways with the
//! server heartbeat, `method` calls answered with `updated` then `result`, `sub` answered with
//! `ready` or `nosub {error}`, `unsub` → `nosub`. Methods: `login` (password digest or plain,
//! by username or e-mail, or `{resume}`), `logout`, `stream-notify-room` (typing). Streams:
//! `stream-room-messages` (a room id or `__my_messages__`) and `stream-notify-room`
//! (`<rid>/user-activity`, `<rid>/typing`). Frames that are not JSON or have no `msg` are
//! dropped silently, like Meteor does; other protocol errors get `{"msg":"error", ...}`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::seed::RoomKind;
use super::server::{lock, Control, DdpFrame, Shared, TypingEvent};
use super::wire::{self, ejson_date};
use super::world::{LoginError, LoginOk, Secret, WorldEvent};

const ROOM_MESSAGES: &str = "stream-room-messages";
const NOTIFY_ROOM: &str = "stream-notify-room";
const LOGIN_FAILURE: &str = "Login failure. Please check your login credentials.";
const LOGGED_OUT: &str = "You've been logged out by the server. Please log in again.";

/// A Meteor error as it travels in `result.error` / `nosub.error`.
fn meteor_error(error: Value, reason: Option<&str>) -> Value {
    let code = match &error {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut e = json!({ "isClientSafe": true, "error": error, "errorType": "Meteor.Error" });
    match reason {
        Some(r) => {
            e["reason"] = json!(r);
            e["message"] = json!(format!("{r} [{code}]"));
        }
        None => e["message"] = json!(format!("[{code}]")),
    }
    e
}

fn internal_error() -> Value {
    meteor_error(json!(500), Some("Internal server error"))
}

/// One active subscription.
#[derive(Debug, Clone)]
struct Sub {
    name: &'static str,
    event: String,
}

/// The logged-in user of a connection.
#[derive(Debug, Clone)]
struct Login {
    user_id: String,
    username: String,
    token: String,
}

/// What handling one client frame produced.
#[derive(Default)]
struct Outcome {
    frames: Vec<String>,
    close: bool,
}

impl Outcome {
    fn send(&mut self, v: Value) {
        self.frames.push(v.to_string());
    }
}

struct Session {
    id: u64,
    shared: Arc<Shared>,
    ddp_session: Option<String>,
    login: Option<Login>,
    subs: HashMap<String, Sub>,
}

/// Decrements the open-session counter however the session ends.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one WebSocket connection until it closes, the server stops, or a fault drops it.
pub(crate) async fn run(shared: Arc<Shared>, mut socket: WebSocket) {
    shared.open_sessions.fetch_add(1, Ordering::SeqCst);
    let _guard = OpenGuard(shared.clone());
    let cancel = lock(&shared.generation).clone();
    let mut events = shared.events.subscribe();
    let mut control = shared.control.subscribe();
    let heartbeat = shared.heartbeat;
    let mut session = Session {
        id: shared.next_session.fetch_add(1, Ordering::SeqCst),
        shared,
        ddp_session: None,
        login: None,
        subs: HashMap::new(),
    };
    // Meteor's pre-0.7 welcome, still sent first on every connection (unless turned off).
    if session.shared.legacy_greeting
        && socket
            .send(Message::Text(r#"{"server_id":"0"}"#.into()))
            .await
            .is_err()
    {
        return;
    }
    let far = Duration::from_secs(365 * 24 * 3600);
    let mut quiet_until = Instant::now() + heartbeat.unwrap_or(far);
    let mut ping_sent = false;
    loop {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            incoming = socket.recv() => {
                let text = match incoming {
                    None | Some(Err(_)) => return,
                    Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => continue,
                };
                // Any frame counts as a sign of life for the heartbeat.
                quiet_until = Instant::now() + heartbeat.unwrap_or(far);
                ping_sent = false;
                lock(&session.shared.ddp_frames).push(DdpFrame { session: session.id, text: text.clone() });
                session.handle(&text)
            }
            event = events.recv() => match event {
                Ok(e) => session.deliver(&e),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            c = control.recv() => match c {
                Ok(Control::DropAll) => return,
                Ok(Control::Frames(frames)) => Outcome { frames, close: false },
                Ok(Control::TokensRevoked) => {
                    let revoked = session
                        .login
                        .as_ref()
                        .is_some_and(|l| !session.shared.world().token_valid(&l.token));
                    Outcome { frames: Vec::new(), close: revoked }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(quiet_until) => {
                if ping_sent {
                    // No answer within the heartbeat timeout: Meteor closes the connection.
                    return;
                }
                ping_sent = true;
                quiet_until = Instant::now() + heartbeat.unwrap_or(far);
                let mut o = Outcome::default();
                o.send(json!({ "msg": "ping" }));
                o
            }
        };
        for frame in outcome.frames {
            if socket.send(Message::Text(frame.into())).await.is_err() {
                return;
            }
        }
        if outcome.close {
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    }
}

impl Session {
    /// Handles one client frame.
    fn handle(&mut self, text: &str) -> Outcome {
        let mut out = Outcome::default();
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return out; // "Discarding message with invalid JSON"
        };
        let Some(kind) = msg.get("msg").and_then(Value::as_str).map(str::to_owned) else {
            return out; // "Discarding invalid message"
        };
        if kind == "connect" {
            if self.ddp_session.is_some() {
                out.send(json!({ "msg": "error", "reason": "Already connected", "offendingMessage": msg }));
                return out;
            }
            let version = msg["version"].as_str().unwrap_or("");
            if !["1", "pre2", "pre1"].contains(&version) {
                out.send(json!({ "msg": "failed", "version": "1" }));
                out.close = true;
                return out;
            }
            let session = wire::random_id();
            out.send(json!({ "msg": "connected", "session": session }));
            self.ddp_session = Some(session);
            return out;
        }
        if self.ddp_session.is_none() {
            out.send(
                json!({ "msg": "error", "reason": "Must connect first", "offendingMessage": msg }),
            );
            return out;
        }
        match kind.as_str() {
            "ping" => {
                let mut pong = json!({ "msg": "pong" });
                if let Some(id) = msg.get("id").filter(|id| id.is_string()) {
                    pong["id"] = id.clone();
                }
                out.send(pong);
            }
            "pong" => {}
            "sub" => self.sub(&msg, &mut out),
            "unsub" => match msg["id"].as_str() {
                Some(id) => {
                    self.subs.remove(id);
                    out.send(json!({ "msg": "nosub", "id": id }));
                }
                None => out.send(
                    json!({ "msg": "error", "reason": "Bad request", "offendingMessage": msg }),
                ),
            },
            "method" => self.method(&msg, &mut out),
            _ => out
                .send(json!({ "msg": "error", "reason": "Bad request", "offendingMessage": msg })),
        }
        out
    }

    fn sub(&mut self, msg: &Value, out: &mut Outcome) {
        let (Some(id), Some(name)) = (msg["id"].as_str(), msg["name"].as_str()) else {
            out.send(json!({ "msg": "error", "reason": "Malformed subscription", "offendingMessage": msg }));
            return;
        };
        let params = match &msg["params"] {
            Value::Null => Vec::new(),
            Value::Array(p) => p.clone(),
            _ => {
                out.send(json!({ "msg": "error", "reason": "Malformed subscription", "offendingMessage": msg }));
                return;
            }
        };
        let name: &'static str = match name {
            ROOM_MESSAGES => ROOM_MESSAGES,
            NOTIFY_ROOM => NOTIFY_ROOM,
            other => {
                out.send(json!({
                    "msg": "nosub",
                    "id": id,
                    "error": meteor_error(json!(404), Some(&format!("Subscription '{other}' not found"))),
                }));
                return;
            }
        };
        let Some(event) = params.first().and_then(Value::as_str).map(str::to_owned) else {
            out.send(json!({ "msg": "nosub", "id": id, "error": internal_error() }));
            return;
        };
        if event.is_empty() {
            out.send(json!({ "msg": "nosub", "id": id, "error": meteor_error(json!("invalid-event-name"), None) }));
            return;
        }
        if !self.may_read(name, &event) {
            out.send(json!({ "msg": "nosub", "id": id, "error": meteor_error(json!("not-allowed"), None) }));
            return;
        }
        let use_collection = match params.get(1) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Object(o)) => o.get("useCollection") == Some(&Value::Bool(true)),
            _ => false,
        };
        if use_collection {
            out.send(json!({ "msg": "added", "collection": name, "id": "id", "fields": { "eventName": event } }));
        }
        self.subs.insert(id.to_owned(), Sub { name, event });
        out.send(json!({ "msg": "ready", "subs": [id] }));
    }

    /// The streamers' read rules.
    fn may_read(&self, name: &str, event: &str) -> bool {
        let w = self.shared.world();
        match name {
            ROOM_MESSAGES if event == "__my_messages__" => true,
            ROOM_MESSAGES => match (&self.login, w.room(event)) {
                (Some(l), Some(room)) => w.can_access(&l.user_id, room),
                _ => false,
            },
            _ => {
                let (rid, e) = event.split_once('/').unwrap_or((event, ""));
                e == "webrtc"
                    || self
                        .login
                        .as_ref()
                        .is_some_and(|l| w.is_member(&l.user_id, rid))
            }
        }
    }

    fn method(&mut self, msg: &Value, out: &mut Outcome) {
        let (Some(id), Some(method)) = (msg["id"].as_str(), msg["method"].as_str()) else {
            out.send(json!({ "msg": "error", "reason": "Malformed method invocation", "offendingMessage": msg }));
            return;
        };
        let params = match &msg["params"] {
            Value::Null => Vec::new(),
            Value::Array(p) => p.clone(),
            _ => {
                out.send(json!({ "msg": "error", "reason": "Malformed method invocation", "offendingMessage": msg }));
                return;
            }
        };
        let result: Result<Option<Value>, Value> = match method {
            "login" => self.login(&params, out),
            "logout" => {
                self.login = None;
                Ok(None)
            }
            NOTIFY_ROOM => self.notify_room(&params),
            other => Err(meteor_error(
                json!(404),
                Some(&format!("Method '{other}' not found")),
            )),
        };
        // Meteor reports the write fence first, then the result.
        out.send(json!({ "msg": "updated", "methods": [id] }));
        let mut reply = json!({ "msg": "result", "id": id });
        match result {
            Ok(Some(v)) => reply["result"] = v,
            Ok(None) => {}
            Err(e) => reply["error"] = e,
        }
        out.send(reply);
    }

    fn login(&mut self, params: &[Value], out: &mut Outcome) -> Result<Option<Value>, Value> {
        let p = params.first().cloned().unwrap_or(Value::Null);
        let attempt: Result<(LoginOk, &str), LoginError> = if let Some(token) = p["resume"].as_str()
        {
            self.shared.world().resume(token).map(|ok| (ok, "resume"))
        } else if !p["user"].is_null() && !p["password"].is_null() {
            let who = p["user"]["username"]
                .as_str()
                .or_else(|| p["user"]["email"].as_str())
                .or_else(|| p["user"].as_str())
                .unwrap_or("");
            let secret = match &p["password"] {
                Value::String(s) => Secret::Plain(s.clone()),
                other if other["algorithm"] == "sha-256" => {
                    Secret::Digest(other["digest"].as_str().unwrap_or("").to_owned())
                }
                _ => return Err(meteor_error(json!(400), Some("Match failed"))),
            };
            self.shared
                .world()
                .login(who, &secret)
                .map(|ok| (ok, "password"))
        } else {
            return Err(meteor_error(
                json!(400),
                Some("Unrecognized options for login request"),
            ));
        };
        match attempt {
            Ok((ok, kind)) => {
                if self.login.as_ref().map(|l| &l.user_id) != Some(&ok.user.id) {
                    out.send(json!({
                        "msg": "added",
                        "collection": "users",
                        "id": ok.user.id,
                        "fields": { "username": ok.user.username },
                    }));
                }
                self.login = Some(Login {
                    user_id: ok.user.id.clone(),
                    username: ok.user.username.clone(),
                    token: ok.token.clone(),
                });
                Ok(Some(json!({
                    "id": ok.user.id,
                    "token": ok.token,
                    "tokenExpires": ejson_date(ok.expires),
                    "type": kind,
                })))
            }
            Err(LoginError::LoggedOut) => Err(meteor_error(json!(403), Some(LOGGED_OUT))),
            Err(_) => Err(meteor_error(json!(403), Some(LOGIN_FAILURE))),
        }
    }

    /// `stream-notify-room` with `"<rid>/user-activity"` (or legacy `typing`): recorded, and
    /// re-emitted to other subscribers when the caller may type as that username.
    fn notify_room(&mut self, params: &[Value]) -> Result<Option<Value>, Value> {
        let event = params
            .first()
            .and_then(Value::as_str)
            .ok_or_else(internal_error)?;
        let (rid, kind) = event.split_once('/').unwrap_or((event, ""));
        let username = params
            .get(1)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let args: Vec<Value> = params.iter().skip(2).cloned().collect();
        let accepted = (kind == "user-activity" || kind == "typing")
            && self.login.as_ref().is_some_and(|l| l.username == username);
        lock(&self.shared.typing).push(TypingEvent {
            rid: rid.to_owned(),
            event: kind.to_owned(),
            username: username.clone(),
            args: args.clone(),
            accepted,
            session: self.id,
        });
        if accepted {
            let w = self.shared.world();
            let mut relayed = vec![json!(username)];
            relayed.extend(args.iter().cloned());
            w.publish_notify_room(event.to_owned(), relayed, self.id);
            // The server keeps the old and new typing events in sync.
            match (kind, args.first()) {
                ("user-activity", Some(Value::Array(a)))
                    if a.is_empty() || a.iter().any(|v| v == "user-typing") =>
                {
                    let typing = a.iter().any(|v| v == "user-typing");
                    w.publish_notify_room(
                        format!("{rid}/typing"),
                        vec![json!(username), json!(typing)],
                        self.id,
                    );
                }
                ("typing", first) => {
                    let on = first.and_then(Value::as_bool).unwrap_or(false);
                    let activity = if on {
                        json!(["user-typing"])
                    } else {
                        json!([])
                    };
                    w.publish_notify_room(
                        format!("{rid}/user-activity"),
                        vec![json!(username), activity],
                        self.id,
                    );
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Turns a world event into frames for this connection's subscriptions.
    fn deliver(&self, event: &WorldEvent) -> Outcome {
        let mut out = Outcome::default();
        match event {
            WorldEvent::Message { rid, doc } => {
                for sub in self.subs.values().filter(|s| s.name == ROOM_MESSAGES) {
                    if sub.event == *rid {
                        out.send(changed(ROOM_MESSAGES, rid, vec![doc.clone()]));
                    } else if sub.event == "__my_messages__" {
                        let Some(login) = &self.login else { continue };
                        let w = self.shared.world();
                        let Some(room) = w.room(rid) else { continue };
                        if !w.can_access(&login.user_id, room) {
                            continue;
                        }
                        let extra = json!({
                            "roomParticipant": w.is_member(&login.user_id, rid),
                            "roomType": room.kind.letter(),
                            "roomName": room.name.clone().filter(|_| room.kind != RoomKind::Direct),
                        });
                        out.send(changed(
                            ROOM_MESSAGES,
                            "__my_messages__",
                            vec![doc.clone(), extra],
                        ));
                    }
                }
            }
            WorldEvent::NotifyRoom {
                event_name,
                args,
                origin,
            } => {
                if *origin == self.id {
                    return out; // retransmitToSelf = false
                }
                for sub in self
                    .subs
                    .values()
                    .filter(|s| s.name == NOTIFY_ROOM && s.event == *event_name)
                {
                    let _ = sub;
                    out.send(changed(NOTIFY_ROOM, event_name, args.clone()));
                }
            }
        }
        out
    }
}

/// A streamer event frame: `{"msg":"changed","collection":…,"id":"id","fields":{eventName,args}}`.
fn changed(collection: &str, event_name: &str, args: Vec<Value>) -> Value {
    json!({
        "msg": "changed",
        "collection": collection,
        "id": "id",
        "fields": { "eventName": event_name, "args": args },
    })
}
