//! Which room messages may start an agent turn, in this order:
//!
//! 1. a document without an id, a sender or a room is malformed and dropped;
//! 2. the bot's own messages are dropped;
//! 3. system messages (`t` set: joins, topic changes, …) never trigger a turn;
//! 4. edits and other updates of a message already handled (`editedAt`, or `_updatedAt`
//!    well after `ts`, for an id already seen or a `ts` at or below the watermark) are dropped,
//!    and so is any id already seen ([`RoomLedger`]);
//! 5. a `ts` at or below the room's floor (the watermark of the last answered message) was
//!    answered before and is dropped;
//! 6. allow-list (`filter_sender`): owners, guests and peer agents only;
//! 7. mention gate (`require_mention`, not in DMs, not for peer agents): the server's
//!    `mentions[]` names the bot or `all`, or else the text mentions `@bot`
//!    ([`crate::mention::text_mentions`]) in `msg` or an attachment caption. An *owner's*
//!    `approve <id>` / `deny <id>` ([`acg_core::approval::parse_command`]) passes without a
//!    mention: the gateway answers it before any agent sees it (0.5.2 required the mention,
//!    digest §12.10); a guest's identical text still needs the mention;
//! 8. peer agents spend a turn budget per room, thread and sender ([`TurnBudget`]); a human
//!    message that passed the gates resets the budgets of its room and thread.
//!
//! Steps 1–3 and 6–7 need no state ([`screen`]); 4–5 need the room's [`RoomLedger`], 8 the
//! connector's [`TurnBudget`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use acg_core::RoomKind;

use crate::doc::RcMessage;
use crate::mention;

/// Why a message does not reach the agent (for debug logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The document lacks something every message has.
    Malformed(&'static str),
    /// Posted by the bot itself.
    OwnMessage,
    /// A system message (`t` set).
    SystemMessage,
    /// An edit or other update of a message already handled.
    Update,
    /// This id was already handled.
    Duplicate,
    /// At or below the watermark: answered before.
    AlreadyAnswered,
    /// The sender is not on the allow-list.
    NotAllowed,
    /// The bot was not mentioned in a room where that is required.
    NotMentioned,
    /// A peer agent spent its turn budget in this room/thread.
    AgentBudgetSpent,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Malformed(what) => write!(f, "malformed document ({what})"),
            DropReason::OwnMessage => f.write_str("own message"),
            DropReason::SystemMessage => f.write_str("system message"),
            DropReason::Update => f.write_str("edit or update of a handled message"),
            DropReason::Duplicate => f.write_str("already handled"),
            DropReason::AlreadyAnswered => f.write_str("at or below the watermark"),
            DropReason::NotAllowed => f.write_str("sender not allowed"),
            DropReason::NotMentioned => f.write_str("bot not mentioned"),
            DropReason::AgentBudgetSpent => f.write_str("peer agent turn budget spent"),
        }
    }
}

/// Who may talk to the agent and when, from the connector's config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gates {
    /// The bot's username.
    pub bot_username: String,
    /// `allowed_users.owners`.
    pub owners: Vec<String>,
    /// `allowed_users.guests`.
    pub guests: Vec<String>,
    /// `agent_chain.agent_usernames`.
    pub agents: Vec<String>,
    /// `filter_sender`.
    pub filter_sender: bool,
    /// `require_mention`.
    pub require_mention: bool,
}

/// What the stateless gates learned about a message that passed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screened {
    /// The sender is a configured peer agent.
    pub is_agent: bool,
}

/// The stateless gates (steps 1–3, 6 and 7 of the module doc).
pub fn screen(msg: &RcMessage, gates: &Gates, kind: RoomKind) -> Result<Screened, DropReason> {
    if msg.id.is_none() {
        return Err(DropReason::Malformed("no _id"));
    }
    let Some(sender) = &msg.sender else {
        return Err(DropReason::Malformed("no sender"));
    };
    if sender.username == gates.bot_username {
        return Err(DropReason::OwnMessage);
    }
    if msg.system_type.is_some() {
        return Err(DropReason::SystemMessage);
    }
    let is_agent = gates.agents.contains(&sender.username);
    if gates.filter_sender
        && !is_agent
        && !gates.owners.contains(&sender.username)
        && !gates.guests.contains(&sender.username)
    {
        return Err(DropReason::NotAllowed);
    }
    if gates.require_mention
        && !is_agent
        && kind != RoomKind::Dm
        && !addresses_bot(msg, gates)
        && !is_owner_approval_command(msg, gates)
    {
        return Err(DropReason::NotMentioned);
    }
    Ok(Screened { is_agent })
}

/// Is the bot addressed: by the server's mention list (the bot or `all`), or else by an
/// `@bot` in the text or an attachment caption?
pub fn addresses_bot(msg: &RcMessage, gates: &Gates) -> bool {
    if msg
        .mentions
        .iter()
        .any(|m| *m == gates.bot_username || m == "all")
    {
        return true;
    }
    let mut text = msg.text.clone();
    for caption in msg
        .attachments
        .iter()
        .filter_map(|a| a.description.as_deref())
    {
        text.push(' ');
        text.push_str(caption);
    }
    mention::text_mentions(mention::strip(&text), &gates.bot_username)
}

/// Is this an owner's `approve <id>` / `deny <id>`? Such a message skips the mention gate:
/// it is a reply to a permission request the bot posted, and the gateway consumes it before
/// the queue, so no agent turn can come of it.
pub fn is_owner_approval_command(msg: &RcMessage, gates: &Gates) -> bool {
    let Some(sender) = &msg.sender else {
        return false;
    };
    gates.owners.contains(&sender.username)
        && acg_core::approval::parse_command(mention::strip(&msg.text)).is_some()
}

/// How long after `ts` an `_updatedAt` marks an update rather than the insert itself (the
/// server stamps both separately when it stores a new message).
pub const UPDATE_TOLERANCE_MS: i64 = 2000;

/// How many message ids a room remembers.
pub const SEEN_WINDOW: usize = 1000;

/// Per-room memory of what was handled: a window of seen ids, the floor (the persisted
/// watermark of the last answered message, from the core) and the newest timestamp delivered
/// in this process (where a replay after a reconnect starts).
#[derive(Debug, Clone, Default)]
pub struct RoomLedger {
    floor_ms: Option<i64>,
    latest_delivered_ms: Option<i64>,
    seen_order: VecDeque<String>,
    seen: HashSet<String>,
}

impl RoomLedger {
    /// An empty ledger with a floor (`None` = nothing answered yet).
    pub fn new(floor_ms: Option<i64>) -> Self {
        RoomLedger {
            floor_ms,
            ..Default::default()
        }
    }

    /// Raises the floor (it never moves down).
    pub fn raise_floor(&mut self, floor_ms: Option<i64>) {
        self.floor_ms = max_opt(self.floor_ms, floor_ms);
    }

    /// The floor.
    pub fn floor_ms(&self) -> Option<i64> {
        self.floor_ms
    }

    /// The newest timestamp delivered in this process.
    pub fn latest_delivered_ms(&self) -> Option<i64> {
        self.latest_delivered_ms
    }

    /// Where a replay starts: the newest of the floor and the last delivered timestamp.
    pub fn replay_anchor_ms(&self) -> Option<i64> {
        max_opt(self.floor_ms, self.latest_delivered_ms)
    }

    /// Steps 4–5 of the module doc: updates, duplicates and answered messages.
    pub fn check(&self, msg: &RcMessage) -> Result<(), DropReason> {
        let seen = msg.id.as_ref().is_some_and(|id| self.seen.contains(id));
        let is_update = msg.edited
            || matches!((msg.ts_ms, msg.updated_ms), (Some(ts), Some(up)) if up > ts.saturating_add(UPDATE_TOLERANCE_MS));
        let at_or_below =
            |mark: Option<i64>| matches!((msg.ts_ms, mark), (Some(ts), Some(m)) if ts <= m);
        if is_update
            && (seen || at_or_below(self.floor_ms) || at_or_below(self.latest_delivered_ms))
        {
            return Err(DropReason::Update);
        }
        if seen {
            return Err(DropReason::Duplicate);
        }
        if at_or_below(self.floor_ms) {
            return Err(DropReason::AlreadyAnswered);
        }
        Ok(())
    }

    /// Remembers an id as handled (evicting the oldest beyond [`SEEN_WINDOW`]).
    pub fn mark_seen(&mut self, id: &str) {
        if self.seen.insert(id.to_string()) {
            self.seen_order.push_back(id.to_string());
            while self.seen_order.len() > SEEN_WINDOW {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    /// Forgets an id (the gateway could not take the message; a replay may bring it again).
    pub fn forget(&mut self, id: &str) {
        if self.seen.remove(id) {
            self.seen_order.retain(|s| s != id);
        }
    }

    /// Records that a message with this timestamp was handed over.
    pub fn delivered(&mut self, ts_ms: Option<i64>) {
        self.latest_delivered_ms = max_opt(self.latest_delivered_ms, ts_ms);
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Turn budgets of peer agents (`agent_chain`), per room, thread and sender. A budget is
/// spent after `max_turns` accepted messages; it is restored by a human message in the same
/// room and thread, or when it was last charged more than `ttl` ago.
#[derive(Debug, Clone)]
pub struct TurnBudget {
    max_turns: u32,
    ttl: Duration,
    spent: HashMap<(String, Option<String>, String), (u32, Instant)>,
}

impl TurnBudget {
    /// Budgets of `max_turns` turns that expire `ttl` after their last charge.
    pub fn new(max_turns: u32, ttl: Duration) -> Self {
        TurnBudget {
            max_turns,
            ttl,
            spent: HashMap::new(),
        }
    }

    /// The configured number of turns.
    pub fn max_turns(&self) -> u32 {
        self.max_turns
    }

    /// Charges one turn to `sender` in `room`/`thread`: `Some(turn)` (1-based) when the
    /// budget allows it, `None` when it is spent.
    pub fn charge(
        &mut self,
        room: &str,
        thread: Option<&str>,
        sender: &str,
        now: Instant,
    ) -> Option<u32> {
        let ttl = self.ttl;
        self.spent
            .retain(|_, (_, last)| now.saturating_duration_since(*last) <= ttl);
        let key = (
            room.to_string(),
            thread.map(str::to_string),
            sender.to_string(),
        );
        let turns = self.spent.get(&key).map_or(0, |(turns, _)| *turns);
        if turns >= self.max_turns {
            return None;
        }
        self.spent.insert(key, (turns + 1, now));
        Some(turns + 1)
    }

    /// A human spoke in `room`/`thread`: every peer agent's budget there is restored.
    pub fn reset(&mut self, room: &str, thread: Option<&str>) {
        self.spent
            .retain(|(r, t, _), _| !(r == room && t.as_deref() == thread));
    }
}

/// The note appended to a peer agent's message (as its last warning line) so the agent knows
/// where it stands in the chain: `---`, `[Agent chain: turn t/max]`, then a warning when the
/// next or this turn is the last, and the loop-breaking instruction while turns remain.
pub fn agent_chain_note(turn: u32, max_turns: u32) -> String {
    let mut lines = vec![format!("---\n[Agent chain: turn {turn}/{max_turns}]")];
    if turn.saturating_add(1) == max_turns {
        lines.push("⚠️  Your next response will be your last turn in this agent chain.".into());
    } else if turn >= max_turns {
        lines.push(
            "⚠️  This is your final turn in this agent chain. Please wrap up gracefully.\n\
             If the task is not yet complete, you may use the scheduler tool to schedule a \
             follow-up message and continue with a fresh turn budget."
                .into(),
        );
    }
    if turn < max_turns {
        lines.push(
            "If this conversation is repeating without making progress (a loop), or if you \
             have nothing meaningful to add, respond with ONLY: <end-of-agent-chain>"
                .into(),
        );
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{RcAttachment, RcUser};

    fn gates() -> Gates {
        Gates {
            bot_username: "bot".into(),
            owners: vec!["alice".into()],
            guests: vec!["gina".into()],
            agents: vec!["wavebro".into()],
            filter_sender: true,
            require_mention: true,
        }
    }

    fn msg(sender: &str, text: &str) -> RcMessage {
        RcMessage {
            id: Some(format!("id-{text}")),
            room_id: Some("R".into()),
            text: text.into(),
            ts_ms: Some(1000),
            updated_ms: Some(1000),
            sender: Some(RcUser {
                id: format!("U-{sender}"),
                username: sender.into(),
                name: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn malformed_documents() {
        let mut m = msg("alice", "@bot hi");
        m.id = None;
        assert_eq!(
            screen(&m, &gates(), RoomKind::Channel),
            Err(DropReason::Malformed("no _id"))
        );
        let mut m = msg("alice", "@bot hi");
        m.sender = None;
        assert_eq!(
            screen(&m, &gates(), RoomKind::Channel),
            Err(DropReason::Malformed("no sender"))
        );
    }

    #[test]
    fn own_messages_first() {
        // Even with filter_sender off and a mention, the bot never answers itself.
        let mut g = gates();
        g.filter_sender = false;
        assert_eq!(
            screen(&msg("bot", "@bot hi"), &g, RoomKind::Dm),
            Err(DropReason::OwnMessage)
        );
    }

    #[test]
    fn system_messages_never_trigger() {
        let mut m = msg("alice", "@bot");
        m.system_type = Some("uj".into());
        assert_eq!(
            screen(&m, &gates(), RoomKind::Dm),
            Err(DropReason::SystemMessage)
        );
        // Also in listen-all mode (the reference let these through).
        let mut g = gates();
        g.require_mention = false;
        g.filter_sender = false;
        assert_eq!(
            screen(&m, &g, RoomKind::Channel),
            Err(DropReason::SystemMessage)
        );
    }

    #[test]
    fn allow_list() {
        let g = gates();
        assert!(screen(&msg("alice", "@bot hi"), &g, RoomKind::Channel).is_ok());
        assert!(screen(&msg("gina", "@bot hi"), &g, RoomKind::Channel).is_ok());
        assert_eq!(
            screen(&msg("mallory", "@bot hi"), &g, RoomKind::Channel),
            Err(DropReason::NotAllowed)
        );
        assert_eq!(
            screen(&msg("mallory", "hi"), &g, RoomKind::Dm),
            Err(DropReason::NotAllowed)
        );
        let mut open = g.clone();
        open.filter_sender = false;
        assert!(screen(&msg("mallory", "@bot hi"), &open, RoomKind::Channel).is_ok());
    }

    #[test]
    fn mention_gate() {
        let g = gates();
        assert_eq!(
            screen(&msg("alice", "hello"), &g, RoomKind::Channel),
            Err(DropReason::NotMentioned)
        );
        assert_eq!(
            screen(&msg("alice", "hello"), &g, RoomKind::Group),
            Err(DropReason::NotMentioned)
        );
        // DMs need no mention.
        assert!(screen(&msg("alice", "hello"), &g, RoomKind::Dm).is_ok());
        // Trusted mentions: the bot or all (not here).
        for (mention, ok) in [
            ("bot", true),
            ("all", true),
            ("here", false),
            ("bob", false),
        ] {
            let mut m = msg("alice", "hello");
            m.mentions = vec![mention.into()];
            assert_eq!(screen(&m, &g, RoomKind::Channel).is_ok(), ok, "{mention}");
        }
        // Text fallback, including a caption.
        assert!(screen(&msg("alice", "hi @bot"), &g, RoomKind::Channel).is_ok());
        assert!(screen(&msg("alice", "hi @bots"), &g, RoomKind::Channel).is_err());
        let mut m = msg("alice", "");
        m.attachments = vec![RcAttachment {
            title: None,
            title_link: None,
            description: Some("look @bot".into()),
        }];
        assert!(screen(&m, &g, RoomKind::Channel).is_ok());
        // Listen-all mode.
        let mut open = g.clone();
        open.require_mention = false;
        assert!(screen(&msg("alice", "hello"), &open, RoomKind::Channel).is_ok());
    }

    #[test]
    fn owners_approve_and_deny_without_a_mention() {
        let g = gates();
        for text in ["approve a3k9", "deny a3k9", "  APPROVE A3K9 ", "Deny x1y2"] {
            assert!(
                screen(&msg("alice", text), &g, RoomKind::Channel).is_ok(),
                "{text}"
            );
            assert!(
                screen(&msg("alice", text), &g, RoomKind::Group).is_ok(),
                "{text}"
            );
            // A guest's identical text still needs the mention.
            assert_eq!(
                screen(&msg("gina", text), &g, RoomKind::Channel),
                Err(DropReason::NotMentioned),
                "{text}"
            );
        }
        // Only the exact command: anything more is ordinary chat and needs the mention.
        for text in [
            "approve a3k9 please",
            "approve",
            "I approve a3k9",
            "approve a3-k9",
        ] {
            assert_eq!(
                screen(&msg("alice", text), &g, RoomKind::Channel),
                Err(DropReason::NotMentioned),
                "{text}"
            );
        }
        // Strangers are still stopped by the allow-list.
        assert_eq!(
            screen(&msg("mallory", "approve a3k9"), &g, RoomKind::Channel),
            Err(DropReason::NotAllowed)
        );
    }

    #[test]
    fn peer_agents_pass_both_gates() {
        let g = gates();
        assert_eq!(
            screen(&msg("wavebro", "no mention"), &g, RoomKind::Channel),
            Ok(Screened { is_agent: true })
        );
        assert_eq!(
            screen(&msg("alice", "@bot"), &g, RoomKind::Channel),
            Ok(Screened { is_agent: false })
        );
    }

    #[test]
    fn ledger_dedups_ids_and_answered_timestamps() {
        let mut ledger = RoomLedger::new(Some(1000));
        let mut m = msg("alice", "x");
        m.ts_ms = Some(1000);
        assert_eq!(ledger.check(&m), Err(DropReason::AlreadyAnswered));
        m.ts_ms = Some(1001);
        m.updated_ms = Some(1001);
        assert_eq!(ledger.check(&m), Ok(()));
        ledger.mark_seen("id-x");
        assert_eq!(ledger.check(&m), Err(DropReason::Duplicate));
        ledger.forget("id-x");
        assert_eq!(ledger.check(&m), Ok(()));
        // Unknown timestamps skip the comparison.
        m.ts_ms = None;
        assert_eq!(ledger.check(&m), Ok(()));
    }

    #[test]
    fn out_of_order_live_messages_are_not_lost() {
        // A message older than the last delivered one (but above the floor) still passes.
        let mut ledger = RoomLedger::new(None);
        ledger.delivered(Some(5000));
        let mut m = msg("alice", "late");
        m.ts_ms = Some(4990);
        m.updated_ms = Some(4991);
        assert_eq!(ledger.check(&m), Ok(()));
    }

    #[test]
    fn edits_and_updates_of_handled_messages() {
        let mut ledger = RoomLedger::new(Some(1000));
        let mut m = msg("alice", "x");
        m.ts_ms = Some(2000);
        m.updated_ms = Some(2000);
        ledger.mark_seen("id-x");
        ledger.delivered(Some(2000));
        m.edited = true;
        assert_eq!(ledger.check(&m), Err(DropReason::Update));
        // A reaction/thread-count update: same id, _updatedAt later.
        m.edited = false;
        m.updated_ms = Some(90_000);
        assert_eq!(ledger.check(&m), Err(DropReason::Update));
        // An update of an old message whose id was forgotten: the timestamp tells.
        let mut old = msg("alice", "old");
        old.ts_ms = Some(500);
        old.updated_ms = Some(90_000);
        assert_eq!(ledger.check(&old), Err(DropReason::Update));
        old.ts_ms = Some(1500);
        assert_eq!(ledger.check(&old), Err(DropReason::Update));
        // An edited message never seen and newer than everything: it is a message we missed.
        let mut missed = msg("alice", "missed");
        missed.ts_ms = Some(3000);
        missed.updated_ms = Some(9000);
        missed.edited = true;
        assert_eq!(ledger.check(&missed), Ok(()));
    }

    #[test]
    fn ledger_window_and_anchor() {
        let mut ledger = RoomLedger::new(Some(10));
        for i in 0..(SEEN_WINDOW + 5) {
            ledger.mark_seen(&format!("m{i}"));
        }
        let mut m = msg("alice", "x");
        m.id = Some("m0".into());
        m.ts_ms = Some(20);
        assert_eq!(ledger.check(&m), Ok(()));
        m.id = Some(format!("m{}", SEEN_WINDOW + 4));
        assert_eq!(ledger.check(&m), Err(DropReason::Duplicate));
        assert_eq!(ledger.replay_anchor_ms(), Some(10));
        ledger.delivered(Some(50));
        ledger.delivered(Some(40));
        assert_eq!(ledger.replay_anchor_ms(), Some(50));
        ledger.raise_floor(Some(5));
        assert_eq!(ledger.floor_ms(), Some(10));
        ledger.raise_floor(Some(60));
        assert_eq!(ledger.replay_anchor_ms(), Some(60));
        assert_eq!(RoomLedger::new(None).replay_anchor_ms(), None);
    }

    #[test]
    fn budget_per_room_thread_and_sender() {
        let t0 = Instant::now();
        let mut b = TurnBudget::new(2, Duration::from_secs(3600));
        assert_eq!(b.charge("R", None, "wave", t0), Some(1));
        assert_eq!(b.charge("R", None, "wave", t0), Some(2));
        assert_eq!(b.charge("R", None, "wave", t0), None);
        // Other thread, room or sender: separate budgets.
        assert_eq!(b.charge("R", Some("T"), "wave", t0), Some(1));
        assert_eq!(b.charge("R2", None, "wave", t0), Some(1));
        assert_eq!(b.charge("R", None, "other", t0), Some(1));
        // A human in the same room/thread resets it; other threads keep theirs.
        b.reset("R", None);
        assert_eq!(b.charge("R", None, "wave", t0), Some(1));
        assert_eq!(b.charge("R", Some("T"), "wave", t0), Some(2));
        assert_eq!(b.charge("R", Some("T"), "wave", t0), None);
    }

    #[test]
    fn budget_expires_after_ttl() {
        let t0 = Instant::now();
        let mut b = TurnBudget::new(1, Duration::from_secs(60));
        assert_eq!(b.charge("R", None, "wave", t0), Some(1));
        assert_eq!(
            b.charge("R", None, "wave", t0 + Duration::from_secs(59)),
            None
        );
        // The failed charge did not refresh the budget: 60 s after the last charge it is back.
        assert_eq!(
            b.charge("R", None, "wave", t0 + Duration::from_secs(61)),
            Some(1)
        );
        let mut none = TurnBudget::new(0, Duration::from_secs(60));
        assert_eq!(none.charge("R", None, "wave", t0), None);
    }

    #[test]
    fn chain_notes() {
        assert_eq!(
            agent_chain_note(1, 5),
            "---\n[Agent chain: turn 1/5]\nIf this conversation is repeating without making progress (a loop), or if you have nothing meaningful to add, respond with ONLY: <end-of-agent-chain>"
        );
        assert_eq!(
            agent_chain_note(4, 5),
            "---\n[Agent chain: turn 4/5]\n⚠️  Your next response will be your last turn in this agent chain.\nIf this conversation is repeating without making progress (a loop), or if you have nothing meaningful to add, respond with ONLY: <end-of-agent-chain>"
        );
        assert_eq!(
            agent_chain_note(5, 5),
            "---\n[Agent chain: turn 5/5]\n⚠️  This is your final turn in this agent chain. Please wrap up gracefully.\nIf the task is not yet complete, you may use the scheduler tool to schedule a follow-up message and continue with a fresh turn budget."
        );
    }
}
