//! The `agent-chat-gateway` command: parse the command line, run the command, exit with its
//! code. Everything else lives in the modules below.
//!
//! - [`cli`]: arguments and the client commands (talk to the daemon over its socket).
//! - [`daemon`]: `start` / `stop` / `restart` and the daemon's own life cycle.
//! - [`notify`]: the startup report pipe between `start` and the daemon.
//! - [`runtime`]: the runtime directory, pid file and instance lock.
//! - [`control`]: the control socket protocol, server and client.
//! - [`wiring`]: config → agent backends, connectors and watcher specs.
//! - [`agents`]: the daemon's agents as `status` and `list` report them.
//! - [`logging`]: the daemon's log file.
//!
//! The permission handling (the decision gate, the Claude hook server, OpenCode's permission
//! requests) lives in the library (`agent_chat_gateway::{decision, broker,
//! opencode_permissions}`), so embedders and tests can run it too.

mod agents;
mod cli;
mod control;
mod daemon;
mod logging;
mod notify;
mod residency;
mod runtime;
mod wiring;

fn main() {
    let command = cli::parse();
    if !command.runs_daemon() {
        // A CLI piped into `head` should end quietly, like other Unix tools, instead of
        // panicking on a closed stdout. The daemon keeps Rust's default (SIGPIPE ignored).
        // SAFETY: no other thread exists yet; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    std::process::exit(cli::run(command));
}
