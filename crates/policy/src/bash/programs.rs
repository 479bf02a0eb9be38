//! What individual programs do with their arguments, as far as approval is concerned.
//!
//! Each analyzer looks at one simple command (already emitted as a param) and may:
//! emit the command it runs (`sudo rm x` → `rm x`, `find … -exec grep … \;` → `grep …`),
//! re-parse a literal command string (`bash -c 'ls'`, `eval`, `watch`, `ssh host cmd`),
//! emit a `> FILE` write param (`find -fprint FILE`), or mark the call opaque when the program
//! would run code that the text does not show (inline interpreter code, `find -delete`,
//! `git -c`, awk's `system()`, sed's `e` command, `source`, `trap`, …).
//!
//! Unknown options of a program that runs another command make the call opaque rather than
//! guessing which word is the command.

use super::word::{basename, Word};
use super::{sed, subscript_literal, Invocation, Walker};

/// Dispatches on the command's basename (`/usr/bin/sudo` is `sudo`).
pub(super) fn analyze(w: &mut Walker<'_, '_>, name: &str, inv: &Invocation) {
    let base = basename(name);
    let words = &inv.words;
    if let Some(spec) = wrapper_spec(base) {
        wrapper(w, base, spec, words);
        return;
    }
    match base {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "yash" | "rbash" | "fish"
        | "csh" | "tcsh" | "posh" | "ksh93" | "oksh" | "loksh" => shell(w, words),
        "eval" => eval(w, words),
        "xargs" => xargs(w, words),
        "find" | "gfind" => find(w, words),
        "git" => git(w, words),
        "awk" | "gawk" | "mawk" | "nawk" | "original-awk" => awk(w, words),
        "sed" | "gsed" => sed_command(w, words),
        "busybox" => {
            if words.len() > 1 {
                if words[1].val().is_some_and(|v| v.starts_with('-')) {
                    return;
                }
                w.inner(Vec::new(), words[1..].to_vec());
            }
        }
        "source" | "." => opaque(w, inv, "runs the commands of a file"),
        "coproc" => opaque(w, inv, "coprocesses are not analysed"),
        "let" => opaque(
            w,
            inv,
            "arithmetic on variables (bash evaluates code hidden in their values)",
        ),
        "su" | "runuser" | "sg" | "script" | "at" | "batch" | "parallel" | "fc" => {
            opaque(w, inv, "runs commands this check cannot see")
        }
        "trap" => {
            let listing = words[1..]
                .iter()
                .all(|a| matches!(a.val(), Some("-l" | "-p")));
            if !listing {
                opaque(w, inv, "`trap` stores a command to run later")
            }
        }
        "alias" => {
            if words[1..].iter().any(|a| a.text.contains('=')) {
                opaque(w, inv, "aliases replace commands by other text")
            }
        }
        "enable" => {
            if words.len() > 1 {
                opaque(w, inv, "`enable` can load builtins from a shared library")
            }
        }
        "hash" | "mapfile" | "readarray" | "complete" | "compgen" | "bind" => {
            let risky = match base {
                "hash" => "p",
                "bind" => "x",
                _ => "CF",
            };
            let flagged = words[1..].iter().any(|a| match a.val() {
                Some(v) => short_cluster_has(v, risky),
                None => true,
            });
            if flagged {
                opaque(
                    w,
                    inv,
                    "option that makes the builtin run a command or remap one",
                )
            }
            if matches!(base, "mapfile" | "readarray") {
                name_arguments(w, base, words);
            }
        }
        "export" | "declare" | "typeset" | "local" | "readonly" | "read" | "unset" | "getopts" => {
            name_arguments(w, base, words)
        }
        "set" => {
            let history = words[1..].iter().any(|a| match a.val() {
                Some(v) => {
                    ((v.starts_with('-') || v.starts_with('+'))
                        && !v.starts_with("--")
                        && v.contains('H'))
                        || v == "histexpand"
                        || v == "history"
                }
                None => true,
            });
            if history {
                opaque(w, inv, "history expansion re-runs earlier command lines");
            }
        }
        "printf" | "test" | "[" | "wait" => {
            let flag = match base {
                "printf" => "-v",
                "wait" => "-p",
                _ => "-v",
            };
            for (i, a) in words.iter().enumerate().skip(1) {
                if a.val() == Some(flag) {
                    if let Some(next) = words.get(i + 1) {
                        check_name_word(w, next);
                    }
                } else if base == "printf"
                    && a.val().is_some_and(|v| v.starts_with("-v") && v.len() > 2)
                {
                    check_name_word(w, a);
                }
            }
        }
        "deno" | "bun" => {
            let inline = words[1..].iter().any(|a| match a.val() {
                Some(v) => matches!(v, "eval" | "repl" | "-e" | "--eval" | "-p" | "--print"),
                None => false,
            });
            if inline || words.len() == 1 {
                opaque(w, inv, "runs inline code")
            }
        }
        _ if is_interpreter(base) => interpreter(w, base, inv),
        _ => blocked_options(w, base, inv),
    }
}

fn opaque(w: &mut Walker<'_, '_>, inv: &Invocation, reason: &str) {
    w.opaque_text(&inv.text, reason);
}

fn run_time_args(w: &mut Walker<'_, '_>, word: &Word) {
    w.opaque_text(
        &word.text,
        "arguments computed at run time, so what the program will do is unknown",
    );
}

fn short_cluster_has(v: &str, letters: &str) -> bool {
    v.starts_with('-') && !v.starts_with("--") && v[1..].chars().any(|c| letters.contains(c))
}

fn check_name_word(w: &mut Walker<'_, '_>, word: &Word) {
    if let Some(v) = word.val() {
        let name = v.strip_prefix("-v").filter(|n| !n.is_empty()).unwrap_or(v);
        if super::dangerous_variable(name) {
            let reason = format!("sets {name}, which changes what later programs load or run");
            w.opaque_text(&word.text, reason);
        }
    }
    if word.text.contains('[') && !subscript_literal(word.val()) {
        w.opaque_text(
            &word.text,
            "array subscript computed at run time (evaluated as arithmetic)",
        );
    }
}

/// Builtins whose arguments name variables (`read a[…]` evaluates the subscript).
fn name_arguments(w: &mut Walker<'_, '_>, base: &str, words: &[Word]) {
    for a in &words[1..] {
        check_name_word(w, a);
        if let Some(v) = a.val() {
            if let Some((name, _)) = v.split_once('=') {
                if super::dangerous_variable(name) {
                    let reason =
                        format!("sets {name}, which changes what later programs load or run");
                    w.opaque_text(&a.text, reason);
                }
            } else if matches!(base, "read" | "getopts" | "mapfile" | "readarray") {
                if super::dangerous_variable(v) {
                    let reason = format!("sets {v}, which changes what later programs load or run");
                    w.opaque_text(&a.text, reason);
                }
            } else if matches!(
                base,
                "export" | "declare" | "typeset" | "local" | "readonly"
            ) {
                if v.starts_with('-') && v.contains('n') {
                    w.opaque_text(&a.text, "name reference (assigns to another variable)");
                }
                if super::dangerous_variable(v) {
                    let reason =
                        format!("exports {v}, which changes what later programs load or run");
                    w.opaque_text(&a.text, reason);
                }
                if v.starts_with('-') && v.contains('i') {
                    w.opaque_text(
                        &a.text,
                        "integer attribute (values are evaluated as arithmetic)",
                    );
                }
            }
        }
    }
}

/// How a wrapper's options look: which take a value, which make it run nothing, which make it
/// opaque, how many operands come before the command.
struct WrapperSpec {
    short_arg: &'static str,
    short_flag: &'static str,
    long_arg: &'static [&'static str],
    long_flag: &'static [&'static str],
    /// Operands before the command (timeout's duration, chroot's new root, flock's file).
    lead: usize,
    /// `NAME=value` words before the command set its environment.
    env_assignments: bool,
    /// Without a command the wrapper runs nothing (prints usage, queries). Otherwise it starts
    /// an interactive shell reading stdin: opaque.
    bare_ok: bool,
    /// Options after which nothing is run (`command -v`).
    query_short: &'static str,
    query_long: &'static [&'static str],
    /// Options that make the call opaque (`sudo -s`, `env -S`).
    block_short: &'static str,
    block_long: &'static [&'static str],
    /// Short option whose value is a shell command line (`flock -c`).
    shell_short: Option<char>,
    shell_long: Option<&'static str>,
    /// Old-style numeric options (`nice -10`).
    numeric: bool,
    /// The command operands are joined with spaces and run by a shell (`watch`, `ssh`),
    /// unless one of these options is given (`watch -x`).
    joined: bool,
    unjoin_short: Option<char>,
    unjoin_long: Option<&'static str>,
}

const BASE: WrapperSpec = WrapperSpec {
    short_arg: "",
    short_flag: "",
    long_arg: &[],
    long_flag: &["help", "version"],
    lead: 0,
    env_assignments: false,
    bare_ok: true,
    query_short: "",
    query_long: &["help", "version"],
    block_short: "",
    block_long: &[],
    shell_short: None,
    shell_long: None,
    numeric: false,
    joined: false,
    unjoin_short: None,
    unjoin_long: None,
};

fn wrapper_spec(base: &str) -> Option<&'static WrapperSpec> {
    static SUDO: WrapperSpec = WrapperSpec {
        short_arg: "CDghpRrTtUu",
        short_flag: "AbEHKkLnPSVv",
        long_arg: &[
            "user",
            "group",
            "close-from",
            "chdir",
            "host",
            "prompt",
            "chroot",
            "role",
            "type",
            "command-timeout",
            "other-user",
        ],
        long_flag: &[
            "askpass",
            "background",
            "bell",
            "preserve-env",
            "preserve-groups",
            "set-home",
            "non-interactive",
            "stdin",
            "reset-timestamp",
            "remove-timestamp",
            "list",
            "validate",
            "version",
            "help",
        ],
        env_assignments: true,
        query_short: "lVv",
        query_long: &["list", "validate", "version", "help"],
        block_short: "eis",
        block_long: &["edit", "login", "shell"],
        ..BASE
    };
    static DOAS: WrapperSpec = WrapperSpec {
        short_arg: "uaC",
        short_flag: "nL",
        block_short: "s",
        ..BASE
    };
    static ENV: WrapperSpec = WrapperSpec {
        short_arg: "uC",
        short_flag: "i0v",
        long_arg: &["unset", "chdir"],
        long_flag: &[
            "ignore-environment",
            "null",
            "debug",
            "help",
            "version",
            "ignore-signal",
            "default-signal",
            "block-signal",
            "list-signal-handling",
        ],
        env_assignments: true,
        block_short: "S",
        block_long: &["split-string"],
        ..BASE
    };
    static NOHUP: WrapperSpec = WrapperSpec { ..BASE };
    static TIMEOUT: WrapperSpec = WrapperSpec {
        short_arg: "sk",
        short_flag: "v",
        long_arg: &["signal", "kill-after"],
        long_flag: &[
            "preserve-status",
            "foreground",
            "verbose",
            "help",
            "version",
        ],
        lead: 1,
        ..BASE
    };
    static NICE: WrapperSpec = WrapperSpec {
        short_arg: "n",
        long_arg: &["adjustment"],
        numeric: true,
        ..BASE
    };
    static IONICE: WrapperSpec = WrapperSpec {
        short_arg: "cnpPu",
        short_flag: "t",
        long_arg: &["class", "classdata", "pid", "pgid", "uid"],
        long_flag: &["ignore", "help", "version"],
        query_short: "pPu",
        query_long: &["pid", "pgid", "uid", "help", "version"],
        ..BASE
    };
    static STDBUF: WrapperSpec = WrapperSpec {
        short_arg: "ioe",
        long_arg: &["input", "output", "error"],
        ..BASE
    };
    static TIME: WrapperSpec = WrapperSpec {
        short_arg: "f",
        short_flag: "pavq",
        long_arg: &["format"],
        long_flag: &[
            "portability",
            "append",
            "verbose",
            "quiet",
            "help",
            "version",
        ],
        block_short: "o",
        block_long: &["output"],
        ..BASE
    };
    static COMMAND: WrapperSpec = WrapperSpec {
        short_flag: "p",
        query_short: "vV",
        ..BASE
    };
    static BUILTIN: WrapperSpec = WrapperSpec { ..BASE };
    static EXEC: WrapperSpec = WrapperSpec {
        short_arg: "a",
        short_flag: "cl",
        ..BASE
    };
    static SETSID: WrapperSpec = WrapperSpec {
        short_flag: "cfw",
        long_flag: &["ctty", "fork", "wait", "help", "version"],
        ..BASE
    };
    static CHROOT: WrapperSpec = WrapperSpec {
        long_arg: &["userspec", "groups"],
        long_flag: &["skip-chdir", "help", "version"],
        lead: 1,
        bare_ok: false,
        ..BASE
    };
    static WATCH: WrapperSpec = WrapperSpec {
        short_arg: "nq",
        short_flag: "bcCdeghptwrx",
        long_arg: &["interval", "equexit"],
        long_flag: &[
            "beep",
            "color",
            "no-color",
            "differences",
            "errexit",
            "chgexit",
            "precise",
            "no-title",
            "no-wrap",
            "exec",
            "no-rerun",
            "help",
            "version",
        ],
        joined: true,
        unjoin_short: Some('x'),
        unjoin_long: Some("exec"),
        bare_ok: true,
        ..BASE
    };
    static SSH: WrapperSpec = WrapperSpec {
        short_arg: "BbcDEeIiJLlmOopQRSWw",
        short_flag: "46AaCfGgKkMNnqsTtVvXxYy",
        lead: 1,
        bare_ok: false,
        joined: true,
        block_short: "F",
        ..BASE
    };
    static FLOCK: WrapperSpec = WrapperSpec {
        short_arg: "Ewc",
        short_flag: "sexunoFv",
        long_arg: &["conflict-exit-code", "timeout", "wait", "command"],
        long_flag: &[
            "shared",
            "exclusive",
            "unlock",
            "nonblock",
            "nb",
            "close",
            "no-fork",
            "verbose",
            "help",
            "version",
        ],
        lead: 1,
        shell_short: Some('c'),
        shell_long: Some("command"),
        ..BASE
    };
    static TASKSET: WrapperSpec = WrapperSpec {
        short_flag: "acp",
        long_flag: &["all-tasks", "cpu-list", "pid", "help", "version"],
        query_short: "p",
        query_long: &["pid", "help", "version"],
        lead: 1,
        ..BASE
    };
    static UNBUFFER: WrapperSpec = WrapperSpec {
        short_flag: "p",
        ..BASE
    };
    static FAKEROOT: WrapperSpec = WrapperSpec {
        short_arg: "lsib",
        short_flag: "uh",
        long_arg: &["lib", "faked", "save-file", "fd-base"],
        long_flag: &["unknown-is-real", "help", "version"],
        bare_ok: false,
        ..BASE
    };
    static PKEXEC: WrapperSpec = WrapperSpec {
        long_arg: &["user"],
        long_flag: &["disable-internal-agent", "keep-cwd", "help", "version"],
        bare_ok: false,
        ..BASE
    };
    static PROXYCHAINS: WrapperSpec = WrapperSpec {
        short_arg: "f",
        short_flag: "q",
        ..BASE
    };
    Some(match base {
        "sudo" => &SUDO,
        "doas" => &DOAS,
        "env" => &ENV,
        "nohup" | "eatmydata" | "catchsegv" | "torify" => &NOHUP,
        "timeout" | "gtimeout" => &TIMEOUT,
        "nice" => &NICE,
        "ionice" => &IONICE,
        "stdbuf" => &STDBUF,
        "time" => &TIME,
        "command" => &COMMAND,
        "builtin" => &BUILTIN,
        "exec" => &EXEC,
        "setsid" => &SETSID,
        "chroot" => &CHROOT,
        "watch" => &WATCH,
        "ssh" => &SSH,
        "flock" => &FLOCK,
        "taskset" => &TASKSET,
        "unbuffer" => &UNBUFFER,
        "fakeroot" => &FAKEROOT,
        "pkexec" => &PKEXEC,
        "proxychains" | "proxychains4" => &PROXYCHAINS,
        _ => return None,
    })
}

/// A program that runs another command given in its arguments.
fn wrapper(w: &mut Walker<'_, '_>, base: &str, spec: &WrapperSpec, words: &[Word]) {
    let mut i = 1;
    let mut query = false;
    let mut shell_string: Option<Word> = None;
    let mut unjoined = false;
    while i < words.len() {
        let word = &words[i];
        let Some(v) = word.val() else {
            run_time_args(w, word);
            return;
        };
        if v == "--" {
            i += 1;
            break;
        }
        if base == "env" && v == "-" {
            i += 1;
            continue;
        }
        if base == "ssh" && v.starts_with("-o") {
            let option = if v == "-o" {
                words.get(i + 1).and_then(|n| n.val()).unwrap_or("")
            } else {
                &v[2..]
            };
            let lower = option.to_ascii_lowercase();
            if [
                "proxycommand",
                "localcommand",
                "permitlocalcommand",
                "knownhostscommand",
                "match",
                "include",
            ]
            .iter()
            .any(|k| lower.contains(k))
            {
                w.opaque_text(&word.text, "ssh option that runs a local command");
                return;
            }
        }
        if let Some(long) = v.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            if spec.block_long.contains(&name) {
                w.opaque_text(
                    &word.text,
                    format!("`{base} --{name}` runs a shell or edits files"),
                );
                return;
            }
            if spec.query_long.contains(&name) {
                query = true;
            }
            if spec.unjoin_long == Some(name) {
                unjoined = true;
            }
            if spec.shell_long == Some(name) {
                let value = if attached {
                    Some(Word {
                        text: word.text.clone(),
                        value: long.split_once('=').map(|(_, v)| v.to_string()),
                        bare: false,
                        appended: false,
                    })
                } else {
                    i += 1;
                    words.get(i).cloned()
                };
                shell_string = value;
            } else if spec.long_arg.contains(&name) {
                if !attached {
                    i += 1;
                    if i >= words.len() {
                        w.opaque_text(&word.text, "option without its value");
                        return;
                    }
                }
            } else if !spec.long_flag.contains(&name) {
                w.opaque_text(
                    &word.text,
                    format!("unknown `{base}` option: cannot tell which command it runs"),
                );
                return;
            }
            i += 1;
            continue;
        }
        if spec.numeric
            && v.len() > 1
            && v.starts_with('-')
            && v[1..].bytes().all(|b| b.is_ascii_digit())
        {
            i += 1;
            continue;
        }
        if v.len() > 1 && v.starts_with('-') {
            let letters: Vec<char> = v[1..].chars().collect();
            let mut k = 0;
            while k < letters.len() {
                let c = letters[k];
                if spec.block_short.contains(c) {
                    w.opaque_text(
                        &word.text,
                        format!("`{base} -{c}` runs a shell or edits files"),
                    );
                    return;
                }
                if spec.query_short.contains(c) {
                    query = true;
                }
                if spec.unjoin_short == Some(c) {
                    unjoined = true;
                }
                if spec.short_arg.contains(c) {
                    let rest: String = letters[k + 1..].iter().collect();
                    let value = if rest.is_empty() {
                        i += 1;
                        match words.get(i) {
                            Some(n) => n.clone(),
                            None => {
                                w.opaque_text(&word.text, "option without its value");
                                return;
                            }
                        }
                    } else {
                        Word {
                            text: word.text.clone(),
                            value: Some(rest),
                            bare: false,
                            appended: false,
                        }
                    };
                    if spec.shell_short == Some(c) {
                        shell_string = Some(value);
                    }
                    break;
                }
                if !spec.short_flag.contains(c) && !spec.query_short.contains(c) {
                    w.opaque_text(
                        &word.text,
                        format!("unknown `{base}` option: cannot tell which command it runs"),
                    );
                    return;
                }
                k += 1;
            }
            i += 1;
            continue;
        }
        break;
    }
    if let Some(script) = shell_string {
        match script.val() {
            Some(s) => w.reparse(s),
            None => run_time_args(w, &script),
        }
        return;
    }
    if query {
        return;
    }
    // Operands before the command.
    for _ in 0..spec.lead {
        match words.get(i) {
            Some(word) if word.val().is_none() => {
                run_time_args(w, word);
                return;
            }
            Some(_) => i += 1,
            None => break,
        }
    }
    let mut assignments: Vec<Word> = Vec::new();
    if spec.env_assignments {
        while let Some(word) = words.get(i) {
            match word.val() {
                Some(v) if is_assignment(v) => {
                    assignments.push(word.clone());
                    i += 1;
                }
                Some(_) => break,
                None => {
                    run_time_args(w, word);
                    return;
                }
            }
        }
    }
    let command: Vec<Word> = words[i.min(words.len())..].to_vec();
    if command.is_empty() {
        if !spec.bare_ok {
            w.opaque_text(
                &words[0].text,
                format!("`{base}` without a command starts a shell that reads commands from stdin"),
            );
        } else if !assignments.is_empty() {
            for a in &assignments {
                check_assignment_word(w, a);
            }
        }
        return;
    }
    if spec.joined && !unjoined {
        let mut parts = Vec::with_capacity(command.len());
        for word in &command {
            match word.val() {
                Some(v) => parts.push(v.to_string()),
                None => {
                    run_time_args(w, word);
                    return;
                }
            }
        }
        w.reparse(&parts.join(" "));
        return;
    }
    w.inner(assignments, command);
}

fn is_assignment(v: &str) -> bool {
    match v.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'%')
        }
        None => false,
    }
}

fn check_assignment_word(w: &mut Walker<'_, '_>, a: &Word) {
    if let Some((name, _)) = a.val().and_then(|v| v.split_once('=')) {
        if super::dangerous_variable(name) {
            let reason = format!("sets {name}, which changes what later programs load or run");
            w.opaque_text(&a.text, reason);
        }
    }
}

/// `bash -c 'string'` is re-parsed; `bash script.sh` runs a file (the rule decides); a shell
/// reading stdin (`curl … | sh`, `bash -s`, `bash -i`) is opaque.
fn shell(w: &mut Walker<'_, '_>, words: &[Word]) {
    let mut command_mode = false;
    let mut query = false;
    let mut i = 1;
    while i < words.len() {
        let word = &words[i];
        let Some(v) = word.val() else {
            run_time_args(w, word);
            return;
        };
        if v == "--" {
            i += 1;
            break;
        }
        if v == "-" {
            w.opaque_text(&word.text, "the shell reads its commands from stdin");
            return;
        }
        if let Some(long) = v.strip_prefix("--") {
            match long {
                "login" | "noprofile" | "norc" | "posix" | "restricted" | "noediting"
                | "verbose" | "debugger" | "no-config" | "private" => {}
                "version" | "help" => query = true,
                "rcfile" | "init-file" => i += 1,
                "command" => command_mode = true,
                _ if long.starts_with("command=") => {
                    let script = &long["command=".len()..];
                    w.reparse(script);
                    return;
                }
                _ => {
                    w.opaque_text(&word.text, "unknown shell option");
                    return;
                }
            }
            i += 1;
            continue;
        }
        if v.len() > 1 && (v.starts_with('-') || v.starts_with('+')) {
            for c in v[1..].chars() {
                match c {
                    'c' => command_mode = true,
                    's' | 'i' => {
                        w.opaque_text(&word.text, "the shell reads its commands from stdin");
                        return;
                    }
                    'o' | 'O' => i += 1,
                    'a' | 'b' | 'e' | 'f' | 'h' | 'k' | 'l' | 'm' | 'n' | 'p' | 'r' | 't' | 'u'
                    | 'v' | 'x' | 'B' | 'C' | 'E' | 'H' | 'P' | 'T' => {}
                    _ => {
                        w.opaque_text(&word.text, "unknown shell option");
                        return;
                    }
                }
            }
            i += 1;
            continue;
        }
        break;
    }
    match words.get(i) {
        Some(first) if command_mode => match first.val() {
            Some(script) => w.reparse(script),
            None => run_time_args(w, first),
        },
        Some(script) => match script.val() {
            None => run_time_args(w, script),
            Some(path) if reads_stdin_or_device(path) => w.opaque_text(
                &script.text,
                "the shell reads its commands from stdin or a device",
            ),
            Some(_) => {}
        },
        None if command_mode => w.opaque_text(&words[0].text, "`-c` without a command string"),
        None if query => {}
        None => w.opaque_text(&words[0].text, "the shell reads its commands from stdin"),
    }
}

/// `eval` with literal arguments is re-parsed; anything computed is opaque.
fn eval(w: &mut Walker<'_, '_>, words: &[Word]) {
    let mut parts = Vec::new();
    for word in &words[1..] {
        match word.val() {
            Some(v) => parts.push(v.to_string()),
            None => {
                w.opaque_text(&word.text, "`eval` of text computed at run time");
                return;
            }
        }
    }
    w.reparse(&parts.join(" "));
}

/// `xargs [options] [command [args]]`: the command is emitted with a `…` for the arguments
/// xargs appends (or with its `-I` placeholders as run-time words).
fn xargs(w: &mut Walker<'_, '_>, words: &[Word]) {
    const WITH_VALUE: &str = "adEILnPs";
    const OPTIONAL_VALUE: &str = "eil";
    const FLAGS: &str = "0oprtx";
    const LONG_VALUE: &[&str] = &[
        "arg-file",
        "delimiter",
        "max-lines",
        "max-args",
        "max-procs",
        "max-chars",
        "process-slot-var",
        "eof",
        "replace",
    ];
    const LONG_FLAG: &[&str] = &[
        "null",
        "open-tty",
        "interactive",
        "no-run-if-empty",
        "verbose",
        "exit",
        "show-limits",
        "version",
        "help",
    ];
    let mut replace: Option<String> = None;
    let mut i = 1;
    while i < words.len() {
        let word = &words[i];
        let Some(v) = word.val() else {
            run_time_args(w, word);
            return;
        };
        if v == "--" {
            i += 1;
            break;
        }
        if let Some(long) = v.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, val)) => (n, Some(val.to_string())),
                None => (long, None),
            };
            if name == "replace" {
                replace = Some(value.unwrap_or_else(|| "{}".to_string()));
            } else if LONG_VALUE.contains(&name) {
                if value.is_none() && !matches!(name, "eof" | "max-lines") {
                    i += 1;
                }
            } else if !LONG_FLAG.contains(&name) {
                w.opaque_text(
                    &word.text,
                    "unknown `xargs` option: cannot tell which command it runs",
                );
                return;
            }
            i += 1;
            continue;
        }
        if v.len() > 1 && v.starts_with('-') {
            let letters: Vec<char> = v[1..].chars().collect();
            for (k, &c) in letters.iter().enumerate() {
                let rest: String = letters[k + 1..].iter().collect();
                if WITH_VALUE.contains(c) {
                    let value = if rest.is_empty() {
                        i += 1;
                        match words.get(i).map(|n| n.val()) {
                            Some(Some(n)) => n.to_string(),
                            Some(None) => {
                                run_time_args(w, &words[i]);
                                return;
                            }
                            None => {
                                w.opaque_text(&word.text, "option without its value");
                                return;
                            }
                        }
                    } else {
                        rest
                    };
                    if c == 'I' {
                        replace = Some(value);
                    }
                    break;
                }
                if OPTIONAL_VALUE.contains(c) {
                    if c == 'i' {
                        replace = Some(if rest.is_empty() {
                            "{}".to_string()
                        } else {
                            rest
                        });
                    }
                    break;
                }
                if !FLAGS.contains(c) {
                    w.opaque_text(
                        &word.text,
                        "unknown `xargs` option: cannot tell which command it runs",
                    );
                    return;
                }
            }
            i += 1;
            continue;
        }
        break;
    }
    let command = &words[i.min(words.len())..];
    if command.is_empty() {
        return; // runs `echo`
    }
    let mut inner: Vec<Word> = Vec::with_capacity(command.len() + 1);
    for word in command {
        match &replace {
            Some(r) if word.text.contains(r.as_str()) => inner.push(Word::run_time(&word.text)),
            _ => inner.push(word.clone()),
        }
    }
    if replace.is_none() {
        inner.push(Word::appended_arguments());
    }
    w.inner(Vec::new(), inner);
}

/// `find`: `-exec`/`-execdir`/`-ok`/`-okdir` commands are emitted; `-fprint*`/`-fls` files are
/// writes; `-delete` is opaque.
fn find(w: &mut Walker<'_, '_>, words: &[Word]) {
    if let Some(word) = words.iter().find(|word| word.val().is_none()) {
        run_time_args(w, word);
        return;
    }
    let value = |k: usize| words.get(k).and_then(|x| x.val());
    let mut i = 1;
    while i < words.len() {
        match value(i).unwrap_or("") {
            "-exec" | "-execdir" | "-ok" | "-okdir" => {
                let end = (i + 1..words.len()).find(|&j| {
                    value(j) == Some(";") || (value(j) == Some("+") && value(j - 1) == Some("{}"))
                });
                let Some(end) = end else {
                    w.opaque_text(&words[i].text, "`-exec` without its `;` or `+`");
                    return;
                };
                if end == i + 1 {
                    w.opaque_text(&words[i].text, "`-exec` without a command");
                    return;
                }
                w.inner(Vec::new(), words[i + 1..end].to_vec());
                i = end + 1;
            }
            "-delete" => {
                w.opaque_text(&words[i].text, "`find -delete` deletes files");
                i += 1;
            }
            "-fprint" | "-fprint0" | "-fls" | "-fprintf" => {
                let target = words.get(i + 1);
                w.write_file(
                    target.map(|t| t.text.as_str()).unwrap_or(&words[i].text),
                    target.and_then(|t| t.val()),
                );
                i += if value(i) == Some("-fprintf") { 3 } else { 2 };
            }
            _ => i += 1,
        }
    }
}

/// `git`: global `-c`/`--config-env`/`--exec-path=`, and options that make git run a program
/// or write a file of the caller's choice, are opaque. (Hooks and config inside the
/// repository are trusted, as with any rule that allows git.)
fn git(w: &mut Walker<'_, '_>, words: &[Word]) {
    if let Some(word) = words.iter().find(|word| word.val().is_none()) {
        run_time_args(w, word);
        return;
    }
    let v = |k: usize| words.get(k).and_then(|x| x.val()).unwrap_or("");
    let mut i = 1;
    while i < words.len() {
        let a = v(i);
        if !a.starts_with('-') {
            break;
        }
        let name = a.split_once('=').map(|(n, _)| n).unwrap_or(a);
        match name {
            "-c" | "--config-env" => {
                w.opaque_text(
                    &words[i].text,
                    "`git -c` sets configuration that can run commands",
                );
                return;
            }
            "--exec-path" if a.contains('=') => {
                w.opaque_text(
                    &words[i].text,
                    "`git --exec-path=` runs git programs from another directory",
                );
                return;
            }
            "-C" | "--git-dir" | "--work-tree" | "--namespace" | "--super-prefix"
            | "--list-cmds" => {
                if !a.contains('=') {
                    i += 1;
                }
            }
            "-p"
            | "--paginate"
            | "-P"
            | "--no-pager"
            | "--bare"
            | "--no-replace-objects"
            | "--literal-pathspecs"
            | "--glob-pathspecs"
            | "--noglob-pathspecs"
            | "--icase-pathspecs"
            | "--no-optional-locks"
            | "--no-advice"
            | "--version"
            | "-v"
            | "--help"
            | "-h"
            | "--html-path"
            | "--man-path"
            | "--info-path"
            | "--exec-path" => {}
            _ => {
                w.opaque_text(&words[i].text, "unknown global `git` option");
                return;
            }
        }
        i += 1;
    }
    let sub = v(i);
    let args = &words[(i + 1).min(words.len())..];
    let flag = |w: &mut Walker<'_, '_>, word: &Word, reason: &str| {
        w.opaque_text(&word.text, reason.to_string());
    };
    match sub {
        "filter-branch" | "send-email" => {
            if let Some(word) = words.get(i) {
                flag(
                    w,
                    word,
                    "this git command runs commands given in its arguments",
                );
            }
            return;
        }
        "bisect" if args.first().and_then(|a| a.val()) == Some("run") => {
            flag(w, &args[0], "`git bisect run` runs a command");
            return;
        }
        "submodule" if args.iter().any(|a| a.val() == Some("foreach")) => {
            flag(w, &words[i], "`git submodule foreach` runs a command");
            return;
        }
        _ => {}
    }
    for a in args {
        let val = a.val().unwrap_or("");
        let name = val.split_once('=').map(|(n, _)| n).unwrap_or(val);
        let long_block = [
            "--upload-pack",
            "--receive-pack",
            "--exec",
            "--extcmd",
            "--open-files-in-pager",
            "--template",
            "--config",
            "--output",
            "--ext-diff",
            "--textconv",
            "--tool",
        ];
        if long_block.contains(&name) {
            flag(
                w,
                a,
                "git option that runs a program or writes a file of the caller's choice",
            );
            return;
        }
        let short_block: &[&str] = match sub {
            "clone" => &["-c", "-u"],
            "ls-remote" | "fetch-pack" => &["-u"],
            "rebase" | "difftool" | "mergetool" => &["-x"],
            "grep" => &["-O"],
            "diff" | "log" | "show" | "format-patch" => &["-o"],
            _ => &[],
        };
        if short_block
            .iter()
            .any(|s| val.starts_with(s) && !val.starts_with("--"))
        {
            flag(
                w,
                a,
                "git option that runs a program or writes a file of the caller's choice",
            );
            return;
        }
    }
}

/// awk: `-f FILE` and gawk's extension loading are opaque; the program text may not call
/// `system()`, pipe to or from commands, or redirect `print` into files (unless `--sandbox`).
fn awk(w: &mut Walker<'_, '_>, words: &[Word]) {
    let mut programs: Vec<String> = Vec::new();
    let mut sandbox = false;
    let mut i = 1;
    while i < words.len() {
        let word = &words[i];
        let Some(v) = word.val() else {
            run_time_args(w, word);
            return;
        };
        if v == "--" {
            i += 1;
            break;
        }
        if !v.starts_with('-') || v == "-" {
            break;
        }
        let name = v.split_once('=').map(|(n, _)| n).unwrap_or(v);
        match name {
            "-f" | "--file" | "-E" | "--exec" | "-l" | "--load" | "-i" | "--include" => {
                w.opaque_text(&word.text, "awk program or extension loaded from a file");
                return;
            }
            "--sandbox" | "-S" => sandbox = true,
            "-F" | "-v" | "--field-separator" | "--assign" => {
                if v == name && !v.starts_with("--") || v.starts_with("--") && !v.contains('=') {
                    i += 1;
                }
            }
            "-e" | "--source" => {
                i += 1;
                match words.get(i).map(|n| n.val()) {
                    Some(Some(p)) => programs.push(p.to_string()),
                    Some(None) => {
                        run_time_args(w, &words[i]);
                        return;
                    }
                    None => return,
                }
            }
            "--posix"
            | "--traditional"
            | "--lint"
            | "--characters-as-bytes"
            | "-b"
            | "-c"
            | "-P"
            | "-r"
            | "--re-interval"
            | "--csv"
            | "-N"
            | "--use-lc-numeric"
            | "--version"
            | "--help"
            | "-W" => {}
            _ if v.starts_with("-F") || v.starts_with("-v") => {}
            _ => {
                w.opaque_text(&word.text, "unknown awk option");
                return;
            }
        }
        i += 1;
    }
    if programs.is_empty() {
        match words.get(i) {
            Some(word) => match word.val() {
                Some(p) => programs.push(p.to_string()),
                None => {
                    run_time_args(w, word);
                    return;
                }
            },
            None => return,
        }
    }
    if sandbox {
        return;
    }
    for p in &programs {
        if awk_program_risky(p) {
            w.opaque_text(
                p,
                "awk program that runs commands or writes files (system, pipes, print >)",
            );
            return;
        }
    }
}

/// Whether an awk program may run a command, write a file or open a socket: `system`,
/// `@load`/`@include`, gawk's `/inet/…` files,
/// `… | getline`, or a `print`/`printf` statement with `>` or `|` outside strings.
fn awk_program_risky(p: &str) -> bool {
    if ["system", "@load", "@include", "/inet"]
        .iter()
        .any(|k| p.contains(k))
    {
        return true;
    }
    let b = p.as_bytes();
    // `"cmd" | getline` / `"cmd" |& getline`.
    for (i, &c) in b.iter().enumerate() {
        if c == b'|' {
            let rest = p[i + 1..].trim_start_matches('&').trim_start();
            if rest.starts_with("getline") {
                return true;
            }
        }
    }
    let mut search = 0;
    while let Some(pos) = p[search..].find("print") {
        let start = search + pos + "print".len();
        let mut in_string = false;
        let mut escaped = false;
        for &c in &b[start..] {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'>' | b'|' => return true,
                b';' | b'}' | b'\n' => break,
                _ => {}
            }
        }
        search = start;
    }
    false
}

/// sed: `-f FILE` is opaque; scripts may not use `e`, `w`/`W` or the `e`/`w` flags of `s`
/// (unless `--sandbox`). In-place editing (`-i`) stays visible in the param.
fn sed_command(w: &mut Walker<'_, '_>, words: &[Word]) {
    let mut scripts: Vec<String> = Vec::new();
    let mut sandbox = false;
    let mut i = 1;
    let mut script_given = false;
    while i < words.len() {
        let word = &words[i];
        let Some(v) = word.val() else {
            // Even a file name computed at run time may turn out to be an option (`-e…`).
            run_time_args(w, word);
            return;
        };
        if v == "--" {
            break;
        }
        if let Some(long) = v.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, val)) => (n, Some(val)),
                None => (long, None),
            };
            match name {
                "expression" => {
                    let s = match value {
                        Some(s) => Some(s.to_string()),
                        None => {
                            i += 1;
                            words.get(i).and_then(|n| n.val()).map(str::to_string)
                        }
                    };
                    match s {
                        Some(s) => scripts.push(s),
                        None => {
                            w.opaque_text(&word.text, "sed script computed at run time");
                            return;
                        }
                    }
                    script_given = true;
                }
                "file" => {
                    w.opaque_text(&word.text, "sed script read from a file");
                    return;
                }
                "sandbox" => sandbox = true,
                "line-length" if value.is_none() => i += 1,
                "quiet" | "silent" | "regexp-extended" | "separate" | "unbuffered"
                | "null-data" | "posix" | "debug" | "binary" | "follow-symlinks" | "in-place"
                | "line-length" | "help" | "version" => {}
                _ => {
                    w.opaque_text(&word.text, "unknown sed option");
                    return;
                }
            }
            i += 1;
            continue;
        }
        if v.len() > 1 && v.starts_with('-') {
            let letters: Vec<char> = v[1..].chars().collect();
            for (k, &c) in letters.iter().enumerate() {
                let rest: String = letters[k + 1..].iter().collect();
                match c {
                    'n' | 'E' | 'r' | 's' | 'u' | 'z' | 'b' => {}
                    'i' => break,
                    'l' => {
                        if rest.is_empty() {
                            i += 1;
                        }
                        break;
                    }
                    'e' => {
                        let s = if rest.is_empty() {
                            i += 1;
                            words.get(i).and_then(|n| n.val()).map(str::to_string)
                        } else {
                            Some(rest)
                        };
                        match s {
                            Some(s) => scripts.push(s),
                            None => {
                                w.opaque_text(&word.text, "sed script computed at run time");
                                return;
                            }
                        }
                        script_given = true;
                        break;
                    }
                    'f' => {
                        w.opaque_text(&word.text, "sed script read from a file");
                        return;
                    }
                    _ => {
                        w.opaque_text(&word.text, "unknown sed option");
                        return;
                    }
                }
            }
            i += 1;
            continue;
        }
        if !script_given {
            scripts.push(v.to_string());
            script_given = true;
        }
        i += 1;
    }
    if sandbox {
        return;
    }
    for s in &scripts {
        if let Err(reason) = sed::check_script(s) {
            w.opaque_text(s, reason);
            return;
        }
    }
}

/// Script interpreters: a rule can approve them only when they run a named script file (or
/// `python -m module`), or print `--version`/`--help`. Inline code (`-c`, `-e`, …), any
/// option in front of the script, and code from stdin are opaque.
fn interpreter(w: &mut Walker<'_, '_>, base: &str, inv: &Invocation) {
    let words = &inv.words;
    let Some(first) = words.get(1) else {
        opaque(w, inv, "the interpreter reads its program from stdin");
        return;
    };
    let Some(v) = first.val() else {
        run_time_args(w, first);
        return;
    };
    if (v == "--version" || v == "--help") && words.len() == 2 {
        return;
    }
    if v == "-m" && base.starts_with("py") {
        match words.get(2).and_then(|m| m.val()) {
            Some(m) if !m.starts_with('-') => return,
            _ => {
                opaque(w, inv, "interpreter options are not analysed");
                return;
            }
        }
    }
    if v.starts_with('-') || v.is_empty() {
        opaque(
            w,
            inv,
            "the interpreter runs inline code or takes options this check does not analyse",
        );
    } else if reads_stdin_or_device(v) {
        opaque(
            w,
            inv,
            "the interpreter reads its program from stdin or a device",
        );
    }
}

/// `/dev/stdin`, `/dev/fd/0`, `/proc/self/fd/0`, …: a "script file" that is really a stream.
fn reads_stdin_or_device(path: &str) -> bool {
    path.starts_with("/dev/") || path.starts_with("/proc/")
}

fn is_interpreter(base: &str) -> bool {
    const EXACT: &[&str] = &[
        "python",
        "pypy",
        "pypy3",
        "perl",
        "ruby",
        "irb",
        "node",
        "nodejs",
        "php",
        "lua",
        "luajit",
        "Rscript",
        "R",
        "julia",
        "tclsh",
        "wish",
        "osascript",
        "pwsh",
        "powershell",
        "jshell",
        "groovy",
        "expect",
        "guile",
        "racket",
        "ocaml",
        "swift",
        "elixir",
        "iex",
        "erl",
        "escript",
        "scala",
        "kotlin",
        "jrunscript",
        "gdb",
    ];
    if EXACT.contains(&base) {
        return true;
    }
    // `python3.12`, `python3-dbg`, `perl5.36`, `ruby3.2`, `php8.2`, `lua5.4`, `node-22`…
    [
        "python", "pypy", "perl", "ruby", "php", "lua", "tclsh", "node", "jruby", "jython",
    ]
    .iter()
    .any(|p| {
        base.strip_prefix(p).is_some_and(|rest| {
            rest.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '_')
        })
    })
}

/// Programs with an option that runs another program or a hook; those options are opaque.
fn blocked_options(w: &mut Walker<'_, '_>, base: &str, inv: &Invocation) {
    let (long, short): (&[&str], &str) = match base {
        "rg" => (&["--pre"], ""),
        "vim" | "vi" | "nvim" | "ex" | "view" | "vimdiff" | "gvim" => {
            let runs = inv.words[1..].iter().any(|a| match a.val() {
                Some(v) => {
                    v.starts_with('+')
                        || v == "--cmd"
                        || (v.starts_with('-')
                            && !v.starts_with("--")
                            && v[1..].contains(['c', 'S', 's']))
                }
                None => true,
            });
            if runs {
                w.opaque_text(&inv.text, format!("`{base}` told to run editor commands"));
            }
            return;
        }
        "emacs" | "emacsclient" => (
            &[
                "--eval",
                "-eval",
                "--load",
                "-l",
                "--funcall",
                "-f",
                "--batch",
                "-batch",
                "--script",
                "-x",
                "-e",
            ],
            "",
        ),
        "fd" | "fdfind" => (&["--exec", "--exec-batch"], "xX"),
        "tar" | "gtar" | "bsdtar" => (
            &[
                "--to-command",
                "--use-compress-program",
                "--checkpoint-action",
                "--info-script",
                "--new-volume-script",
                "--rsh-command",
                "--rmt-command",
            ],
            "IF",
        ),
        "rsync" => (&["--rsh", "--rsync-path"], "e"),
        "sort" => (&["--compress-program"], ""),
        "split" => (&["--filter"], ""),
        "zip" => (&["--unzip-command", "-TT"], ""),
        "man" => (&["--pager", "--html"], "PH"),
        "scp" | "sftp" => (&[], "SF"),
        _ => return,
    };
    let words = &inv.words;
    for (idx, a) in words.iter().enumerate().skip(1) {
        let Some(v) = a.val() else {
            if !long.is_empty() || !short.is_empty() {
                run_time_args(w, a);
                return;
            }
            continue;
        };
        let name = v.split_once('=').map(|(n, _)| n).unwrap_or(v);
        let lower = v.to_ascii_lowercase();
        let ssh_like = matches!(base, "scp" | "sftp" | "rsync")
            && ["proxycommand", "localcommand", "knownhostscommand"]
                .iter()
                .any(|k| lower.contains(k));
        let old_style_tar = idx == 1 && base.contains("tar") && !v.starts_with('-');
        let short_hit = (!v.starts_with("--") && v.starts_with('-') || old_style_tar)
            && v.trim_start_matches('-').chars().any(|c| short.contains(c));
        if long.contains(&name) || short_hit || ssh_like {
            w.opaque_text(
                &a.text,
                format!("`{base}` option that runs another program"),
            );
            return;
        }
    }
}
