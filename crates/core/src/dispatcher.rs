//! Routes each normalized inbound message to the watchers of its room (and, later, intercepts
//! `approve`/`deny` from owners before anything is queued).
