//! A small server-sent-events parser: bytes in, events out.
//!
//! OpenCode's `GET /event` is a `text/event-stream` of `data: <json>` frames. The parser follows
//! the HTML living standard's rules closely enough for any well-behaved server: lines end in
//! `\n`, `\r\n` or `\r`; a line starting with `:` is a comment; `field: value` loses one space
//! after the colon; several `data` lines join with `\n`; a blank line dispatches the event when
//! it has data. Chunks may split lines, or even `\r\n`, anywhere. A line longer than
//! [`MAX_LINE_BYTES`] is an error instead of an unbounded buffer.

/// The longest line accepted (16 MiB): a tool output in one event can be large, but not endless.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when given (OpenCode sends none: the type is inside the JSON).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, when given.
    pub id: Option<String>,
}

/// The stream broke the parser's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event-stream line exceeded {MAX_LINE_BYTES} bytes")]
pub struct LineTooLong;

/// Incremental parser state: feed it chunks with [`SseParser::push`].
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    data: Option<String>,
    event: Option<String>,
    id: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Feeds one chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            if self.line.len() + end > MAX_LINE_BYTES {
                return Err(LineTooLong);
            }
            self.line.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.take_line(&line) {
                out.push(event);
            }
            let newline = rest[end];
            rest = &rest[end + 1..];
            if newline == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if self.line.len() + rest.len() > MAX_LINE_BYTES {
            return Err(LineTooLong);
        }
        self.line.extend_from_slice(rest);
        Ok(out)
    }

    /// Handles one complete line; a blank line may dispatch an event.
    fn take_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take()?;
            return Some(SseEvent {
                event: self.event.take(),
                data,
                id: self.id.clone(),
            });
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        chunks
            .iter()
            .flat_map(|c| parser.push(c).unwrap())
            .collect()
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn parses_opencode_frames() {
        let stream = b"data: {\"type\":\"server.connected\",\"properties\":{}}\n\ndata: {\"type\":\"session.status\"}\n\n";
        let events = all(&[stream]);
        assert_eq!(
            data(&events),
            vec![
                "{\"type\":\"server.connected\",\"properties\":{}}",
                "{\"type\":\"session.status\"}"
            ]
        );
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let stream: &[u8] = b": hello\r\nevent: x\r\nid: 7\r\ndata: a\r\ndata:b\r\n\r\ndata:  two spaces\n\ndata\n\n";
        let whole = all(&[stream]);
        assert_eq!(data(&whole), vec!["a\nb", " two spaces", ""]);
        assert_eq!(whole[0].event.as_deref(), Some("x"));
        assert_eq!(whole[0].id.as_deref(), Some("7"));
        // The id persists to later events; the event name does not.
        assert_eq!(whole[1].id.as_deref(), Some("7"));
        assert_eq!(whole[1].event, None);
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(all(&[a, b]), whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(all(&bytes), whole);
    }

    #[test]
    fn lone_cr_ends_lines_and_nothing_dispatches_without_a_blank_line() {
        assert_eq!(data(&all(&[b"data: a\r\rdata: b\r"])), vec!["a"]);
        assert!(all(&[b"data: pending"]).is_empty());
        // A blank line with no data dispatches nothing.
        assert!(all(&[b"\n\n: comment\n\n"]).is_empty());
    }

    #[test]
    fn utf8_split_across_chunks_survives() {
        let stream = "data: {\"delta\":\"héllo ✓\"}\n\n".as_bytes();
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(data(&all(&[a, b])), vec!["{\"delta\":\"héllo ✓\"}"]);
        }
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::new();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..17 {
            result = parser.push(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(LineTooLong));
    }
}
