//! Script connector (TODO).
