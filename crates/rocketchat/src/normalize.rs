//! A Rocket.Chat message document → the gateway's [`IncomingMessage`]: role, text (leading
//! `@bot` stripped outside DMs, caption or `(empty message)` when there is no text), thread
//! and permission thread (thread policy), mentions, the trusted prompt header, and the list
//! of files to download.
//!
//! Everything here is pure; the files are fetched afterwards by the connector
//! ([`crate::attachments::download_all`]). [`normalize_doc`] runs the stateless gates and the
//! normalization on a raw JSON document: the entry point of the fuzz target.

use acg_core::prompt::{prompt_header, HeaderFields};
use acg_core::user_messages::EMPTY_MESSAGE;
use acg_core::{IncomingMessage, Role, Room, RoomKind, Sender};
use serde_json::Value;

use crate::attachments::{plan_downloads, DownloadPlan};
use crate::doc::{parse_message, RcMessage};
use crate::filter::{screen, DropReason, Gates, Screened};
use crate::mention::{strip, strip_leading_mention};

/// The platform label in prompt headers.
pub const PLATFORM: &str = "Rocket.Chat";

/// Connector-wide settings normalization needs (from `ChatServerConfig`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Who may speak, and the mention rules.
    pub gates: Gates,
    /// `reply_in_thread`: answers to top-level messages start a thread.
    pub reply_in_thread: bool,
    /// `permission_reply_in_thread`: permission requests go to a thread of the message.
    pub permission_reply_in_thread: bool,
    /// IANA zone for the header's `day:`/`ts:`.
    pub timezone: String,
}

/// What normalizing one message needs: the connector's settings and the room.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Connector-wide settings.
    pub settings: &'a Settings,
    /// The room the message came from, as resolved (for DMs, named `@user`).
    pub room: &'a Room,
}

/// A normalized message and the files still to fetch for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The message; `attachments` is empty until the downloads ran.
    pub message: IncomingMessage,
    /// Files to download, in order.
    pub downloads: Vec<DownloadPlan>,
}

/// Builds the message the gateway hands to watchers. `msg` must have passed [`screen`]
/// (an id and a sender); missing ones are filled with empty strings rather than failing.
pub fn normalize(msg: &RcMessage, ctx: &Ctx<'_>) -> Normalized {
    let settings = ctx.settings;
    let gates = &settings.gates;
    let bot = gates.bot_username.as_str();
    let is_dm = ctx.room.kind == RoomKind::Dm;
    let (sender_id, username, display_name) = match &msg.sender {
        Some(u) => (u.id.clone(), u.username.clone(), u.name.clone()),
        None => Default::default(),
    };
    let role = if gates.owners.contains(&username) {
        Role::Owner
    } else {
        Role::Guest
    };
    let clean = |text: &str| -> String {
        if is_dm {
            strip(text).to_string()
        } else {
            strip_leading_mention(text, bot).to_string()
        }
    };
    let mut text = clean(&msg.text);
    if text.is_empty() {
        text = msg
            .attachments
            .iter()
            .filter_map(|a| a.description.as_deref())
            .map(clean)
            .find(|caption| !caption.is_empty())
            .unwrap_or_else(|| EMPTY_MESSAGE.to_string());
    }
    let id = msg
        .id
        .clone()
        .or_else(|| msg.ts_ms.map(|ts| ts.to_string()))
        .unwrap_or_default();
    // Thread policy: answer in the message's thread; with reply_in_thread a top-level
    // message starts one. Permission requests follow the reply's thread, else (by default)
    // go to a thread of the message itself.
    let thread_id = msg
        .thread_id
        .clone()
        .or_else(|| settings.reply_in_thread.then(|| id.clone()));
    let permission_thread_id = thread_id
        .clone()
        .or_else(|| settings.permission_reply_in_thread.then(|| id.clone()));
    let timezone = (!settings.timezone.is_empty()).then_some(settings.timezone.as_str());
    let header = prompt_header(&HeaderFields {
        platform: PLATFORM,
        room_name: &ctx.room.name,
        room_kind: ctx.room.kind,
        sender: &username,
        role,
        timestamp_ms: msg.ts_ms,
        timezone,
        mentions: &msg.mentions,
        bot_username: Some(bot),
        peer_agents: &gates.agents,
    });
    Normalized {
        message: IncomingMessage {
            id,
            room: ctx.room.clone(),
            sender: Sender {
                id: sender_id,
                username,
                display_name,
            },
            role,
            text,
            timestamp_ms: msg.ts_ms,
            thread_id,
            permission_thread_id,
            mentions: msg.mentions.clone(),
            attachments: Vec::new(),
            warnings: Vec::new(),
            prompt_header: header,
        },
        downloads: plan_downloads(msg),
    }
}

/// Parses a raw document, runs the stateless gates and normalizes it. Pure and total: any
/// JSON value gives a message or a reason to drop it.
pub fn normalize_doc(doc: &Value, ctx: &Ctx<'_>) -> Result<Normalized, DropReason> {
    let msg = parse_message(doc).ok_or(DropReason::Malformed("not an object"))?;
    let Screened { .. } = screen(&msg, &ctx.settings.gates, ctx.room.kind)?;
    Ok(normalize(&msg, ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Settings {
        Settings {
            gates: Gates {
                bot_username: "bot".into(),
                owners: vec!["alice".into()],
                guests: vec!["gina".into()],
                agents: vec!["wavebro".into()],
                filter_sender: true,
                require_mention: true,
            },
            reply_in_thread: false,
            permission_reply_in_thread: true,
            timezone: "America/Los_Angeles".into(),
        }
    }

    fn room(kind: RoomKind) -> Room {
        Room {
            id: "R1".into(),
            name: if kind == RoomKind::Dm {
                "@alice".into()
            } else {
                "gen[eral]".into()
            },
            kind,
        }
    }

    fn doc(sender: &str, text: &str) -> Value {
        json!({
            "_id": "m1", "rid": "R1", "msg": text,
            "ts": {"$date": 1777052400000_i64},
            "u": {"_id": "U1", "username": sender, "name": "Display"},
        })
    }

    fn run(doc: &Value, s: &Settings, kind: RoomKind) -> Result<Normalized, DropReason> {
        let room = room(kind);
        normalize_doc(
            doc,
            &Ctx {
                settings: s,
                room: &room,
            },
        )
    }

    #[test]
    fn channel_message_with_header() {
        let mut d = doc("ali|ce", "@bot please summarize");
        d["mentions"] = json!([{"username": "bot"}, {"username": "all"}, {"username": "wavebro"}, {"username": "bob"}]);
        let mut s = settings();
        s.gates.owners.push("ali|ce".into());
        let n = run(&d, &s, RoomKind::Channel).unwrap();
        let m = n.message;
        assert_eq!(m.text, "please summarize");
        assert_eq!(m.role, Role::Owner);
        assert_eq!(m.sender.id, "U1");
        assert_eq!(m.sender.display_name.as_deref(), Some("Display"));
        assert_eq!(m.timestamp_ms, Some(1777052400000));
        assert_eq!(m.mentions, vec!["bot", "all", "wavebro", "bob"]);
        assert_eq!(
            m.prompt_header,
            "[Rocket.Chat #gen_eral_ | from: ali_ce | role: owner | day: Fri | ts: 2026-04-24T10:40:00-07:00 | to: me+@all+@wavebro]"
        );
        assert!(n.downloads.is_empty());
    }

    #[test]
    fn dm_keeps_leading_mention_and_says_to_me() {
        let n = run(&doc("gina", "  @bot hi  "), &settings(), RoomKind::Dm).unwrap();
        assert_eq!(n.message.text, "@bot hi");
        assert_eq!(n.message.role, Role::Guest);
        assert_eq!(
            n.message.prompt_header,
            "[Rocket.Chat #@alice | from: gina | role: guest | day: Fri | ts: 2026-04-24T10:40:00-07:00 | to: me]"
        );
    }

    #[test]
    fn unknown_timezone_or_timestamp_omits_day_and_ts() {
        let mut s = settings();
        s.timezone = "Mars/Olympus".into();
        let n = run(&doc("alice", "@bot x"), &s, RoomKind::Channel).unwrap();
        assert_eq!(
            n.message.prompt_header,
            "[Rocket.Chat #gen_eral_ | from: alice | role: owner | to: *]"
        );
        let mut d = doc("alice", "@bot x");
        d["ts"] = json!("garbage");
        let n = run(&d, &settings(), RoomKind::Channel).unwrap();
        assert!(!n.message.prompt_header.contains("ts:"));
        assert_eq!(n.message.timestamp_ms, None);
    }

    #[test]
    fn empty_text_falls_back_to_caption_then_placeholder() {
        let mut d = doc("alice", "@bot");
        d["attachments"] = json!([{"description": ""}, {"description": "@bot the caption"}]);
        let n = run(&d, &settings(), RoomKind::Channel).unwrap();
        assert_eq!(n.message.text, "the caption");
        let n = run(&doc("alice", "@bot   "), &settings(), RoomKind::Channel).unwrap();
        assert_eq!(n.message.text, "(empty message)");
        let n = run(&doc("alice", ""), &settings(), RoomKind::Dm).unwrap();
        assert_eq!(n.message.text, EMPTY_MESSAGE);
    }

    #[test]
    fn thread_policy() {
        // Top-level, defaults: reply in the room, permissions in a thread of the message.
        let n = run(&doc("alice", "@bot x"), &settings(), RoomKind::Channel).unwrap();
        assert_eq!(n.message.thread_id, None);
        assert_eq!(n.message.permission_thread_id.as_deref(), Some("m1"));
        // permission_reply_in_thread off: room level.
        let mut s = settings();
        s.permission_reply_in_thread = false;
        let n = run(&doc("alice", "@bot x"), &s, RoomKind::Channel).unwrap();
        assert_eq!(n.message.permission_thread_id, None);
        // reply_in_thread: the reply starts a thread on the message.
        s.reply_in_thread = true;
        let n = run(&doc("alice", "@bot x"), &s, RoomKind::Channel).unwrap();
        assert_eq!(n.message.thread_id.as_deref(), Some("m1"));
        assert_eq!(n.message.permission_thread_id.as_deref(), Some("m1"));
        // A thread reply stays in its thread, whatever the settings.
        let mut d = doc("alice", "@bot x");
        d["tmid"] = json!("T9");
        for s in [settings(), s] {
            let n = run(&d, &s, RoomKind::Channel).unwrap();
            assert_eq!(n.message.thread_id.as_deref(), Some("T9"));
            assert_eq!(n.message.permission_thread_id.as_deref(), Some("T9"));
        }
    }

    #[test]
    fn files_are_planned() {
        let mut d = doc("alice", "@bot see file");
        d["files"] = json!([{"_id": "F1", "name": "../x.png", "size": 3}]);
        d["attachments"] = json!([{"title": "../x.png", "title_link": "/file-upload/F1/x.png"}]);
        let n = run(&d, &settings(), RoomKind::Channel).unwrap();
        assert_eq!(n.downloads.len(), 1);
        assert_eq!(n.downloads[0].file_name, "F1_.._x.png");
        assert_eq!(n.downloads[0].display_name, "../x.png");
    }

    #[test]
    fn gates_apply() {
        assert_eq!(
            run(&doc("mallory", "@bot x"), &settings(), RoomKind::Channel).unwrap_err(),
            DropReason::NotAllowed
        );
        assert_eq!(
            run(&json!([1]), &settings(), RoomKind::Channel).unwrap_err(),
            DropReason::Malformed("not an object")
        );
    }
}
