//! Splitting a long reply into posts the server accepts.
//!
//! Rocket.Chat refuses a message longer than its `Message_MaxAllowedSize` setting (5000 by
//! default), counted in UTF-16 code units (JavaScript string length). A reply above the limit
//! is cut into chunks: at the last line break in the final fifth of the window when there is
//! one, else hard at the limit (never inside a character). Each chunk loses trailing
//! whitespace, the remainder loses leading whitespace, and empty chunks are skipped.

/// The limit used when the server's own could not be read (Rocket.Chat's default).
pub const DEFAULT_MESSAGE_LIMIT: usize = 5000;

/// Splits `text` into chunks of at most `limit` UTF-16 code units (a `limit` of 0 is taken
/// as 1). Text within the limit comes back unchanged as the only chunk.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    if utf16_len(text) <= limit {
        return vec![text.to_string()];
    }
    let mut chunks = Vec::new();
    let mut rest = text;
    while utf16_len(rest) > limit {
        let window_end = byte_offset_at_units(rest, limit);
        let search_from = byte_offset_at_units(rest, limit - limit / 5);
        let cut = match rest[search_from..window_end].rfind('\n') {
            Some(pos) => search_from + pos,
            None => window_end,
        };
        // A single character wider than the limit (limit 1, surrogate pair) still advances.
        let cut = if cut == 0 {
            rest.chars().next().map_or(rest.len(), char::len_utf8)
        } else {
            cut
        };
        let chunk = rest[..cut].trim_end();
        if !chunk.is_empty() {
            chunks.push(chunk.to_string());
        }
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        chunks.push(rest.to_string());
    }
    chunks
}

/// Length in UTF-16 code units.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// The byte offset of the longest prefix of `text` that fits in `units` UTF-16 code units.
fn byte_offset_at_units(text: &str, units: usize) -> usize {
    let mut used = 0;
    for (offset, c) in text.char_indices() {
        used += c.len_utf16();
        if used > units {
            return offset;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(chunks: &[String]) -> Vec<usize> {
        chunks.iter().map(|c| c.len()).collect()
    }

    #[test]
    fn golden_line_boundaries() {
        let text = ("a".repeat(30) + "\n").repeat(5);
        assert_eq!(lengths(&split_message(&text, 64)), vec![61, 61, 31]);
    }

    #[test]
    fn short_text_is_untouched() {
        assert_eq!(split_message("  hi \n", 10), vec!["  hi \n".to_string()]);
        assert_eq!(split_message("", 10), vec![String::new()]);
    }

    #[test]
    fn hard_cut_without_line_break() {
        let text = "b".repeat(25);
        assert_eq!(lengths(&split_message(&text, 10)), vec![10, 10, 5]);
        assert_eq!(split_message(&text, 10).concat(), text);
    }

    #[test]
    fn line_break_outside_last_fifth_is_ignored() {
        // The break at 3 is before 10 - 10/5 = 8: hard cut at 10.
        let text = format!("abc\n{}", "d".repeat(20));
        let chunks = split_message(&text, 10);
        assert_eq!(chunks[0], "abc\ndddddd");
    }

    #[test]
    fn never_cuts_inside_a_character() {
        let text = "é😀".repeat(40);
        for limit in [1, 2, 3, 7, 64] {
            let chunks = split_message(&text, limit);
            for chunk in &chunks {
                assert!(utf16_len(chunk) <= limit.max(2), "{limit}: {chunk}");
            }
            assert_eq!(chunks.concat(), text);
        }
    }

    #[test]
    fn every_chunk_fits_and_no_text_is_lost() {
        let text: String = (0..500)
            .map(|i| format!("line {i} {}\n", "x".repeat(i % 37)))
            .collect();
        let chunks = split_message(&text, 200);
        for chunk in &chunks {
            assert!(utf16_len(chunk) <= 200);
            assert!(!chunk.is_empty());
        }
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(squash(&chunks.join("\n")), squash(&text));
    }

    #[test]
    fn counts_utf16_units_like_the_server() {
        // 😀 is two UTF-16 units: 3 of them (6 units) do not fit in 5.
        let chunks = split_message("😀😀😀", 5);
        assert_eq!(chunks, vec!["😀😀".to_string(), "😀".to_string()]);
    }
}
