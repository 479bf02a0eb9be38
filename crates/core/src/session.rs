//! The scripting API: drive one agent session from Rust code without any chat platform.
//! Explicit `start`/`stop`; several `send`s reuse one session; `send` before `start` fails.
