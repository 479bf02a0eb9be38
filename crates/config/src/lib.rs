//! Loads `config.yaml` in the 0.5.x (v0.3) format into the resolved [`model::Config`].
//!
//! Entry points: [`load`] (fail on the first problem is *not* how we work: every problem found
//! is collected into [`ConfigErrors`], each naming file, entry, field and line where known).

pub mod model;

pub use model::*;
