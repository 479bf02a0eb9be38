//! Test kit for agent-chat-gateway: fakes that speak the real wire formats, so adapters are
//! tested against real agent CLIs and faithful servers rather than mocks of our own traits.
//!
//! - [`anthropic`]: a scriptable mock of the Anthropic Messages API ([`anthropic::MockAnthropic`])
//!   that the real Claude Code CLI talks to offline.
//! - [`openai`]: a scriptable mock of the OpenAI Chat Completions API ([`openai::MockOpenAI`])
//!   that the real OpenCode CLI talks to offline.
//! - [`agents`]: locating the pinned agent CLIs and giving each run an isolated, offline home.
//! - [`rocketchat`]: a faithful fake Rocket.Chat server (REST + DDP, 7.x and 8.x) with fault
//!   injection and helpers that act as human users ([`rocketchat::FakeRocketChat`]).
//!
//! The `acg-testkit` binary serves the same fakes standalone for demos and benchmarks.

pub mod agents;
pub mod anthropic;
pub mod openai;
pub mod rocketchat;
