//! Rocket.Chat connector (placeholder while the crate is being written).
