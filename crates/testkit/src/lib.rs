//! Test kit (TODO).
