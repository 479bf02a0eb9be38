//! The chat world a benchmark runs in: the test kit's fake Rocket.Chat (the same server
//! `acg-testkit fake-rocketchat` runs standalone), started in the harness's own process so
//! posts happen at a precisely known instant, seeded with the bot, an observer, the senders
//! and the watched rooms.
//!
//! Every gateway start gets a fresh world (new port, empty rooms), so no gateway ever sees
//! history another one left behind (no replay, no history hand-off) and both gateways start
//! from the same state.

use acg_testkit::rocketchat::{FakeOptions, FakeRocketChat, HumanClient, Seed, SeedRoom, SeedUser};
use anyhow::{Context, Result};

/// The bot account both gateways log in with.
pub const BOT: &str = "bot";
/// Its password.
pub const BOT_PASSWORD: &str = "botpw";
/// The account the observer watches the rooms with (never posts).
pub const OBSERVER: &str = "observer";
/// Password of the observer and the senders.
pub const USER_PASSWORD: &str = "userpw";
/// The Rocket.Chat version the fake imitates.
pub const VERSION: &str = "7.10.0";

/// The name of watched room `i` (`bench-0000`, …).
pub fn room_name(i: usize) -> String {
    format!("bench-{i:04}")
}

/// The username of sender `i` (`s00`, …); every sender is an owner in the config.
pub fn sender_name(i: usize) -> String {
    format!("s{i:02}")
}

/// A running fake server and the people in it.
pub struct BenchWorld {
    /// The fake server.
    pub fake: FakeRocketChat,
    /// Room names, index = room number.
    pub rooms: Vec<String>,
    /// Room ids, same order.
    pub room_ids: Vec<String>,
    /// The senders, acting in-process (posts go straight into the fake's database and are
    /// streamed to subscribers at once).
    pub senders: Vec<HumanClient>,
}

impl BenchWorld {
    /// A fresh world with `rooms` public channels and `senders` users. The first
    /// `busy_rooms` rooms have every sender as a member, the others only the first sender
    /// (public channels are readable by everyone anyway).
    pub async fn start(rooms: usize, senders: usize, busy_rooms: usize) -> Result<BenchWorld> {
        let senders = senders.max(1);
        let names: Vec<String> = (0..senders).map(sender_name).collect();
        let mut seed = Seed::new()
            .with_user(
                SeedUser::new(BOT, BOT_PASSWORD)
                    .display_name("Gateway Bot")
                    .role("bot"),
            )
            .with_user(SeedUser::new(OBSERVER, USER_PASSWORD));
        seed.general = false;
        for name in &names {
            seed = seed.with_user(SeedUser::new(name, USER_PASSWORD));
        }
        for i in 0..rooms {
            let mut members: Vec<&str> = vec![BOT, OBSERVER];
            if i < busy_rooms {
                members.extend(names.iter().map(String::as_str));
            } else {
                members.push(&names[0]);
            }
            seed = seed.with_room(SeedRoom::channel(&room_name(i), &members));
        }
        let mut options = FakeOptions::new(VERSION, seed);
        // Message_MaxAllowedSize large enough for any echo.
        options.message_max_allowed_size = 100_000;
        // The reference reads the first frame after `connect` as the handshake answer and
        // gives up on the legacy greeting; ours skips it. Off for both, so both can run.
        options.legacy_greeting = false;
        let fake = FakeRocketChat::start(options)
            .await
            .context("cannot start the fake Rocket.Chat")?;
        let rooms: Vec<String> = (0..rooms).map(room_name).collect();
        let room_ids = rooms
            .iter()
            .map(|r| fake.room_id(r).with_context(|| format!("room {r} missing")))
            .collect::<Result<Vec<_>>>()?;
        let senders = names
            .iter()
            .map(|n| {
                fake.login_as(n)
                    .with_context(|| format!("user {n} missing"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BenchWorld {
            fake,
            rooms,
            room_ids,
            senders,
        })
    }
}
