//! Which keys each part of `config.yaml` accepts, and the "unknown key" check that uses them.
//!
//! A typo such as `working_dir:` must not be silently ignored (the 0.5.x loader ignored it and the
//! agent then ran in the wrong place), so every mapping is checked against the table for its
//! section and each unknown key is reported with the closest known key as a suggestion.
//! `schema.rs` describes the same keys for editors; a test keeps the two in step.

/// One accepted key, and the keys of its value when that value is a mapping we check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    /// The key.
    pub name: &'static str,
    /// The accepted keys of the nested mapping, if the value is one.
    pub nested: Option<&'static [Key]>,
}

const fn leaf(name: &'static str) -> Key {
    Key { name, nested: None }
}

const fn node(name: &'static str, nested: &'static [Key]) -> Key {
    Key {
        name,
        nested: Some(nested),
    }
}

/// Top-level keys.
pub(crate) const TOP: &[Key] = &[
    leaf("connectors"),
    leaf("agents"),
    leaf("default_agent"),
    leaf("watchers"),
    leaf("max_queue_depth"),
    node("scheduler", SCHEDULER),
    leaf("tool_presets"),
    leaf("connector_templates"),
    leaf("agent_templates"),
    leaf("watcher_templates"),
    node("gateway", GATEWAY),
];

/// `scheduler:`.
pub(crate) const SCHEDULER: &[Key] = &[leaf("completed_job_ttl_days")];

/// `gateway:` (our extension).
pub(crate) const GATEWAY: &[Key] = &[leaf("drain_timeout")];

/// The 0.2-era keys that were removed, and what replaced them.
pub(crate) const REMOVED_DEFAULTS: &[(&str, &str)] = &[
    ("agent_defaults", "agent_templates"),
    ("connector_defaults", "connector_templates"),
    ("watcher_defaults", "watcher_templates"),
];

/// `allowed_users:` of a chat connector.
pub(crate) const ALLOWED_USERS: &[Key] = &[leaf("owners"), leaf("guests")];

/// `attachments:` of a chat connector.
pub(crate) const ATTACHMENTS: &[Key] = &[
    leaf("max_file_size_mb"),
    leaf("download_timeout"),
    leaf("cache_dir"),
    leaf("cache_dir_global"),
];

/// `agent_chain:` of a chat connector.
pub(crate) const AGENT_CHAIN: &[Key] = &[
    leaf("agent_usernames"),
    leaf("max_turns"),
    leaf("ttl_seconds"),
];

/// `server:` of a Rocket.Chat connector.
pub(crate) const RC_SERVER: &[Key] = &[leaf("url"), leaf("username"), leaf("password")];

/// `server:` of a Mattermost connector.
pub(crate) const MM_SERVER: &[Key] = &[
    leaf("url"),
    leaf("username"),
    leaf("password"),
    leaf("team"),
    leaf("token"),
];

macro_rules! connector_keys {
    ($($extra:expr),* $(,)?) => {
        &[
            leaf("name"),
            leaf("type"),
            leaf("description"),
            leaf("inherits"),
            leaf("context_inject_files"),
            $($extra),*
        ]
    };
}

macro_rules! chat_connector_keys {
    ($server:expr) => {
        connector_keys![
            node("server", $server),
            node("allowed_users", ALLOWED_USERS),
            node("attachments", ATTACHMENTS),
            leaf("reply_in_thread"),
            leaf("permission_reply_in_thread"),
            leaf("require_mention"),
            leaf("filter_sender"),
            node("agent_chain", AGENT_CHAIN),
            leaf("timezone"),
        ]
    };
}

/// A `type: rocketchat` connector.
pub(crate) const ROCKETCHAT: &[Key] = chat_connector_keys!(RC_SERVER);
/// A `type: mattermost` connector.
pub(crate) const MATTERMOST: &[Key] = chat_connector_keys!(MM_SERVER);
/// A `type: voice` connector.
pub(crate) const VOICE: &[Key] =
    connector_keys![leaf("port"), leaf("host"), leaf("secret"), leaf("timeout"),];
/// A `type: script` connector.
pub(crate) const SCRIPT: &[Key] = connector_keys![];

/// Every key any connector type accepts: used for templates (which may be type-less) and for
/// entries whose type is missing or unknown.
pub(crate) const ANY_CONNECTOR: &[Key] = &[
    leaf("name"),
    leaf("type"),
    leaf("description"),
    leaf("inherits"),
    leaf("context_inject_files"),
    node("server", MM_SERVER),
    node("allowed_users", ALLOWED_USERS),
    node("attachments", ATTACHMENTS),
    leaf("reply_in_thread"),
    leaf("permission_reply_in_thread"),
    leaf("require_mention"),
    leaf("filter_sender"),
    node("agent_chain", AGENT_CHAIN),
    leaf("timezone"),
    leaf("port"),
    leaf("host"),
    leaf("secret"),
    leaf("timeout"),
];

/// The connector types and their key tables.
pub(crate) const CONNECTOR_TYPES: &[(&str, &[Key])] = &[
    ("rocketchat", ROCKETCHAT),
    ("mattermost", MATTERMOST),
    ("voice", VOICE),
    ("script", SCRIPT),
];

/// `permissions:` of an agent (`require_other_owner` is our extension).
pub(crate) const PERMISSIONS: &[Key] = &[
    leaf("enabled"),
    leaf("timeout"),
    leaf("skip_owner_approval"),
    leaf("require_other_owner"),
];

/// One inline tool rule.
pub(crate) const TOOL_RULE: &[Key] = &[leaf("tool"), leaf("params")];

/// An agent entry.
pub(crate) const AGENT: &[Key] = &[
    leaf("type"),
    leaf("description"),
    leaf("inherits"),
    leaf("command"),
    leaf("working_directory"),
    leaf("new_session_args"),
    leaf("session_prefix"),
    leaf("lazy_instruction_loading"),
    leaf("context_inject_files"),
    leaf("owner_allowed_tools"),
    leaf("guest_allowed_tools"),
    leaf("timeout"),
    node("permissions", PERMISSIONS),
];

/// `history_handoff:` of a watcher.
pub(crate) const HISTORY_HANDOFF: &[Key] =
    &[leaf("enabled"), leaf("fetch_count"), leaf("verbatim_tail")];

/// A watcher entry.
pub(crate) const WATCHER: &[Key] = &[
    leaf("name"),
    leaf("description"),
    leaf("inherits"),
    leaf("connector"),
    leaf("agent"),
    leaf("room"),
    leaf("rooms"),
    leaf("session_id"),
    leaf("context_inject_files"),
    leaf("online_notification"),
    leaf("offline_notification"),
    node("history_handoff", HISTORY_HANDOFF),
];

/// Keys a connector template may not set (they identify one connector).
pub(crate) const CONNECTOR_TEMPLATE_FORBIDDEN: &[&str] = &["name"];
/// Keys a watcher template may not set (they identify one watcher).
pub(crate) const WATCHER_TEMPLATE_FORBIDDEN: &[&str] = &["name", "room", "rooms", "session_id"];

/// Looks `key` up in `table`.
pub(crate) fn find(table: &'static [Key], key: &str) -> Option<&'static Key> {
    table.iter().find(|k| k.name == key)
}

/// The known key closest to `unknown`, when one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    unknown: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let unknown_lc = unknown.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for candidate in known {
        let distance = edit_distance(&unknown_lc, &candidate.to_ascii_lowercase());
        let limit = (candidate.len().max(unknown.len()) / 3).max(2);
        let contains = unknown_lc.len() >= 4
            && (candidate.contains(unknown_lc.as_str()) || unknown_lc.contains(candidate));
        if distance <= limit || contains {
            let score = if distance <= limit {
                distance
            } else {
                limit + 1
            };
            if best.is_none_or(|(s, _)| score < s) {
                best = Some((score, candidate));
            }
        }
    }
    best.map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// "unknown key 'x'" plus a suggestion when a known key is close.
pub(crate) fn unknown_key_message(key: &str, table: &'static [Key]) -> String {
    match suggest(key, table.iter().map(|k| k.name)) {
        Some(s) => format!("unknown key '{key}' (did you mean '{s}'?)"),
        None => format!("unknown key '{key}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys() {
        let names = AGENT.iter().map(|k| k.name);
        assert_eq!(
            suggest("workng_directory", names.clone()),
            Some("working_directory")
        );
        assert_eq!(suggest("timout", names.clone()), Some("timeout"));
        assert_eq!(suggest("Command", names.clone()), Some("command"));
        assert_eq!(
            suggest("working_dir", names.clone()),
            Some("working_directory")
        );
        assert_eq!(suggest("zzz", names), None);
    }

    #[test]
    fn message_carries_the_suggestion() {
        assert_eq!(
            unknown_key_message("permisions", AGENT),
            "unknown key 'permisions' (did you mean 'permissions'?)"
        );
        assert_eq!(unknown_key_message("xyzzy", AGENT), "unknown key 'xyzzy'");
    }

    #[test]
    fn any_connector_is_the_union_of_the_types() {
        for (_, table) in CONNECTOR_TYPES {
            for key in *table {
                let union = find(ANY_CONNECTOR, key.name).expect(key.name);
                if let (Some(nested), Some(union_nested)) = (key.nested, union.nested) {
                    for n in nested {
                        assert!(
                            find(union_nested, n.name).is_some(),
                            "{}.{}",
                            key.name,
                            n.name
                        );
                    }
                }
            }
        }
        for key in ANY_CONNECTOR {
            assert!(
                CONNECTOR_TYPES
                    .iter()
                    .any(|(_, t)| find(t, key.name).is_some()),
                "{}",
                key.name
            );
        }
    }
}
