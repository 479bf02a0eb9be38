//! Matching the gateway's replies to the messages they answer.
//!
//! Every benchmark message carries a unique token (`kq<n>z`). A reply of the bot in a room
//! answers:
//! - the tokens of the agent turn that produced it: the stub agent appends every prompt it is
//!   given to a log (`ACG_STUB_LOG`), and since a room's turns run strictly one after another,
//!   the room's next reply belongs to the room's oldest unanswered logged turn. A catch-up turn
//!   (several queued messages in one prompt) answers all of its tokens at once;
//! - without a turn log (the floor relay, which echoes each message), the tokens in the reply
//!   text itself.
//!
//! A message's latency is from just before it was posted to the instant the observer's
//! socket received the reply.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acg_testkit::rocketchat::HumanClient;
use anyhow::{anyhow, Result};
use regex::Regex;
use tokio::sync::{mpsc, oneshot};

use crate::ddp::ChatEvent;

/// How a message ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered; the reply arrived at this instant.
    Answered(Instant),
    /// The gateway posted an error notice for its turn.
    Failed(String),
}

/// The token text for number `n`.
pub fn token(n: u64) -> String {
    format!("kq{n}z")
}

fn token_regex() -> Regex {
    Regex::new(r"kq(\d+)z").expect("a constant regex compiles")
}

/// Every token number in `text`, in order.
pub fn tokens_in(re: &Regex, text: &str) -> Vec<u64> {
    re.captures_iter(text)
        .filter_map(|c| c.get(1)?.as_str().parse().ok())
        .collect()
}

/// Whether a bot message is the gateway's "busy, dropped" notice.
pub fn is_busy_notice(text: &str) -> bool {
    text.to_lowercase().contains("busy")
}

/// Whether a bot message is an error notice posted instead of an answer.
pub fn is_error_notice(text: &str) -> bool {
    text.starts_with('❌') || text.starts_with('⏱')
}

struct Pending {
    posted: Instant,
    reply: oneshot::Sender<Outcome>,
}

/// The stub agent's prompt log, read incrementally.
struct TurnLog {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl TurnLog {
    /// The prompts of the entries completed since the last read. Concurrent agent processes
    /// append to the same file, and a writer that puts the newline in a second `write` can
    /// have another entry land between its object and its newline, so entries are read as a
    /// stream of JSON values, not as lines.
    fn read_new(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = String::new();
        let Ok(n) = file.read_to_string(&mut buf) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.push_str(&buf);
        let (prompts, used) = split_entries(&self.partial);
        self.partial.drain(..used);
        prompts
    }
}

/// The `prompt` of every complete JSON object in `text`, and how many bytes they used (a
/// trailing incomplete object stays for the next read; garbage is skipped to the next line).
fn split_entries(text: &str) -> (Vec<String>, usize) {
    let mut prompts = Vec::new();
    let mut used = 0;
    loop {
        let rest = &text[used..];
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        match stream.next() {
            None => return (prompts, text.len()),
            Some(Ok(v)) => {
                used += stream.byte_offset();
                if let Some(p) = v["prompt"].as_str() {
                    prompts.push(p.to_owned());
                }
            }
            Some(Err(e)) if e.is_eof() => return (prompts, used),
            Some(Err(_)) => match rest.find('\n') {
                Some(i) => used += i + 1,
                None => return (prompts, used),
            },
        }
    }
}

#[derive(Default)]
struct Book {
    pending: HashMap<u64, Pending>,
    /// Token → room id, kept after answering (to place logged turns).
    rooms: HashMap<u64, String>,
    /// Per room: token sets of logged turns not yet matched to a reply.
    turns: HashMap<String, VecDeque<Vec<u64>>>,
}

/// Counters of what the observer saw.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bot replies matched to messages.
    pub replies: AtomicUsize,
    /// Busy notices.
    pub busy: AtomicUsize,
    /// Error notices.
    pub errors: AtomicUsize,
    /// Bot messages that matched no pending message.
    pub unmatched: AtomicUsize,
}

/// Registers messages, matches replies (see the module doc).
pub struct Tracker {
    book: Mutex<Book>,
    log: Mutex<Option<TurnLog>>,
    next: AtomicU64,
    re: Regex,
    bot: String,
    /// What was seen so far.
    pub counters: Counters,
}

impl Tracker {
    /// A tracker for replies by `bot`, reading turn prompts from `turn_log` when given.
    pub fn new(bot: &str, turn_log: Option<PathBuf>) -> Arc<Tracker> {
        let log = turn_log.map(|path| {
            let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            TurnLog {
                path,
                offset,
                partial: String::new(),
            }
        });
        Arc::new(Tracker {
            book: Mutex::default(),
            log: Mutex::new(log),
            next: AtomicU64::new(1),
            re: token_regex(),
            bot: bot.to_owned(),
            counters: Counters::default(),
        })
    }

    /// Feeds the observer's events until the channel closes (spawn it).
    pub async fn run(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<ChatEvent>) {
        while let Some(event) = events.recv().await {
            if event.username == self.bot && !event.not_a_post {
                self.on_reply(&event);
            }
        }
    }

    fn on_reply(&self, event: &ChatEvent) {
        if is_busy_notice(&event.text) {
            self.counters.busy.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let failed = is_error_notice(&event.text);
        let lines = self
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map(TurnLog::read_new)
            .unwrap_or_default();
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        for prompt in lines {
            let tokens = tokens_in(&self.re, &prompt);
            let Some(room) = tokens.first().and_then(|t| book.rooms.get(t)).cloned() else {
                continue;
            };
            book.turns.entry(room).or_default().push_back(tokens);
        }
        let mut answered = book
            .turns
            .get_mut(&event.room_id)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| tokens_in(&self.re, &event.text));
        if answered.is_empty() {
            // An agent that neither logs nor echoes (the real CLI): in a sequential run the
            // reply answers the room's oldest waiting message.
            answered.extend(
                book.pending
                    .iter()
                    .filter(|(t, _)| book.rooms.get(*t) == Some(&event.room_id))
                    .min_by_key(|(_, p)| p.posted)
                    .map(|(t, _)| *t),
            );
        }
        let mut matched = false;
        for t in answered {
            if let Some(p) = book.pending.remove(&t) {
                matched = true;
                let outcome = if failed {
                    Outcome::Failed(event.text.clone())
                } else {
                    Outcome::Answered(event.at)
                };
                let _ = p.reply.send(outcome);
            }
        }
        let counter = match (matched, failed) {
            (true, false) => &self.counters.replies,
            (true, true) => &self.counters.errors,
            (false, _) => &self.counters.unmatched,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Posts `@bot <token> <text>` as `sender` in a room and waits (at most `timeout`) for the
    /// reply that answers it. Returns the post → reply latency.
    pub async fn ask(
        &self,
        sender: &HumanClient,
        room_id: &str,
        text: &str,
        timeout: Duration,
    ) -> Result<Duration> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let posted = Instant::now();
        {
            let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
            book.rooms.insert(n, room_id.to_owned());
            book.pending.insert(n, Pending { posted, reply: tx });
        }
        let message = format!("@{} {} {text}", self.bot, token(n));
        if let Err(e) = sender.post(room_id, &message).await {
            self.forget(n);
            return Err(anyhow!("post failed: {e}"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Outcome::Answered(at))) => Ok(at.saturating_duration_since(posted)),
            Ok(Ok(Outcome::Failed(notice))) => Err(anyhow!("the gateway answered {notice:?}")),
            Ok(Err(_)) => Err(anyhow!("tracker stopped")),
            Err(_) => {
                self.forget(n);
                Err(anyhow!("no reply to {} within {timeout:?}", token(n)))
            }
        }
    }

    fn forget(&self, n: u64) {
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        book.pending.remove(&n);
    }

    /// How many messages still wait for a reply.
    pub fn outstanding(&self) -> usize {
        self.book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .len()
    }

    /// When the oldest outstanding message was posted.
    pub fn oldest_outstanding(&self) -> Option<Instant> {
        self.book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .values()
            .map(|p| p.posted)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_notices() {
        let re = token_regex();
        assert_eq!(tokens_in(&re, "echo: kq12z hi kq3z"), vec![12, 3]);
        assert!(tokens_in(&re, "kqz kq-1z").is_empty());
        assert!(is_busy_notice(
            "⚠️ Server busy — your message was dropped. Please retry."
        ));
        assert!(is_error_notice("❌ Agent failed to process the request."));
        assert!(!is_error_notice("echo: kq1z"));
    }

    fn event(room: &str, text: &str) -> ChatEvent {
        ChatEvent {
            at: Instant::now(),
            room_id: room.into(),
            id: "m".into(),
            username: "bot".into(),
            text: text.into(),
            not_a_post: false,
        }
    }

    fn register(tracker: &Tracker, n: u64, room: &str) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let mut book = tracker.book.lock().unwrap();
        book.rooms.insert(n, room.into());
        book.pending.insert(
            n,
            Pending {
                posted: Instant::now(),
                reply: tx,
            },
        );
        rx
    }

    #[test]
    fn a_logged_catch_up_turn_answers_all_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("turns.jsonl");
        std::fs::write(&log, "").unwrap();
        let tracker = Tracker::new("bot", Some(log.clone()));
        let mut a = register(&tracker, 1, "R1");
        let mut b = register(&tracker, 2, "R1");
        let mut c = register(&tracker, 3, "R2");
        let lines = [
            serde_json::json!({"args": ["--output-format", "json"], "prompt": "init"}),
            serde_json::json!({"prompt": "[hdr] kq1z first"}),
            serde_json::json!({"prompt": "[CATCH-UP]\n  kq2z\n[END]\nLatest: kq3z?"}),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        // The catch-up line is torn: only the first two lines are complete yet.
        let cut = text.len() - 5;
        std::fs::write(&log, &text[..cut]).unwrap();
        tracker.on_reply(&event("R1", "echo: kq1z first"));
        assert!(matches!(a.try_recv(), Ok(Outcome::Answered(_))));
        assert!(b.try_recv().is_err());
        std::fs::write(&log, &text).unwrap();
        // Tokens 2 (R1) and 3 (R2): the turn is placed by its first token's room.
        tracker.on_reply(&event("R1", "echo: [CATCH-UP]"));
        assert!(matches!(b.try_recv(), Ok(Outcome::Answered(_))));
        assert!(matches!(c.try_recv(), Ok(Outcome::Answered(_))));
        assert_eq!(tracker.counters.replies.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn entries_interleaved_by_concurrent_writers_are_all_read() {
        let text = "{\"prompt\":\"a\"}{\"prompt\":\"b\"}\n\n{\"prompt\":\"c\"}\nnot json\n{\"pro";
        let (prompts, used) = split_entries(text);
        assert_eq!(prompts, ["a", "b", "c"]);
        assert_eq!(&text[used..], "{\"pro");
    }

    #[test]
    fn without_a_log_the_echo_decides_and_notices_are_counted() {
        let tracker = Tracker::new("bot", None);
        let mut a = register(&tracker, 7, "R1");
        let mut b = register(&tracker, 8, "R1");
        tracker.on_reply(&event("R1", "⚠️ Server busy — your message was dropped."));
        tracker.on_reply(&event("R2", "echo: nothing of ours"));
        assert!(a.try_recv().is_err());
        tracker.on_reply(&event("R1", "echo: kq8z hi"));
        assert!(matches!(b.try_recv(), Ok(Outcome::Answered(_))));
        assert!(a.try_recv().is_err());
        // No token at all: the room's oldest waiting message.
        tracker.on_reply(&event("R1", "ok"));
        assert!(matches!(a.try_recv(), Ok(Outcome::Answered(_))));
        assert_eq!(tracker.counters.busy.load(Ordering::Relaxed), 1);
        assert_eq!(tracker.counters.unmatched.load(Ordering::Relaxed), 1);
        assert_eq!(tracker.outstanding(), 0);
    }
}
