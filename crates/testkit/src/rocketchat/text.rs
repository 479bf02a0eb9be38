//! What a Rocket.Chat server derives from a message's text before saving it: `@mentions`,
//! `#channel` references, the URLs list and the `md` tree.
//!
//! Mentions follow the server's `MentionsParser`: the regex
//! `(^|\s|>)@(<name>(@<name>)?(:[0-9a-zA-Z-_.]+)?)` with the default
//! `UTF8_User_Names_Validation` name pattern `[0-9a-zA-Z-_.]+`. `@all` and `@here` become
//! `{_id, username}` entries first (in text order); other names are looked up as users and
//! appended in database order, unknown names dropped. `md` is a reduced message-parser tree:
//! one `PARAGRAPH` per non-empty line, `LINE_BREAK` for an empty one, with `PLAIN_TEXT`,
//! `MENTION_USER` and `MENTION_CHANNEL` inlines (no bold, code, emoji or link nodes).

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{json, Value};

const NAME: &str = "[0-9a-zA-Z\\-_.]+";

fn user_mention_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let pattern =
            format!("(?m)(?:^|\\s|>)@({NAME}(?:@(?:{NAME}))?(?::(?:[0-9a-zA-Z\\-_.]+))?)");
        Regex::new(&pattern).unwrap_or_else(|_| unreachable_regex())
    })
}

fn channel_mention_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let pattern = format!("(?m)(?:^|\\s|>)#({NAME}(?:@(?:{NAME}))?)");
        Regex::new(&pattern).unwrap_or_else(|_| unreachable_regex())
    })
}

fn url_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // The server's getMessageUrlRegex(), minus look-arounds it does not use.
        Regex::new(
            r"([A-Za-z]{3,9})://([-;:&=+$,\w]+@)?([-A-Za-z0-9.]+)+:?(\d+)?((/[-+=!:~%/.@,()\w]*)?\??([-+=&!:;%@/.,\w]+)?(?:#([^\s)]+))?)?",
        )
        .unwrap_or_else(|_| unreachable_regex())
    })
}

/// The patterns above are constants that compile; this only satisfies the no-`unwrap` rule.
fn unreachable_regex() -> Regex {
    Regex::new("$^").unwrap_or_else(|_| panic!("a trivial regex must compile"))
}

/// The mention tokens of a text as the server's `getUserMentions` + `getUsersByMentions` see
/// them: `Some(name)` for `@name`, keeping the raw `@name:suffix` form (which never matches a
/// user) when the match contained a colon.
pub(crate) fn user_mentions(text: &str) -> Vec<String> {
    user_mention_regex()
        .captures_iter(text)
        .filter_map(|c| c.get(0).map(|m| m.as_str().trim().to_owned()))
        .map(|m| {
            // `m.includes(':') ? m.trim() : m.trim().substring(1)`: the first character goes,
            // whatever it is (so `>@bob` looks up the user "@bob", as on a real server).
            if m.contains(':') {
                m
            } else {
                m.chars().skip(1).collect()
            }
        })
        .collect()
}

/// The channel names referenced as `#name`.
pub(crate) fn channel_mentions(text: &str) -> Vec<String> {
    channel_mention_regex()
        .captures_iter(text)
        .filter_map(|c| c.get(1).map(|m| m.as_str().to_owned()))
        .collect()
}

/// The `urls` array the server stores (`[{url, meta: {}}]`, de-duplicated, text order).
pub(crate) fn urls(text: &str) -> Vec<Value> {
    let mut seen: Vec<&str> = Vec::new();
    for m in url_regex().find_iter(text) {
        if !seen.contains(&m.as_str()) {
            seen.push(m.as_str());
        }
    }
    seen.into_iter()
        .map(|u| json!({ "url": u, "meta": {} }))
        .collect()
}

/// The reduced `md` tree (see the module doc).
pub(crate) fn markdown(text: &str) -> Value {
    let mut blocks = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() {
            blocks.push(json!({ "type": "LINE_BREAK" }));
            continue;
        }
        blocks.push(json!({ "type": "PARAGRAPH", "value": inlines(line) }));
    }
    Value::Array(blocks)
}

/// Splits one line into plain text and mention nodes.
fn inlines(line: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    while i < chars.len() {
        let c = chars[i];
        let boundary = i == 0 || chars[i - 1].is_whitespace();
        if (c == '@' || c == '#') && boundary {
            let mut j = i + 1;
            while j < chars.len() && is_name(chars[j]) {
                j += 1;
            }
            // A trailing dot ends a sentence rather than a name.
            while j > i + 1 && chars[j - 1] == '.' {
                j -= 1;
            }
            if j > i + 1 {
                if !plain.is_empty() {
                    out.push(json!({ "type": "PLAIN_TEXT", "value": std::mem::take(&mut plain) }));
                }
                let name: String = chars[i + 1..j].iter().collect();
                let kind = if c == '@' {
                    "MENTION_USER"
                } else {
                    "MENTION_CHANNEL"
                };
                out.push(json!({ "type": kind, "value": { "type": "PLAIN_TEXT", "value": name } }));
                i = j;
                continue;
            }
        }
        plain.push(c);
        i += 1;
    }
    if !plain.is_empty() {
        out.push(json!({ "type": "PLAIN_TEXT", "value": plain }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_follow_the_server_regex() {
        assert_eq!(
            user_mentions("@bot hi @all and @here, x@y.z @alice.b-c_d: ok"),
            vec!["bot", "all", "here", "alice.b-c_d"]
        );
        // A colon followed by name characters stays in the token, which matches no user.
        assert_eq!(user_mentions("@bot:hi"), vec!["@bot:hi"]);
        assert_eq!(user_mentions("line\n@bot second"), vec!["bot"]);
        assert!(user_mentions("mail me@bot").is_empty());
        assert_eq!(
            channel_mentions("see #general and #dev-ops."),
            vec!["general", "dev-ops."]
        );
    }

    #[test]
    fn markdown_matches_message_parser_for_plain_text_and_mentions() {
        // These are the outputs of @rocket.chat/message-parser 0.32 for the same strings.
        assert_eq!(
            markdown("@bot hi @all and @here, #general ok"),
            serde_json::from_str::<Value>(r#"[{"type":"PARAGRAPH","value":[{"type":"MENTION_USER","value":{"type":"PLAIN_TEXT","value":"bot"}},{"type":"PLAIN_TEXT","value":" hi "},{"type":"MENTION_USER","value":{"type":"PLAIN_TEXT","value":"all"}},{"type":"PLAIN_TEXT","value":" and "},{"type":"MENTION_USER","value":{"type":"PLAIN_TEXT","value":"here"}},{"type":"PLAIN_TEXT","value":", "},{"type":"MENTION_CHANNEL","value":{"type":"PLAIN_TEXT","value":"general"}},{"type":"PLAIN_TEXT","value":" ok"}]}]"#).unwrap()
        );
        assert_eq!(
            markdown("a\n\nb"),
            serde_json::from_str::<Value>(r#"[{"type":"PARAGRAPH","value":[{"type":"PLAIN_TEXT","value":"a"}]},{"type":"LINE_BREAK"},{"type":"PARAGRAPH","value":[{"type":"PLAIN_TEXT","value":"b"}]}]"#).unwrap()
        );
    }

    #[test]
    fn urls_are_listed_once() {
        let u = urls("see https://example.com/a?b=1 and https://example.com/a?b=1");
        assert_eq!(
            u,
            vec![json!({"url": "https://example.com/a?b=1", "meta": {}})]
        );
    }
}
