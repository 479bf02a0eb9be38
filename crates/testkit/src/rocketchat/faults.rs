//! Fault injection: the ways a real deployment misbehaves that a connector must survive —
//! failing or slow REST calls, dropped sockets, malformed DDP frames, revoked tokens, and the
//! whole server going away (see `FakeRocketChat::stop`/`restart`).

use std::time::Duration;

use serde_json::json;

/// REST faults waiting to be applied.
#[derive(Debug, Default)]
pub(crate) struct RestFaults {
    /// Answer the next `n` REST calls with this status instead of serving them.
    pub fail_next: Option<(usize, u16)>,
    /// Delay every REST call by this much before serving it.
    pub delay: Option<Duration>,
}

impl RestFaults {
    /// Takes one pending failure, if any.
    pub(crate) fn take_failure(&mut self) -> Option<u16> {
        let (left, status) = self.fail_next.as_mut()?;
        let status = *status;
        *left -= 1;
        if *left == 0 {
            self.fail_next = None;
        }
        Some(status)
    }
}

/// Broken DDP traffic the server can push to every connected socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedFrames {
    /// A text frame that is not JSON at all.
    Garbage,
    /// Valid JSON that is not a DDP message (an array, a string, an object without `msg`).
    WrongJson,
    /// `changed` frames with missing parts: no `fields`, `fields` without `args`, an empty
    /// `args`, a non-object document, a document without `_id`/`rid`.
    ChangedMissingFields,
    /// `result`/`ready`/`nosub` frames for ids nobody asked about, and a `result` without `id`.
    UnexpectedReplies,
    /// A DDP message type that does not exist (`{"msg":"surprise"}`).
    UnknownMessage,
}

impl MalformedFrames {
    /// Every kind, for tests that want to throw everything at a client.
    pub const ALL: [MalformedFrames; 5] = [
        MalformedFrames::Garbage,
        MalformedFrames::WrongJson,
        MalformedFrames::ChangedMissingFields,
        MalformedFrames::UnexpectedReplies,
        MalformedFrames::UnknownMessage,
    ];

    /// The text frames of this kind.
    pub fn frames(self) -> Vec<String> {
        let c = "stream-room-messages";
        let values = match self {
            MalformedFrames::Garbage => {
                return vec![
                    "\u{1}not json at all {{".to_owned(),
                    "{\"msg\":\"changed\",".to_owned(),
                    String::new(),
                ]
            }
            MalformedFrames::WrongJson => vec![
                json!([1, 2, 3]),
                json!("changed"),
                json!(42),
                json!(null),
                json!({"message": "no msg field"}),
                json!({"msg": 7}),
            ],
            MalformedFrames::ChangedMissingFields => vec![
                json!({"msg": "changed", "collection": c, "id": "id"}),
                json!({"msg": "changed", "collection": c, "id": "id", "fields": {"eventName": "GENERAL"}}),
                json!({"msg": "changed", "collection": c, "id": "id", "fields": {"eventName": "GENERAL", "args": []}}),
                json!({"msg": "changed", "collection": c, "id": "id", "fields": {"eventName": "GENERAL", "args": ["just a string"]}}),
                json!({"msg": "changed", "collection": c, "id": "id", "fields": {"eventName": "GENERAL", "args": [{"msg": "no id, no rid, no u"}]}}),
                json!({"msg": "changed", "collection": c, "id": "id", "fields": {"eventName": 5, "args": [{"_id": 1, "rid": [], "msg": {}, "ts": "yesterday", "u": "x"}]}}),
            ],
            MalformedFrames::UnexpectedReplies => vec![
                json!({"msg": "result", "id": "nobody-asked", "result": {}}),
                json!({"msg": "result"}),
                json!({"msg": "ready", "subs": ["nobody-asked"]}),
                json!({"msg": "ready"}),
                json!({"msg": "nosub", "id": "nobody-asked"}),
                json!({"msg": "updated", "methods": ["nobody-asked"]}),
            ],
            MalformedFrames::UnknownMessage => vec![
                json!({"msg": "surprise", "payload": {"x": 1}}),
                json!({"msg": "added", "collection": "something-else", "id": "x", "fields": {}}),
            ],
        };
        values.into_iter().map(|v| v.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_down() {
        let mut f = RestFaults {
            fail_next: Some((2, 503)),
            delay: None,
        };
        assert_eq!(f.take_failure(), Some(503));
        assert_eq!(f.take_failure(), Some(503));
        assert_eq!(f.take_failure(), None);
    }

    #[test]
    fn every_kind_has_frames() {
        for kind in MalformedFrames::ALL {
            assert!(!kind.frames().is_empty());
        }
    }
}
