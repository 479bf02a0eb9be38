//! Mentions of the bot in message text, for the mention gate's fallback and for stripping a
//! leading `@bot` before the text reaches the agent.
//!
//! The server's own `mentions[]` list is what the gate trusts first; the text search only
//! covers documents without it (e.g. some history entries). A text mention counts when
//! `@<bot>` is not glued to a preceding word character or `@` and is not followed by a word
//! character, `.` or `-` (so `@bot` matches in `hi @bot,` but not in `mail@bot`, `@@bot`,
//! `@bots` or `@bot.old`). Those boundary checks are done by hand: the `regex` crate has no
//! look-around.

/// A "word" character as Python's Unicode `\w` sees it: letters, digits (any script) and `_`.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// May `c` follow a mention (anything but a word character, `.` or `-`)?
fn ends_mention(c: Option<char>) -> bool {
    !matches!(c, Some(c) if is_word_char(c) || c == '.' || c == '-')
}

/// Does `text` mention `@<bot>` as a whole name (see the module doc for the boundaries)?
/// Case-sensitive, like Rocket.Chat usernames.
pub fn text_mentions(text: &str, bot: &str) -> bool {
    if bot.is_empty() {
        return false;
    }
    let needle = format!("@{bot}");
    let mut from = 0;
    while let Some(pos) = text[from..].find(&needle) {
        let start = from + pos;
        let end = start + needle.len();
        let before = text[..start].chars().next_back();
        let starts_ok = !matches!(before, Some(c) if is_word_char(c) || c == '@');
        if starts_ok && ends_mention(text[end..].chars().next()) {
            return true;
        }
        // Continue after this '@' (the needle starts with an ASCII '@', one byte).
        from = start + 1;
    }
    false
}

/// Python's `str.strip()`: Unicode whitespace and the ASCII separators 0x1C–0x1F.
pub fn strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Removes one leading `@<bot>` (with what separates it from the text: whitespace, or one of
/// `:`, `,`, `-` and whitespace) and strips the rest. `@<bot>` must end at a name boundary,
/// so `@botany rocks` is left alone.
pub fn strip_leading_mention<'a>(text: &'a str, bot: &str) -> &'a str {
    let trimmed = text.trim_start();
    let needle = format!("@{bot}");
    if bot.is_empty() || !trimmed.starts_with(&needle) {
        return strip(text);
    }
    let rest = &trimmed[needle.len()..];
    let next = rest.chars().next();
    let separator_ok = match next {
        None => true,
        Some(c) if c.is_whitespace() || matches!(c, ':' | ',' | '-') => true,
        Some(_) => ends_mention(next),
    };
    if !separator_ok {
        return strip(text);
    }
    let rest = rest.strip_prefix([':', ',', '-']).unwrap_or(rest);
    strip(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_name_mentions() {
        for text in [
            "@bot",
            "@bot hi",
            "hi @bot",
            "hi @bot, how",
            "(@bot)",
            "ping:@bot!",
            "x\n@bot",
            "@bot's",
            "ask @bots or @bot",
        ] {
            assert!(text_mentions(text, "bot"), "{text}");
        }
    }

    #[test]
    fn glued_or_longer_names_do_not_count() {
        for text in [
            "mail@bot", "@@bot", "@bots", "@bot_2", "@bot.old", "@bot-x", "é@bot", "@botß", "bot",
            "@Bot", "",
        ] {
            assert!(!text_mentions(text, "bot"), "{text}");
        }
        assert!(!text_mentions("@", ""));
    }

    #[test]
    fn names_with_dots_and_dashes() {
        assert!(text_mentions("hey @my.bot-1 go", "my.bot-1"));
        assert!(!text_mentions("hey @my.bot-12 go", "my.bot-1"));
    }

    #[test]
    fn leading_mention_is_stripped_once() {
        assert_eq!(strip_leading_mention("@bot hello", "bot"), "hello");
        assert_eq!(strip_leading_mention("  @bot: hello ", "bot"), "hello");
        assert_eq!(strip_leading_mention("@bot, hello", "bot"), "hello");
        assert_eq!(strip_leading_mention("@bot -  hello", "bot"), "-  hello");
        assert_eq!(strip_leading_mention("@bot- hello", "bot"), "hello");
        assert_eq!(strip_leading_mention("@bot", "bot"), "");
        assert_eq!(
            strip_leading_mention("@bot @bot again", "bot"),
            "@bot again"
        );
        assert_eq!(strip_leading_mention("hello @bot", "bot"), "hello @bot");
        assert_eq!(
            strip_leading_mention("@botany rocks", "bot"),
            "@botany rocks"
        );
        assert_eq!(strip_leading_mention("@bot.old x", "bot"), "@bot.old x");
        assert_eq!(strip_leading_mention("@bot!", "bot"), "!");
        assert_eq!(strip_leading_mention(" plain ", "bot"), "plain");
    }

    #[test]
    fn python_strip() {
        assert_eq!(strip("\u{1c} a \u{3000}"), "a");
        assert_eq!(strip(""), "");
    }
}
