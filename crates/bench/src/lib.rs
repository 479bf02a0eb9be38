//! The benchmark harness of agent-chat-gateway (issue 6): our gateway and the Python
//! agent-chat-gateway 0.5.2 side by side, with identical config.yaml, against the test kit's
//! fake Rocket.Chat and the instant stub agent `acg-stub-claude`.
//!
//! `scripts/bench.sh` is the one command: it builds the release binaries, installs the
//! reference into `.tools/acg-0.5.2`, runs `acg-bench`, and leaves `target/bench/results.json`.
//! `docs/performance.md` explains every figure.
//!
//! Layout, in the order a run uses it:
//! - [`world`]: the fake server with the bot, the senders and the rooms;
//! - [`ddp`]: the observer (and floor relay) client;
//! - [`gateway`]: a gateway under test: config, `start`, `list`, `stop`;
//! - [`procfs`]: CPU time, RSS, exits of the daemon process;
//! - [`tracker`]: which reply answers which message;
//! - [`scenario`]: the measurements; [`real_agent`]: the gateway's share of a real turn;
//! - [`stats`] and [`report`]: medians, percentiles, the table and the JSON.

pub mod ddp;
pub mod gateway;
pub mod procfs;
pub mod real_agent;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod tracker;
pub mod world;
