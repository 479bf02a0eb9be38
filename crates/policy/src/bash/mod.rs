//! Splits a bash command line into the strings a rule must approve, with tree-sitter-bash.
//!
//! The baseline is the 0.5.x splitter: every simple command of a list, pipeline, subshell,
//! group, loop, `if`/`case` body or function body becomes one param (its source text). On top of
//! that this splitter closes the ways a permissive rule (`echo .*`, `find .*`, `sudo ls.*`) could
//! approve more than it says:
//!
//! - file-writing redirections add a param `> TARGET` ([`WRITE_PREFIX`]), so a rule for the
//!   command alone does not approve writing a file;
//! - wrappers (`sudo`, `env`, `timeout`, `xargs`, `find -exec`, …) add the command they run as a
//!   param of its own; `bash -c '…'`, `eval`, `watch` and `ssh host …` re-parse their literal
//!   command string;
//! - constructs whose effect cannot be read from the text — command and process substitution,
//!   `source`, `trap`, inline interpreter code, obfuscated command names, arithmetic on
//!   variables, unparseable input, … — are reported as [`Opaque`]; a call with any of them is
//!   never approved by a `params` rule (only by a rule without `params`, or by an owner).
//!
//! Layout: this file walks statements and redirections; `word` turns nodes into `Word`s;
//! `programs` knows individual programs (wrappers, shells, interpreters, find, git, awk, sed);
//! `sed` checks sed scripts. `docs/permissions.md` describes the semantics for users.

mod programs;
mod sed;
mod word;

use std::cell::RefCell;

use tree_sitter::{Node, Parser, Tree};

use word::{node_text, plain_command_name, static_value, Word};

/// The prefix of the param added for a redirection that writes a file: `> /path`.
pub const WRITE_PREFIX: &str = "> ";

/// How deeply command strings (`bash -c`, `eval`, `ssh`) may nest before the call is opaque.
const MAX_REPARSE_DEPTH: u32 = 4;
/// How deeply statements and wrappers may nest before the call is opaque.
const MAX_NESTING: u32 = 64;
/// Most opaque constructs reported for one call.
const MAX_OPAQUE: usize = 16;
/// Deepest syntax tree walked (the walk is recursive); deeper input is opaque.
const MAX_TREE_DEPTH: usize = 256;
/// Longest snippet quoted in an [`Opaque`].
const SNIPPET_CHARS: usize = 80;

/// What the splitter found in one command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BashAnalysis {
    /// The strings rules are matched against, in source order; never empty.
    pub params: Vec<String>,
    /// Constructs whose effect cannot be judged from the text. If any is present, no `params`
    /// rule can approve the call.
    pub opaque: Vec<Opaque>,
}

/// A construct that makes a command line impossible to approve by matching its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opaque {
    /// The piece of the command line it is about (shortened to 80 characters).
    pub snippet: String,
    /// Why it cannot be approved by a rule, in a few words.
    pub reason: String,
}

/// Splits `command` into the params rules must approve and the constructs no params rule may
/// approve. Pure and deterministic; a few tens of microseconds for a typical command.
pub fn split_bash(command: &str) -> BashAnalysis {
    let mut sink = Sink::default();
    analyze_source(command, 0, &mut sink);
    if sink.params.is_empty() {
        sink.params.push(command.to_string());
    }
    BashAnalysis {
        params: sink.params,
        opaque: sink.opaque,
    }
}

#[derive(Default)]
struct Sink {
    params: Vec<String>,
    opaque: Vec<Opaque>,
}

impl Sink {
    fn opaque(&mut self, snippet: &str, reason: impl Into<String>) {
        if self.opaque.len() >= MAX_OPAQUE {
            return; // one is enough to decide; the rest would only bloat the explanation
        }
        let reason = reason.into();
        let snippet = shorten(snippet);
        if !self
            .opaque
            .iter()
            .any(|o| o.snippet == snippet && o.reason == reason)
        {
            self.opaque.push(Opaque { snippet, reason });
        }
    }
}

fn shorten(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= SNIPPET_CHARS {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(SNIPPET_CHARS - 1).collect();
        out.push('…');
        out
    }
}

thread_local! {
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

/// Parses with a per-thread parser (creating one costs more than parsing a short command).
fn parse(src: &str) -> Option<Tree> {
    PARSER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut parser = Parser::new();
            parser
                .set_language(&tree_sitter_bash::LANGUAGE.into())
                .ok()?;
            *slot = Some(parser);
        }
        slot.as_mut()?.parse(src, None)
    })
}

/// Parses and walks one piece of shell source (the call's command, or a re-parsed string).
fn analyze_source(src: &str, depth: u32, sink: &mut Sink) {
    if depth > MAX_REPARSE_DEPTH {
        sink.opaque(src, "command strings nested too deeply");
        return;
    }
    if let Some(reason) = lexical_trap(src) {
        sink.opaque(src, reason);
    }
    let Some(tree) = parse(src) else {
        sink.opaque(src, "the command could not be parsed");
        return;
    };
    let root = tree.root_node();
    if root.has_error() {
        sink.opaque(src, "not a complete, valid bash command");
        return;
    }
    if tree_depth_exceeds(&tree, MAX_TREE_DEPTH) {
        sink.opaque(src, "nested too deeply to check");
        return;
    }
    let before = sink.opaque.len();
    let mut walker = Walker {
        src,
        sink,
        depth,
        nesting: 0,
    };
    walker.statement(root);
    // The net only matters when the walk found nothing (it never makes a call approvable).
    if sink.opaque.len() == before {
        text_net(root, src, sink);
    }
}

/// Whether any node lies deeper than `limit` (walked without recursion).
fn tree_depth_exceeds(tree: &Tree, limit: usize) -> bool {
    let mut cursor = tree.walk();
    let mut depth = 0usize;
    loop {
        if cursor.goto_first_child() {
            depth += 1;
            if depth > limit {
                return true;
            }
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return false;
            }
            depth -= 1;
        }
    }
}

/// Checks tree-sitter cannot be trusted with: control characters, and a line continuation that
/// joins two pieces into one word (tree-sitter splits `-ex\⏎ec` where bash reads `-exec`).
fn lexical_trap(src: &str) -> Option<&'static str> {
    if src
        .chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{2028}' || c == '\u{2029}')
    {
        return Some("control characters in the command");
    }
    let bytes = src.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'\n' || i == 0 {
            continue;
        }
        let mut j = i;
        while j > 0 && bytes[j - 1] == b'\\' {
            j -= 1;
        }
        let backslashes = i - j;
        if backslashes % 2 == 1 {
            let before = if j > 0 { Some(bytes[j - 1]) } else { None };
            let after = bytes.get(i + 1).copied();
            let joins = |c: Option<u8>| c.is_some_and(|c| !c.is_ascii_whitespace());
            if joins(before) && joins(after) {
                return Some("a line continuation inside a word");
            }
        }
    }
    None
}

/// A safety net under the tree walk: any `` ` ``, `$(`, `<(` or `>(` outside single quotes,
/// comments and quoted heredoc bodies makes the call opaque, even where tree-sitter did not
/// produce a substitution node (it does not for backticks in heredoc bodies). `$((` is allowed
/// only where tree-sitter saw an arithmetic expansion.
fn text_net(root: Node<'_>, src: &str, sink: &mut Sink) {
    let mut inert: Vec<(usize, usize)> = Vec::new();
    let mut arithmetic_starts: Vec<usize> = Vec::new();
    collect_inert(root, src, &mut inert, &mut arithmetic_starts);
    inert.sort_unstable();
    arithmetic_starts.sort_unstable();
    let bytes = src.as_bytes();
    // The ranges never overlap (collect_inert does not look inside one), so only the last
    // range starting at or before `i` can cover it.
    let in_inert = |i: usize| {
        let upto = inert.partition_point(|&(s, _)| s <= i);
        upto > 0 && i < inert[upto - 1].1
    };
    let escaped = |i: usize| {
        let mut n = 0;
        let mut j = i;
        while j > 0 && bytes[j - 1] == b'\\' {
            n += 1;
            j -= 1;
        }
        n % 2 == 1
    };
    for i in 0..bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let hit = match (b, next) {
            (b'`', _) => Some("command substitution"),
            (b'$', Some(b'(')) => {
                if bytes.get(i + 2) == Some(&b'(') && arithmetic_starts.binary_search(&i).is_ok() {
                    None
                } else {
                    Some("command substitution")
                }
            }
            (b'<' | b'>', Some(b'(')) => Some("process substitution"),
            _ => None,
        };
        if let Some(what) = hit {
            if !in_inert(i) && !escaped(i) {
                let end = (i + 40).min(src.len());
                let end = (end..=src.len())
                    .find(|&e| src.is_char_boundary(e))
                    .unwrap_or(src.len());
                sink.opaque(
                    &src[i..end],
                    format!("{what}: its output is only known when it runs"),
                );
                return;
            }
        }
    }
}

fn collect_inert(
    node: Node<'_>,
    src: &str,
    inert: &mut Vec<(usize, usize)>,
    arith: &mut Vec<usize>,
) {
    match node.kind() {
        "raw_string" | "comment" | "ansi_c_string" => {
            inert.push((node.start_byte(), node.end_byte()));
            return;
        }
        "arithmetic_expansion" => arith.push(node.start_byte()),
        "heredoc_redirect" if heredoc_is_quoted(node, src) => {
            let mut cursor = node.walk();
            for child in node.children(&mut cursor) {
                if child.kind() == "heredoc_body" {
                    inert.push((child.start_byte(), child.end_byte()));
                } else {
                    collect_inert(child, src, inert, arith);
                }
            }
            return;
        }
        _ => {}
    }
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        collect_inert(child, src, inert, arith);
    }
}

/// A heredoc whose delimiter is quoted in any way has a literal body (no expansions).
fn heredoc_is_quoted(redirect: Node<'_>, src: &str) -> bool {
    let mut cursor = redirect.walk();
    let quoted = redirect
        .children(&mut cursor)
        .find(|c| c.kind() == "heredoc_start")
        .map(|start| {
            let t = node_text(start, src);
            t.contains('\'') || t.contains('"') || t.contains('\\')
        })
        .unwrap_or(false);
    quoted
}

/// One simple command about to be judged: its words and the param text it is shown as.
pub(crate) struct Invocation {
    /// Assignments in front of the command name (`FOO=bar ls`), as words.
    pub assignments: Vec<Word>,
    /// Command name and arguments.
    pub words: Vec<Word>,
    /// The param string emitted for it.
    pub text: String,
}

impl Invocation {
    /// An invocation made of words alone; the text is the words joined by spaces.
    pub(crate) fn from_words(assignments: Vec<Word>, words: Vec<Word>) -> Invocation {
        let text = assignments
            .iter()
            .chain(words.iter())
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Invocation {
            assignments,
            words,
            text,
        }
    }
}

/// Variables whose value changes how later programs find code or run it. Setting one makes
/// the call opaque: a rule written for the command cannot know what it loads.
const DANGEROUS_VARIABLES: &[&str] = &[
    "PATH",
    "IFS",
    "BASH_ENV",
    "ENV",
    "PROMPT_COMMAND",
    "PS0",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "SHELLOPTS",
    "BASHOPTS",
    "CDPATH",
    "GLOBIGNORE",
    "HOME",
    "XDG_CONFIG_HOME",
    "SHELL",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "MANPAGER",
    "BROWSER",
    "LESSOPEN",
    "LESSCLOSE",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PYTHONHOME",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "RUSTC_WRAPPER",
    "RUSTC",
    "CC",
    "CXX",
    "MAKEFLAGS",
];
const DANGEROUS_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "GIT_",
    "BASH_FUNC_",
    "npm_config_",
    "NPM_CONFIG_",
    "CARGO_",
];

pub(crate) fn dangerous_variable(name: &str) -> bool {
    DANGEROUS_VARIABLES.contains(&name) || DANGEROUS_PREFIXES.iter().any(|p| name.starts_with(p))
}

struct Walker<'s, 'k> {
    src: &'s str,
    sink: &'k mut Sink,
    depth: u32,
    nesting: u32,
}

/// Heredoc details a simple command needs: words written after the delimiter belong to it.
struct HeredocParts<'t> {
    extra_words: Vec<Node<'t>>,
    piece: String,
    continuation: Vec<Node<'t>>,
}

impl<'s, 'k> Walker<'s, 'k> {
    fn text(&self, node: Node<'_>) -> &'s str {
        node_text(node, self.src)
    }

    fn opaque(&mut self, node: Node<'_>, reason: impl Into<String>) {
        let text = node_text(node, self.src);
        self.sink.opaque(text, reason);
    }

    fn param(&mut self, text: String) {
        self.sink.params.push(text);
    }

    /// Any statement-level node.
    fn statement(&mut self, node: Node<'_>) {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            self.opaque(node, "nested too deeply to check");
            self.nesting -= 1;
            return;
        }
        match node.kind() {
            "program" | "list" | "pipeline" | "subshell" | "do_group" | "else_clause"
            | "elif_clause" | "if_statement" | "while_statement" | "negated_command" => {
                self.children_statements(node)
            }
            "compound_statement" => {
                if node.child(0).map(|c| c.kind()) == Some("((") {
                    self.check_arithmetic(node);
                } else {
                    self.children_statements(node);
                }
            }
            "comment" => {}
            "command" => self.simple_command(node, &[], None),
            "redirected_statement" => self.redirected(node),
            "variable_assignment" | "variable_assignments" => {
                self.check_expansions(node);
                self.check_assignment_names(node);
                self.param(self.text(node).to_string());
            }
            "declaration_command" => self.declaration(node),
            "unset_command" => {
                self.check_expansions(node);
                let mut cursor = node.walk();
                let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
                for child in children {
                    self.check_name_argument(child);
                }
                self.param(self.text(node).to_string());
            }
            "test_command" => self.test_command(node),
            "function_definition" => {
                let mut cursor = node.walk();
                let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
                for child in children {
                    match child.kind() {
                        "word" => {}
                        "file_redirect" => {
                            let extra = self.redirect(child);
                            if !extra.is_empty() {
                                self.opaque(child, "words after a redirection target");
                            }
                        }
                        "herestring_redirect" => self.check_expansions(child),
                        _ => self.statement(child),
                    }
                }
            }
            "for_statement" => {
                let mut cursor = node.walk();
                let children: Vec<(Option<&str>, Node<'_>)> = node
                    .children(&mut cursor)
                    .enumerate()
                    .map(|(i, c)| (node.field_name_for_child(i as u32), c))
                    .collect();
                for (field, child) in children {
                    match field {
                        Some("body") => self.statement(child),
                        Some("value") => self.check_expansions(child),
                        Some("variable") => {
                            let name = self.text(child);
                            if dangerous_variable(name) {
                                let reason = format!(
                                    "sets {name}, which changes what later programs load or run"
                                );
                                self.opaque(child, reason);
                            }
                        }
                        _ => {}
                    }
                }
            }
            "c_style_for_statement" => {
                self.opaque(
                    node,
                    "arithmetic on variables (bash evaluates code hidden in their values)",
                );
            }
            "case_statement" => {
                let mut cursor = node.walk();
                let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
                for child in children {
                    if child.kind() == "case_item" {
                        self.case_item(child);
                    } else {
                        self.check_expansions(child);
                    }
                }
            }
            other => {
                let reason = format!("shell construct `{other}` is not analysed");
                self.opaque(node, reason);
            }
        }
        self.nesting -= 1;
    }

    fn children_statements(&mut self, node: Node<'_>) {
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        for child in children {
            self.statement(child);
        }
    }

    fn case_item(&mut self, node: Node<'_>) {
        let mut cursor = node.walk();
        let children: Vec<(Option<&str>, Node<'_>)> = node
            .children(&mut cursor)
            .enumerate()
            .map(|(i, c)| (node.field_name_for_child(i as u32), c))
            .collect();
        for (field, child) in children {
            if !child.is_named() {
                continue;
            }
            if field == Some("value") {
                self.check_expansions(child);
            } else {
                self.statement(child);
            }
        }
    }

    /// `redirected_statement`: a body plus redirections (and heredocs, whose continuation
    /// `| sh` / `&& rm x` tree-sitter hangs under the heredoc node).
    fn redirected(&mut self, node: Node<'_>) {
        let mut body: Option<Node<'_>> = None;
        let mut extra_words: Vec<Node<'_>> = Vec::new();
        let mut heredoc: Option<HeredocParts<'_>> = None;
        let mut later: Vec<Node<'_>> = Vec::new();
        let mut heredoc_count = 0;
        let mut cursor = node.walk();
        let children: Vec<(Option<&str>, Node<'_>)> = node
            .children(&mut cursor)
            .enumerate()
            .map(|(i, c)| (node.field_name_for_child(i as u32), c))
            .collect();
        // Redirections are checked first but their params listed after the body's.
        let mark = self.sink.params.len();
        for (field, child) in &children {
            if field == &Some("body") {
                body = Some(*child);
                continue;
            }
            match child.kind() {
                "file_redirect" => extra_words.extend(self.redirect(*child)),
                "herestring_redirect" => self.check_expansions(*child),
                "heredoc_redirect" => {
                    heredoc_count += 1;
                    let parts = self.heredoc(*child);
                    extra_words.extend(parts.extra_words.iter().copied());
                    later.extend(parts.continuation.iter().copied());
                    match &mut heredoc {
                        None => heredoc = Some(parts),
                        Some(h) => {
                            h.piece.push(' ');
                            h.piece.push_str(&parts.piece);
                        }
                    }
                }
                "comment" => {}
                _ if child.is_named() => {
                    let reason = format!("redirection `{}` is not analysed", child.kind());
                    self.opaque(*child, reason);
                }
                _ => {}
            }
        }
        let redirect_params = self.sink.params.split_off(mark);
        match body {
            Some(b) if b.kind() == "command" => {
                // The 0.5.x text for `python3 << 'EOF' … EOF`: the statement as written.
                let simple_heredoc = heredoc_count == 1
                    && extra_words.is_empty()
                    && later.is_empty()
                    && children.len() == 2;
                let piece = heredoc.as_ref().map(|h| {
                    if simple_heredoc {
                        HeredocText::Whole(self.text(node).to_string())
                    } else {
                        HeredocText::Append(h.piece.clone())
                    }
                });
                self.simple_command(b, &extra_words, piece);
            }
            Some(b) => {
                if !extra_words.is_empty() {
                    self.opaque(node, "words after a redirection target");
                }
                self.statement(b);
            }
            None => {
                if !extra_words.is_empty() {
                    self.opaque(node, "words after a redirection target");
                }
            }
        }
        self.sink.params.extend(redirect_params);
        for n in later {
            self.statement(n);
        }
    }

    /// Checks a heredoc: its body (when expanded), its own redirections, and returns the
    /// words and continuation statements that belong elsewhere.
    fn heredoc<'t>(&mut self, node: Node<'t>) -> HeredocParts<'t> {
        let quoted = heredoc_is_quoted(node, self.src);
        let mut parts = HeredocParts {
            extra_words: Vec::new(),
            piece: String::new(),
            continuation: Vec::new(),
        };
        let mut head_end = node.start_byte();
        let mut body_range: Option<(usize, usize)> = None;
        let mut cursor = node.walk();
        let children: Vec<(Option<&str>, Node<'t>)> = node
            .children(&mut cursor)
            .enumerate()
            .map(|(i, c)| (node.field_name_for_child(i as u32), c))
            .collect();
        for (field, child) in children {
            match (field, child.kind()) {
                (_, "heredoc_start") => head_end = child.end_byte(),
                (_, "heredoc_body") => {
                    if !quoted {
                        self.check_expansions(child);
                    }
                    body_range = Some((child.start_byte(), child.end_byte()));
                }
                (_, "heredoc_end") => {
                    let start = body_range.map(|r| r.0).unwrap_or(child.start_byte());
                    body_range = Some((start, child.end_byte()));
                }
                (Some("argument"), _) => {
                    self.check_expansions(child);
                    parts.extra_words.push(child);
                }
                (Some("redirect"), "file_redirect") => {
                    let extra = self.redirect(child);
                    parts.extra_words.extend(extra);
                }
                (Some("redirect"), _) => self.check_expansions(child),
                (Some("right"), _) => parts.continuation.push(child),
                (_, "pipeline") => parts.continuation.push(child),
                (Some("descriptor"), _) | (Some("operator"), _) => {}
                _ if !child.is_named() => {}
                _ => {
                    let reason = format!("heredoc part `{}` is not analysed", child.kind());
                    self.opaque(child, reason);
                }
            }
        }
        let head = self.src.get(node.start_byte()..head_end).unwrap_or("");
        let body = body_range
            .and_then(|(s, e)| self.src.get(s..e))
            .unwrap_or("");
        parts.piece = format!("{head}\n{body}");
        parts
    }

    /// A `file_redirect`: writes become `> TARGET` params, reads and fd duplications are
    /// harmless, `/dev/tcp` and computed targets are opaque. Returns the extra words tree-sitter
    /// put after the target (bash passes them to the command as arguments).
    fn redirect<'t>(&mut self, node: Node<'t>) -> Vec<Node<'t>> {
        let mut op = "";
        let mut destinations: Vec<Node<'t>> = Vec::new();
        let mut cursor = node.walk();
        let children: Vec<(Option<&str>, Node<'t>)> = node
            .children(&mut cursor)
            .enumerate()
            .map(|(i, c)| (node.field_name_for_child(i as u32), c))
            .collect();
        for (field, child) in children {
            match field {
                Some("destination") => destinations.push(child),
                Some("descriptor") => {}
                _ if !child.is_named() => op = child.kind(),
                _ => {}
            }
        }
        let mut rest = destinations.into_iter();
        let Some(target) = rest.next() else {
            return Vec::new(); // `>&-` / `<&-`: closing a descriptor.
        };
        let extra: Vec<Node<'t>> = rest.collect();
        self.check_expansions(target);
        let value = static_value(target, self.src);
        let is_fd = |v: &Option<String>| {
            v.as_deref().is_some_and(|v| {
                v == "-" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            })
        };
        let network = value
            .as_deref()
            .is_some_and(|v| v.starts_with("/dev/tcp/") || v.starts_with("/dev/udp/"));
        if network {
            self.opaque(node, "opens a network connection (/dev/tcp, /dev/udp)");
            return extra;
        }
        match op {
            "<" => {}
            "<&" | ">&" if is_fd(&value) => {}
            "<&" => {}
            ">" | ">>" | ">|" | "&>" | "&>>" | ">&" => self.write_target(node, value),
            other => {
                let reason = format!("redirection `{other}` is not analysed");
                self.opaque(node, reason);
            }
        }
        extra
    }

    /// Emits the `> TARGET` param for a file a command writes (or makes the call opaque).
    fn write_target(&mut self, node: Node<'_>, value: Option<String>) {
        match write_param(value.as_deref()) {
            Ok(Some(p)) => self.param(p),
            Ok(None) => {}
            Err(reason) => self.opaque(node, reason),
        }
    }

    /// A `command` node (possibly with words and a heredoc from its redirected statement).
    fn simple_command(&mut self, node: Node<'_>, extra: &[Node<'_>], heredoc: Option<HeredocText>) {
        let mut assignments: Vec<Word> = Vec::new();
        let mut words: Vec<Word> = Vec::new();
        let mut pieces: Vec<Node<'_>> = Vec::new();
        let mut interleaved_redirect = false;
        let mark = self.sink.params.len();
        let mut cursor = node.walk();
        let children: Vec<(Option<&str>, Node<'_>)> = node
            .children(&mut cursor)
            .enumerate()
            .map(|(i, c)| (node.field_name_for_child(i as u32), c))
            .collect();
        for (field, child) in children {
            match (field, child.kind()) {
                (_, "variable_assignment") => {
                    self.check_expansions(child);
                    self.check_assignment_names(child);
                    assignments.push(Word::from_node(child, self.src));
                    pieces.push(child);
                }
                (Some("redirect"), "file_redirect") => {
                    let extra_here = self.redirect(child);
                    for e in extra_here {
                        self.check_expansions(e);
                        words.push(Word::from_node(e, self.src));
                    }
                    if !pieces.is_empty() {
                        interleaved_redirect = true;
                    }
                }
                (Some("redirect"), "herestring_redirect") => {
                    self.check_expansions(child);
                    pieces.push(child);
                }
                (Some("name"), _) => {
                    self.check_expansions(child);
                    let inner = child.named_child(0).unwrap_or(child);
                    words.push(Word::from_node(inner, self.src));
                    pieces.push(child);
                }
                (Some("argument"), _) => {
                    self.check_expansions(child);
                    words.push(Word::from_node(child, self.src));
                    pieces.push(child);
                }
                (_, "subshell") => {
                    self.opaque(child, "a subshell written as a command argument");
                }
                _ if !child.is_named() => {}
                _ => {
                    let reason = format!("command part `{}` is not analysed", child.kind());
                    self.opaque(child, reason);
                }
            }
        }
        for e in extra {
            self.check_expansions(*e);
            words.push(Word::from_node(*e, self.src));
        }
        // The param text: the command as written, minus redirections.
        let contiguous = !interleaved_redirect && extra.is_empty();
        let mut text = match (pieces.first(), pieces.last()) {
            (Some(first), Some(last)) if contiguous => self
                .src
                .get(first.start_byte()..last.end_byte())
                .unwrap_or("")
                .to_string(),
            _ => {
                let mut parts: Vec<&str> = pieces.iter().map(|p| self.text(*p)).collect();
                parts.extend(extra.iter().map(|e| self.text(*e)));
                parts.join(" ")
            }
        };
        match heredoc {
            Some(HeredocText::Whole(t)) => text = t,
            Some(HeredocText::Append(piece)) => {
                text.push(' ');
                text.push_str(&piece);
            }
            None => {}
        }
        let redirect_params = self.sink.params.split_off(mark);
        if words.is_empty() {
            self.param(text);
        } else {
            let inv = Invocation {
                assignments,
                words,
                text,
            };
            self.invocation(inv);
        }
        self.sink.params.extend(redirect_params);
    }

    /// Emits an invocation's param and lets the program analyzers look at its words.
    fn invocation(&mut self, inv: Invocation) {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            self.sink.opaque(&inv.text, "nested too deeply to check");
            self.nesting -= 1;
            return;
        }
        self.param(inv.text.clone());
        for a in &inv.assignments {
            let written = a.value.as_deref().unwrap_or(&a.text);
            if let Some((name, _)) = written.split_once('=') {
                let name = name.trim_end_matches('+');
                if dangerous_variable(name) {
                    let reason =
                        format!("sets {name}, which changes what later programs load or run");
                    self.sink.opaque(&a.text, reason);
                }
            }
        }
        let name_word = &inv.words[0];
        let name = match (&name_word.value, name_word.bare) {
            (Some(v), true) if plain_command_name(v) => v.clone(),
            _ => {
                self.sink.opaque(
                    &name_word.text,
                    "the command name is quoted, escaped, a path through `..`, or computed at run time",
                );
                self.nesting -= 1;
                return;
            }
        };
        programs::analyze(self, &name, &inv);
        self.nesting -= 1;
    }

    /// Emits the command a wrapper runs (`sudo rm x` → `rm x`) and analyses it in turn.
    pub(crate) fn inner(&mut self, assignments: Vec<Word>, words: Vec<Word>) {
        if words.is_empty() {
            return;
        }
        let printable: Vec<Word> = words.iter().filter(|w| !w.appended).cloned().collect();
        let mut inv = Invocation::from_words(assignments, printable);
        if words.iter().any(|w| w.appended) {
            inv.text.push_str(" …");
        }
        inv.words = words;
        self.invocation(inv);
    }

    /// Re-parses a literal command string (`bash -c '…'`, `eval …`, `ssh host …`).
    pub(crate) fn reparse(&mut self, script: &str) {
        analyze_source(script, self.depth + 1, self.sink);
    }

    /// Marks the call opaque because of `snippet`.
    pub(crate) fn opaque_text(&mut self, snippet: &str, reason: impl Into<String>) {
        self.sink.opaque(snippet, reason);
    }

    /// Emits a write param for a file a program writes (`find -fprint FILE`).
    pub(crate) fn write_file(&mut self, snippet: &str, target: Option<&str>) {
        match write_param(target) {
            Ok(Some(p)) => self.param(p),
            Ok(None) => {}
            Err(reason) => self.sink.opaque(snippet, reason),
        }
    }

    /// Looks for run-time code in any word-like subtree: substitutions, arithmetic on
    /// variables, indirect and prompt expansions, computed array subscripts.
    fn check_expansions(&mut self, node: Node<'_>) {
        match node.kind() {
            "command_substitution" => {
                self.opaque(
                    node,
                    "command substitution: its output is only known when it runs",
                );
                return;
            }
            "process_substitution" => {
                self.opaque(node, "process substitution runs a command");
                return;
            }
            "arithmetic_expansion" => {
                self.check_arithmetic(node);
                return;
            }
            "expansion" => self.check_parameter_expansion(node),
            "subscript" => self.check_subscript(node),
            _ => {}
        }
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.children(&mut cursor).collect();
        for child in children {
            self.check_expansions(child);
        }
    }

    /// Arithmetic is only accepted on literal numbers: bash evaluates variables' values as
    /// expressions, and `a[$(cmd)]` inside a value runs `cmd`.
    fn check_arithmetic(&mut self, node: Node<'_>) {
        fn literal_only(n: Node<'_>) -> bool {
            match n.kind() {
                "number" => n.named_child_count() == 0,
                "binary_expression"
                | "unary_expression"
                | "parenthesized_expression"
                | "ternary_expression"
                | "arithmetic_expansion"
                | "compound_statement" => {
                    let mut cursor = n.walk();
                    let ok = n.named_children(&mut cursor).all(literal_only);
                    ok
                }
                _ => false,
            }
        }
        if !literal_only(node) {
            self.opaque(
                node,
                "arithmetic on variables (bash evaluates code hidden in their values)",
            );
        }
    }

    fn check_parameter_expansion(&mut self, node: Node<'_>) {
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.children(&mut cursor).collect();
        let ops: Vec<&str> = children
            .iter()
            .filter(|c| !c.is_named())
            .map(|c| c.kind())
            .collect();
        if children.get(1).is_some_and(|c| c.kind() == "!") {
            self.opaque(node, "indirect expansion `${!…}`");
        }
        if ops.iter().any(|o| *o == "=" || *o == ":=") {
            let assigned = children
                .iter()
                .find(|c| c.kind() == "variable_name")
                .map(|c| node_text(*c, self.src))
                .unwrap_or("");
            if dangerous_variable(assigned) {
                let reason =
                    format!("sets {assigned}, which changes what later programs load or run");
                self.opaque(node, reason);
            }
        }
        if ops.contains(&"@") {
            self.opaque(
                node,
                "`${…@…}` transformation (may expand prompts and run code)",
            );
        }
        if ops.contains(&":") {
            // `${x:offset:length}`: offset and length are arithmetic.
            let numeric = children
                .iter()
                .filter(|c| c.is_named())
                .skip(1)
                .all(|c| c.kind() == "number" && c.named_child_count() == 0);
            if !numeric {
                self.opaque(
                    node,
                    "arithmetic on variables (bash evaluates code hidden in their values)",
                );
            }
        }
    }

    fn check_subscript(&mut self, node: Node<'_>) {
        let index = node.child_by_field_name("index");
        let ok = index.is_some_and(|i| {
            let t = node_text(i, self.src);
            (i.kind() == "number" && i.named_child_count() == 0) || t == "@" || t == "*"
        });
        if !ok {
            self.opaque(
                node,
                "array subscript computed at run time (evaluated as arithmetic)",
            );
        }
    }

    /// Assignment names: dangerous variables are opaque.
    fn check_assignment_names(&mut self, node: Node<'_>) {
        let assignments: Vec<Node<'_>> = if node.kind() == "variable_assignment" {
            vec![node]
        } else {
            let mut cursor = node.walk();
            let v: Vec<Node<'_>> = node
                .named_children(&mut cursor)
                .filter(|c| c.kind() == "variable_assignment")
                .collect();
            v
        };
        for a in assignments {
            let Some(name) = a.child_by_field_name("name") else {
                continue;
            };
            let name_text = if name.kind() == "subscript" {
                name.child_by_field_name("name")
                    .map(|n| self.text(n))
                    .unwrap_or("")
            } else {
                self.text(name)
            };
            if dangerous_variable(name_text) {
                let reason =
                    format!("sets {name_text}, which changes what later programs load or run");
                self.opaque(a, reason);
            }
        }
    }

    /// A variable-name argument (`unset`, `read`, `export`): `a[…]` with a computed index is
    /// evaluated as arithmetic.
    fn check_name_argument(&mut self, node: Node<'_>) {
        let text = self.text(node);
        if text.contains('[') && !subscript_literal(static_value(node, self.src).as_deref()) {
            self.opaque(
                node,
                "array subscript computed at run time (evaluated as arithmetic)",
            );
        }
    }

    /// `export`/`declare`/`local`/`readonly`/`typeset`.
    fn declaration(&mut self, node: Node<'_>) {
        self.check_expansions(node);
        self.check_assignment_names(node);
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        for child in children {
            match child.kind() {
                "variable_assignment" => {}
                "variable_name" => {
                    let name = self.text(child);
                    if dangerous_variable(name) {
                        let reason = format!(
                            "exports {name}, which changes what later programs load or run"
                        );
                        self.opaque(child, reason);
                    }
                }
                _ => {
                    let value = static_value(child, self.src);
                    if let Some(v) = value.as_deref() {
                        if v.starts_with('-') && v.contains('i') {
                            self.opaque(
                                child,
                                "integer attribute (values are evaluated as arithmetic)",
                            );
                        }
                        if v.starts_with('-') && v.contains('n') {
                            self.opaque(child, "name reference (assigns to another variable)");
                        }
                    }
                    self.check_name_argument(child);
                }
            }
        }
        self.param(self.text(node).to_string());
    }

    /// `[ … ]` / `[[ … ]]`: no param (no side effects), but `[[` evaluates arithmetic operands.
    fn test_command(&mut self, node: Node<'_>) {
        self.check_expansions(node);
        let double = node.child(0).map(|c| c.kind()) == Some("[[");
        self.check_test_operands(node, double);
    }

    fn check_test_operands(&mut self, node: Node<'_>, double: bool) {
        const ARITH: &[&str] = &["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];
        if node.kind() == "binary_expression" || node.kind() == "unary_expression" {
            let op = node
                .child_by_field_name("operator")
                .map(|o| self.text(o))
                .unwrap_or("");
            let mut cursor = node.walk();
            let operands: Vec<Node<'_>> = node
                .named_children(&mut cursor)
                .filter(|c| c.kind() != "test_operator")
                .collect();
            if double && ARITH.contains(&op) {
                let literal = operands
                    .iter()
                    .all(|o| o.kind() == "number" && o.named_child_count() == 0);
                if !literal {
                    self.opaque(
                        node,
                        "arithmetic on variables (bash evaluates code hidden in their values)",
                    );
                }
            }
            if op == "-v" {
                for o in &operands {
                    self.check_name_argument(*o);
                }
            }
        }
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        for child in children {
            self.check_test_operands(child, double);
        }
    }
}

/// How a heredoc shows up in its command's param.
enum HeredocText {
    /// The whole redirected statement as written (the 0.5.x form).
    Whole(String),
    /// Appended to the command text.
    Append(String),
}

/// `name[0]`, `name[@]`, `name[*]`: subscripts that are not evaluated.
pub(crate) fn subscript_literal(value: Option<&str>) -> bool {
    let Some(v) = value else { return false };
    let Some(open) = v.find('[') else { return true };
    let Some(inner) = v[open + 1..].strip_suffix(']') else {
        return false;
    };
    inner == "@" || inner == "*" || (!inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()))
}

/// Targets that are not files: writing to them changes nothing on disk.
const HARMLESS_TARGETS: &[&str] = &[
    "/dev/null",
    "/dev/stdout",
    "/dev/stderr",
    "/dev/fd/1",
    "/dev/fd/2",
];

/// The param for writing `target`: `Ok(None)` for `/dev/null` and friends, `Err` when the
/// target is computed at run time, is a network device, or climbs with `..` from a relative
/// or `~` path. Absolute targets are normalized lexically (`/tmp/../etc/x` → `/etc/x`).
pub(crate) fn write_param(target: Option<&str>) -> Result<Option<String>, &'static str> {
    let Some(target) = target else {
        return Err("writes to a file whose name is only known at run time");
    };
    if HARMLESS_TARGETS.contains(&target) {
        return Ok(None);
    }
    if target.starts_with("/dev/tcp/") || target.starts_with("/dev/udp/") {
        return Err("opens a network connection (/dev/tcp, /dev/udp)");
    }
    if target.starts_with('/') {
        return Ok(Some(format!(
            "{WRITE_PREFIX}{}",
            crate::params::normalize_lexically(target)
        )));
    }
    if target.split('/').any(|c| c == "..") {
        return Err("writes to a relative path that climbs with `..`");
    }
    Ok(Some(format!("{WRITE_PREFIX}{target}")))
}

#[cfg(test)]
mod tests;
