//! A Rocket.Chat message document (`IMessage` of `@rocket.chat/core-typings`) read leniently
//! into [`RcMessage`]: a field that is missing or has the wrong type is simply absent, so a
//! strange document is filtered out later instead of failing the connection.
//!
//! The same document arrives in two encodings: over DDP dates are EJSON
//! (`{"$date": 1777052400000}`), over REST they are ISO strings
//! (`"2026-04-24T17:40:00.000Z"`). [`parse_time_ms`] reads both.

use serde_json::Value;

/// The sender of a message (`u`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcUser {
    /// `u._id`.
    pub id: String,
    /// `u.username`.
    pub username: String,
    /// `u.name`, the display name.
    pub name: Option<String>,
}

/// One uploaded file of a message (`files[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RcFile {
    /// `_id`, the upload's id.
    pub id: Option<String>,
    /// `name`, as uploaded.
    pub name: Option<String>,
    /// `size` in bytes.
    pub size: Option<u64>,
    /// `type`, the MIME type.
    pub mime: Option<String>,
}

/// One attachment block of a message (`attachments[]`): for uploads it carries the
/// download link and the caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcAttachment {
    /// `title`, usually the file name.
    pub title: Option<String>,
    /// `title_link`, the download path (`/file-upload/<id>/<name>`).
    pub title_link: Option<String>,
    /// `description`, the caption.
    pub description: Option<String>,
}

/// The fields of a message document the connector uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RcMessage {
    /// `_id`.
    pub id: Option<String>,
    /// `rid`, the room.
    pub room_id: Option<String>,
    /// `msg`, the text ("" when absent).
    pub text: String,
    /// `ts`, when it was posted (ms since the epoch).
    pub ts_ms: Option<i64>,
    /// `_updatedAt`, when it last changed.
    pub updated_ms: Option<i64>,
    /// `editedAt` is present: the text was edited.
    pub edited: bool,
    /// `t`, the system message type (user joined, topic changed, …).
    pub system_type: Option<String>,
    /// `tmid`, the thread it belongs to.
    pub thread_id: Option<String>,
    /// `u`, the sender.
    pub sender: Option<RcUser>,
    /// `mentions[].username`, non-empty ones, in order (the server's own parse, trusted).
    pub mentions: Vec<String>,
    /// `files[]`.
    pub files: Vec<RcFile>,
    /// `attachments[]`.
    pub attachments: Vec<RcAttachment>,
}

/// A non-empty string field.
fn string(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Reads a message document; `None` when it is not a JSON object.
pub fn parse_message(doc: &Value) -> Option<RcMessage> {
    let obj = doc.as_object()?;
    let sender = obj.get("u").and_then(Value::as_object).and_then(|u| {
        Some(RcUser {
            id: string(u.get("_id"))?,
            username: string(u.get("username"))?,
            name: string(u.get("name")),
        })
    });
    let mentions = obj
        .get("mentions")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| string(m.get("username")))
                .collect()
        })
        .unwrap_or_default();
    let files = obj
        .get("files")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|f| f.is_object())
                .map(|f| RcFile {
                    id: string(f.get("_id")),
                    name: string(f.get("name")),
                    size: f.get("size").and_then(size_bytes),
                    mime: string(f.get("type")),
                })
                .collect()
        })
        .unwrap_or_default();
    let attachments = obj
        .get("attachments")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|a| a.is_object())
                .map(|a| RcAttachment {
                    title: string(a.get("title")),
                    title_link: string(a.get("title_link")),
                    description: string(a.get("description")),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(RcMessage {
        id: string(obj.get("_id")),
        room_id: string(obj.get("rid")),
        text: obj
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ts_ms: obj.get("ts").and_then(parse_time_ms),
        updated_ms: obj.get("_updatedAt").and_then(parse_time_ms),
        edited: obj.get("editedAt").is_some_and(|v| !v.is_null()),
        system_type: string(obj.get("t")),
        thread_id: string(obj.get("tmid")),
        sender,
        mentions,
        files,
        attachments,
    })
}

/// A file size: a non-negative number (floats are truncated).
fn size_bytes(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

/// A date in any of the encodings Rocket.Chat uses, as ms since the epoch: EJSON
/// `{"$date": <ms>}` (DDP), an ISO 8601 string (REST), a number of ms, or a string of digits.
pub fn parse_time_ms(value: &Value) -> Option<i64> {
    match value {
        Value::Object(obj) => obj.get("$date").and_then(parse_time_ms),
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(ms) = s.parse::<i64>() {
                return Some(ms);
            }
            s.parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.as_millisecond())
        }
        _ => None,
    }
}

/// An epoch-ms time as the ISO 8601 UTC string Rocket.Chat's REST API takes for `oldest`
/// and `latest` (`2026-04-24T17:40:00.000Z`).
pub fn iso_utc(ms: i64) -> Option<String> {
    let ts = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(format!(
        "{}.{:03}Z",
        ts.strftime("%Y-%m-%dT%H:%M:%S"),
        ms.rem_euclid(1000)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_ddp_document() {
        let doc = json!({
            "_id": "m1", "rid": "R1", "msg": "@bot hi",
            "ts": {"$date": 1777052400000_i64},
            "_updatedAt": {"$date": 1777052400001_i64},
            "u": {"_id": "U1", "username": "alice", "name": "Alice A"},
            "mentions": [{"_id": "B", "username": "bot"}, {"_id": "x"}, {"username": ""}],
            "tmid": "T1",
            "files": [{"_id": "F1", "name": "a.png", "size": 12, "type": "image/png"}],
            "attachments": [{"title": "a.png", "title_link": "/file-upload/F1/a.png", "description": "cap"}]
        });
        let m = parse_message(&doc).unwrap();
        assert_eq!(m.id.as_deref(), Some("m1"));
        assert_eq!(m.room_id.as_deref(), Some("R1"));
        assert_eq!(m.text, "@bot hi");
        assert_eq!(m.ts_ms, Some(1777052400000));
        assert_eq!(m.updated_ms, Some(1777052400001));
        assert!(!m.edited);
        assert_eq!(m.thread_id.as_deref(), Some("T1"));
        assert_eq!(
            m.sender,
            Some(RcUser {
                id: "U1".into(),
                username: "alice".into(),
                name: Some("Alice A".into())
            })
        );
        assert_eq!(m.mentions, vec!["bot".to_string()]);
        assert_eq!(m.files[0].size, Some(12));
        assert_eq!(m.attachments[0].description.as_deref(), Some("cap"));
    }

    #[test]
    fn reads_rest_dates_and_flags() {
        let doc = json!({
            "_id": "m2", "ts": "2026-04-24T17:40:00.000Z", "t": "uj", "editedAt": "2026-04-24T17:41:00.000Z"
        });
        let m = parse_message(&doc).unwrap();
        assert_eq!(m.ts_ms, Some(1777052400000));
        assert_eq!(m.system_type.as_deref(), Some("uj"));
        assert!(m.edited);
        assert!(m.sender.is_none());
        assert_eq!(m.text, "");
    }

    #[test]
    fn wrong_types_become_absent() {
        let doc = json!({
            "_id": 5, "msg": ["x"], "ts": true, "u": {"_id": "U", "username": 3},
            "mentions": "bot", "files": [1, {"size": -4}], "attachments": {"a": 1}, "t": ""
        });
        let m = parse_message(&doc).unwrap();
        assert_eq!(m.id, None);
        assert_eq!(m.text, "");
        assert_eq!(m.ts_ms, None);
        assert!(m.sender.is_none());
        assert!(m.mentions.is_empty());
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].size, None);
        assert!(m.attachments.is_empty());
        assert_eq!(m.system_type, None);
        assert!(parse_message(&json!("text")).is_none());
    }

    #[test]
    fn time_encodings() {
        assert_eq!(parse_time_ms(&json!({"$date": 5})), Some(5));
        assert_eq!(parse_time_ms(&json!({"$date": 5.9})), Some(5));
        assert_eq!(parse_time_ms(&json!("1777052400000")), Some(1777052400000));
        assert_eq!(
            parse_time_ms(&json!("2026-04-24T10:40:00-07:00")),
            Some(1777052400000)
        );
        assert_eq!(parse_time_ms(&json!("yesterday")), None);
        assert_eq!(parse_time_ms(&json!(1e300)), None);
        assert_eq!(parse_time_ms(&json!({"$date": {"$date": 7}})), Some(7));
        assert_eq!(parse_time_ms(&json!(null)), None);
    }

    #[test]
    fn iso_for_rest_queries() {
        assert_eq!(
            iso_utc(1777052400000).as_deref(),
            Some("2026-04-24T17:40:00.000Z")
        );
        assert_eq!(
            iso_utc(1777052400123).as_deref(),
            Some("2026-04-24T17:40:00.123Z")
        );
    }
}
