//! Watcher names derived from a connector and a room, for entries without an explicit `name:`.
//!
//! The names are part of users' existing state: `state.<connector>.json`, the CLI
//! (`pause rc-home-general`) and the per-watcher files all use them, so they are computed exactly
//! as 0.5.x did: `<connector>-<room>` where the room part has a leading `@` turned into `dm-`,
//! every character outside `[A-Za-z0-9._-]` replaced by `-`, runs of `-` collapsed, and leading
//! or trailing `-`/`.` removed.

/// `<connector>-<sanitized room>`, or None when nothing usable is left of the room.
pub(crate) fn derive_watcher_name(connector: &str, room: &str) -> Option<String> {
    sanitize_room(room).map(|r| format!("{connector}-{r}"))
}

/// The room part of a derived watcher name.
fn sanitize_room(room: &str) -> Option<String> {
    let (prefix, body) = match room.strip_prefix('@') {
        Some(rest) => ("dm-", rest),
        None => ("", room),
    };
    let mut out = String::from(prefix);
    for c in body.chars() {
        let safe = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let c = if safe { c } else { '-' };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_matches(|c| c == '-' || c == '.');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden values produced by the 0.5.2 code (digest §13).
    #[test]
    fn golden_names() {
        let cases = [
            ("general", "rc-home-general"),
            ("@alice", "rc-home-dm-alice"),
            ("my room/x", "rc-home-my-room-x"),
            ("--a..b--", "rc-home-a..b"),
            ("@bob.smith", "rc-home-dm-bob.smith"),
        ];
        for (room, name) in cases {
            assert_eq!(
                derive_watcher_name("rc-home", room).as_deref(),
                Some(name),
                "{room}"
            );
        }
    }

    #[test]
    fn non_ascii_letters_become_dashes() {
        assert_eq!(derive_watcher_name("c", "café").as_deref(), Some("c-caf"));
        assert_eq!(derive_watcher_name("c", "a  b").as_deref(), Some("c-a-b"));
    }

    #[test]
    fn nothing_left_is_none() {
        assert_eq!(derive_watcher_name("c", "///"), None);
        assert_eq!(derive_watcher_name("c", "..."), None);
        // The 0.5.x code keeps the "dm" of a bare "@".
        assert_eq!(derive_watcher_name("c", "@").as_deref(), Some("c-dm"));
    }

    #[test]
    fn dm_prefix_survives_a_leading_dash_run() {
        // "@-x": "dm-" + "-x" collapses to "dm-x".
        assert_eq!(derive_watcher_name("c", "@-x").as_deref(), Some("c-dm-x"));
        // "@" + "!!" -> "dm--" -> "dm-" -> stripped to "dm".
        assert_eq!(derive_watcher_name("c", "@!!").as_deref(), Some("c-dm"));
    }
}
