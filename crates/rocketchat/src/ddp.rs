//! DDP, the WebSocket protocol Rocket.Chat speaks (Meteor's Distributed Data Protocol): the
//! frames the connector sends, and [`parse_frame`] for the frames it receives.
//!
//! Only what a bot needs is modelled: the `connect` handshake, `login` (resume token or
//! SHA-256 password digest), `sub`/`unsub` of `stream-room-messages`, method calls (typing),
//! and `ping`/`pong` keepalive. Everything else the server sends (`added`, `updated`, …) parses
//! to [`Frame::Other`] and is ignored. Parsing never panics, whatever the input (see the
//! fuzz target `fuzz/fuzz_targets/ddp_frame.rs`).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The DDP stream that carries new and updated messages of one room.
pub const ROOM_MESSAGES_STREAM: &str = "stream-room-messages";

/// One frame received from the server, reduced to what the connector acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `{"server_id": "0"}`: Meteor's greeting before the handshake; ignored.
    ServerId,
    /// The handshake succeeded.
    Connected {
        /// The server's session id (for logs).
        session: Option<String>,
    },
    /// The server refused the protocol version.
    Failed {
        /// The version the server would speak.
        version: Option<String>,
    },
    /// The server checks we are alive; answer with a pong carrying the same id.
    Ping {
        /// Echoed back in the pong.
        id: Option<String>,
    },
    /// The answer to one of our pings.
    Pong,
    /// The outcome of a method call.
    MethodResult {
        /// The id of the call.
        id: String,
        /// The result value, or the server's error message.
        outcome: Result<Value, String>,
    },
    /// Subscriptions that are now active.
    Ready {
        /// Their ids.
        subs: Vec<String>,
    },
    /// A subscription was refused or ended by the server.
    NoSub {
        /// Its id.
        id: String,
        /// The server's reason, if it gave one.
        error: Option<String>,
    },
    /// A message was posted or changed in a room we subscribed to.
    RoomMessage {
        /// The room id from `fields.eventName` (the doc's own `rid` is the fallback).
        room_id: Option<String>,
        /// The message document (`fields.args[0]`).
        doc: Value,
    },
    /// Anything else (`added`, `updated`, other streams, …); carries the `msg` value.
    Other(String),
}

/// Why a received text could not be read as a DDP frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON at all.
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("frame is not a JSON object")]
    NotAnObject,
    /// A frame kind we act on lacks a field it must have.
    #[error("`{msg}` frame without a usable `{field}`")]
    MissingField {
        /// The frame's `msg`.
        msg: String,
        /// The missing field.
        field: &'static str,
    },
}

/// Reads one received text frame. Never panics; unknown frame kinds are [`Frame::Other`].
pub fn parse_frame(text: &str) -> Result<Frame, FrameError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let obj = value.as_object().ok_or(FrameError::NotAnObject)?;
    let msg = match obj.get("msg").and_then(Value::as_str) {
        Some(msg) => msg,
        None if obj.contains_key("server_id") => return Ok(Frame::ServerId),
        None => return Ok(Frame::Other(String::new())),
    };
    let str_field = |name: &str| obj.get(name).and_then(Value::as_str).map(str::to_string);
    let missing = |field: &'static str| FrameError::MissingField {
        msg: msg.to_string(),
        field,
    };
    Ok(match msg {
        "connected" => Frame::Connected {
            session: str_field("session"),
        },
        "failed" => Frame::Failed {
            version: str_field("version"),
        },
        "ping" => Frame::Ping {
            id: str_field("id"),
        },
        "pong" => Frame::Pong,
        "result" => {
            let id = str_field("id").ok_or_else(|| missing("id"))?;
            let outcome = match obj.get("error") {
                Some(error) if !error.is_null() => Err(error_text(error)),
                _ => Ok(obj.get("result").cloned().unwrap_or(Value::Null)),
            };
            Frame::MethodResult { id, outcome }
        }
        "ready" => {
            let subs = obj
                .get("subs")
                .and_then(Value::as_array)
                .ok_or_else(|| missing("subs"))?
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            Frame::Ready { subs }
        }
        "nosub" => {
            let id = str_field("id").ok_or_else(|| missing("id"))?;
            let error = obj.get("error").filter(|e| !e.is_null()).map(error_text);
            Frame::NoSub { id, error }
        }
        "changed"
            if obj.get("collection").and_then(Value::as_str) == Some(ROOM_MESSAGES_STREAM) =>
        {
            let fields = obj
                .get("fields")
                .and_then(Value::as_object)
                .ok_or_else(|| missing("fields"))?;
            let doc = fields
                .get("args")
                .and_then(Value::as_array)
                .and_then(|args| args.first())
                .filter(|doc| doc.is_object())
                .cloned()
                .ok_or_else(|| missing("fields.args"))?;
            let room_id = fields
                .get("eventName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .or_else(|| doc.get("rid").and_then(Value::as_str).map(str::to_string));
            Frame::RoomMessage { room_id, doc }
        }
        other => Frame::Other(other.to_string()),
    })
}

/// The readable part of a DDP error object (`reason`, then `message`, then `error`).
fn error_text(error: &Value) -> String {
    for key in ["reason", "message", "error"] {
        match error.get(key) {
            Some(Value::String(s)) if !s.is_empty() => return s.clone(),
            Some(Value::Number(n)) => return n.to_string(),
            _ => {}
        }
    }
    match error {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The handshake: protocol version 1 only.
pub fn connect() -> String {
    json!({"msg": "connect", "version": "1", "support": ["1"]}).to_string()
}

/// Login with a resume token (the REST `authToken` works as one).
pub fn login_resume(id: &str, token: &str) -> String {
    method(id, "login", json!([{"resume": token}]))
}

/// Login with the SHA-256 digest of the password (the password itself never goes on the socket).
pub fn login_digest(id: &str, username: &str, password: &str) -> String {
    method(
        id,
        "login",
        json!([{
            "user": {"username": username},
            "password": {"digest": sha256_hex(password), "algorithm": "sha-256"}
        }]),
    )
}

/// Subscribes to new and changed messages of one room.
pub fn sub_room_messages(id: &str, room_id: &str) -> String {
    json!({"msg": "sub", "id": id, "name": ROOM_MESSAGES_STREAM, "params": [room_id, false]})
        .to_string()
}

/// Ends a subscription.
pub fn unsub(id: &str) -> String {
    json!({"msg": "unsub", "id": id}).to_string()
}

/// Our keepalive ping.
pub fn ping(id: &str) -> String {
    json!({"msg": "ping", "id": id}).to_string()
}

/// The answer to a server ping (echoing its id when it had one).
pub fn pong(id: Option<&str>) -> String {
    match id {
        Some(id) => json!({"msg": "pong", "id": id}).to_string(),
        None => json!({"msg": "pong"}).to_string(),
    }
}

/// Shows (`on`) or clears the typing indicator of `username` in a room (Rocket.Chat ≥ 7
/// `user-activity`); in a thread the thread id goes in the extras.
pub fn typing(
    id: &str,
    room_id: &str,
    username: &str,
    on: bool,
    thread_id: Option<&str>,
) -> String {
    let activity = if on {
        json!(["user-typing"])
    } else {
        json!([])
    };
    let mut params = vec![
        json!(format!("{room_id}/user-activity")),
        json!(username),
        activity,
    ];
    if let Some(tmid) = thread_id {
        params.push(json!({"tmid": tmid}));
    }
    method(id, "stream-notify-room", Value::Array(params))
}

/// A method call frame.
pub fn method(id: &str, name: &str, params: Value) -> String {
    json!({"msg": "method", "method": name, "id": id, "params": params}).to_string()
}

/// Lower-case hex SHA-256 of a UTF-8 string, as Meteor's password digest expects.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_handshake_frames() {
        assert_eq!(parse_frame(r#"{"server_id":"0"}"#), Ok(Frame::ServerId));
        assert_eq!(
            parse_frame(r#"{"msg":"connected","session":"abc"}"#),
            Ok(Frame::Connected {
                session: Some("abc".into())
            })
        );
        assert_eq!(
            parse_frame(r#"{"msg":"failed","version":"1"}"#),
            Ok(Frame::Failed {
                version: Some("1".into())
            })
        );
    }

    #[test]
    fn parses_ping_pong() {
        assert_eq!(
            parse_frame(r#"{"msg":"ping"}"#),
            Ok(Frame::Ping { id: None })
        );
        assert_eq!(
            parse_frame(r#"{"msg":"ping","id":"7"}"#),
            Ok(Frame::Ping {
                id: Some("7".into())
            })
        );
        assert_eq!(parse_frame(r#"{"msg":"pong","id":"x"}"#), Ok(Frame::Pong));
    }

    #[test]
    fn parses_results() {
        assert_eq!(
            parse_frame(r#"{"msg":"result","id":"a1","result":{"token":"t"}}"#),
            Ok(Frame::MethodResult {
                id: "a1".into(),
                outcome: Ok(json!({"token": "t"}))
            })
        );
        assert_eq!(
            parse_frame(r#"{"msg":"result","id":"a1"}"#),
            Ok(Frame::MethodResult {
                id: "a1".into(),
                outcome: Ok(Value::Null)
            })
        );
        assert_eq!(
            parse_frame(
                r#"{"msg":"result","id":"a2","error":{"error":403,"reason":"User has no password set","message":"User has no password set [403]"}}"#
            ),
            Ok(Frame::MethodResult {
                id: "a2".into(),
                outcome: Err("User has no password set".into())
            })
        );
        assert_eq!(
            parse_frame(r#"{"msg":"result","id":"a3","error":{"error":"too-many-requests"}}"#),
            Ok(Frame::MethodResult {
                id: "a3".into(),
                outcome: Err("too-many-requests".into())
            })
        );
        assert!(matches!(
            parse_frame(r#"{"msg":"result"}"#),
            Err(FrameError::MissingField { field: "id", .. })
        ));
    }

    #[test]
    fn parses_subscription_frames() {
        assert_eq!(
            parse_frame(r#"{"msg":"ready","subs":["s1","s2"]}"#),
            Ok(Frame::Ready {
                subs: vec!["s1".into(), "s2".into()]
            })
        );
        assert_eq!(
            parse_frame(
                r#"{"msg":"nosub","id":"s1","error":{"message":"not allowed","error":"not-allowed"}}"#
            ),
            Ok(Frame::NoSub {
                id: "s1".into(),
                error: Some("not allowed".into())
            })
        );
        assert_eq!(
            parse_frame(r#"{"msg":"nosub","id":"s1"}"#),
            Ok(Frame::NoSub {
                id: "s1".into(),
                error: None
            })
        );
    }

    #[test]
    fn parses_room_messages() {
        let text = r#"{"msg":"changed","collection":"stream-room-messages","id":"id","fields":{"eventName":"R1","args":[{"_id":"m1","rid":"R1","msg":"hi"}]}}"#;
        assert_eq!(
            parse_frame(text),
            Ok(Frame::RoomMessage {
                room_id: Some("R1".into()),
                doc: json!({"_id": "m1", "rid": "R1", "msg": "hi"})
            })
        );
        // Without eventName the doc's rid names the room.
        let text = r#"{"msg":"changed","collection":"stream-room-messages","fields":{"args":[{"_id":"m1","rid":"R2"}]}}"#;
        assert!(matches!(
            parse_frame(text),
            Ok(Frame::RoomMessage { room_id: Some(r), .. }) if r == "R2"
        ));
        // Other collections are not room messages.
        let text = r#"{"msg":"changed","collection":"users","id":"u","fields":{}}"#;
        assert_eq!(parse_frame(text), Ok(Frame::Other("changed".into())));
        let text = r#"{"msg":"changed","collection":"stream-room-messages","fields":{"args":[]}}"#;
        assert!(parse_frame(text).is_err());
        let text =
            r#"{"msg":"changed","collection":"stream-room-messages","fields":{"args":["x"]}}"#;
        assert!(parse_frame(text).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            parse_frame("not json"),
            Err(FrameError::NotJson(_))
        ));
        assert_eq!(parse_frame("[1,2]"), Err(FrameError::NotAnObject));
        assert_eq!(parse_frame("{}"), Ok(Frame::Other(String::new())));
        assert_eq!(parse_frame(r#"{"msg":5}"#), Ok(Frame::Other(String::new())));
        assert_eq!(
            parse_frame(r#"{"msg":"added","collection":"users"}"#),
            Ok(Frame::Other("added".into()))
        );
    }

    #[test]
    fn outgoing_frames_have_the_wire_shape() {
        let v: Value = serde_json::from_str(&connect()).unwrap();
        assert_eq!(
            v,
            json!({"msg": "connect", "version": "1", "support": ["1"]})
        );
        let v: Value = serde_json::from_str(&login_digest("i1", "bot", "secret")).unwrap();
        assert_eq!(
            v,
            json!({"msg": "method", "method": "login", "id": "i1", "params": [{
                "user": {"username": "bot"},
                "password": {"digest": "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b", "algorithm": "sha-256"}
            }]})
        );
        let v: Value = serde_json::from_str(&login_resume("i2", "tok")).unwrap();
        assert_eq!(
            v,
            json!({"msg": "method", "method": "login", "id": "i2", "params": [{"resume": "tok"}]})
        );
        let v: Value = serde_json::from_str(&sub_room_messages("s1", "R1")).unwrap();
        assert_eq!(
            v,
            json!({"msg": "sub", "id": "s1", "name": "stream-room-messages", "params": ["R1", false]})
        );
        let v: Value = serde_json::from_str(&unsub("s1")).unwrap();
        assert_eq!(v, json!({"msg": "unsub", "id": "s1"}));
        let v: Value = serde_json::from_str(&pong(Some("p"))).unwrap();
        assert_eq!(v, json!({"msg": "pong", "id": "p"}));
        let v: Value = serde_json::from_str(&pong(None)).unwrap();
        assert_eq!(v, json!({"msg": "pong"}));
    }

    #[test]
    fn typing_frames() {
        let v: Value = serde_json::from_str(&typing("t1", "R1", "bot", true, None)).unwrap();
        assert_eq!(
            v,
            json!({"msg": "method", "method": "stream-notify-room", "id": "t1",
                   "params": ["R1/user-activity", "bot", ["user-typing"]]})
        );
        let v: Value = serde_json::from_str(&typing("t2", "R1", "bot", false, None)).unwrap();
        assert_eq!(v["params"], json!(["R1/user-activity", "bot", []]));
        let v: Value = serde_json::from_str(&typing("t3", "R1", "bot", true, Some("T"))).unwrap();
        assert_eq!(
            v["params"],
            json!(["R1/user-activity", "bot", ["user-typing"], {"tmid": "T"}])
        );
    }

    #[test]
    fn digest_is_lowercase_sha256_hex() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_hex("pässwörd").len(), 64);
    }
}
