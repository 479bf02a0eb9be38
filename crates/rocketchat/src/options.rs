//! Tuning of a [`crate::RocketChatConnector`] that is not in the config file: timeouts,
//! reconnect delays, keepalive and replay paging. The defaults suit production; tests shorten
//! them.

use std::time::Duration;

/// Timeouts, delays and sizes of one connector.
#[derive(Debug, Clone, PartialEq)]
pub struct RocketChatOptions {
    /// First reconnect delay (doubles per failure).
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub stable_after: Duration,
    /// How long `connect()` waits for the first attempt before returning anyway.
    pub connect_grace: Duration,
    /// How long `resolve_room` waits for the server when it is not reachable yet.
    pub resolve_wait: Duration,
    /// DDP ping interval; a link silent for two intervals is considered dead.
    pub keepalive_interval: Duration,
    /// Ordinary REST calls and the WebSocket connect.
    pub request_timeout: Duration,
    /// Uploads.
    pub transfer_timeout: Duration,
    /// DDP handshake and login.
    pub method_timeout: Duration,
    /// Waiting for a subscription's `ready`.
    pub subscribe_timeout: Duration,
    /// A typing indicator call.
    pub typing_timeout: Duration,
    /// Pauses between the attempts of one post (3 attempts = 2 pauses).
    pub post_retry_delays: Vec<Duration>,
    /// Messages per history page when replaying.
    pub history_page_size: u32,
    /// Pages fetched at most in one replay (a warning says when that was not enough).
    pub history_max_pages: u32,
    /// Live messages buffered per room before the room falls back to a replay.
    pub room_queue_depth: usize,
}

impl Default for RocketChatOptions {
    fn default() -> Self {
        RocketChatOptions {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stable_after: Duration::from_secs(30),
            connect_grace: Duration::from_secs(5),
            resolve_wait: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(25),
            request_timeout: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(60),
            method_timeout: Duration::from_secs(15),
            subscribe_timeout: Duration::from_secs(10),
            typing_timeout: Duration::from_secs(5),
            post_retry_delays: vec![Duration::from_secs(1), Duration::from_secs(3)],
            history_page_size: 100,
            history_max_pages: 50,
            room_queue_depth: 1000,
        }
    }
}
