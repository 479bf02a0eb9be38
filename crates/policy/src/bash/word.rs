//! Words of a command line as the analyzers see them: the text as written, and the value the
//! shell will pass after quote removal when that value is fixed at parse time.
//!
//! A word whose value can change at run time (a `$VAR`, a glob, a brace expansion, an ANSI-C
//! `$'…'` string) has no static value. Analyzers that need to understand a program's arguments
//! (`find`, `git`, wrappers, shells) refuse to guess about such words.

use tree_sitter::Node;

/// One word of a simple command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The source text as written (quotes and escapes included).
    pub text: String,
    /// The value after quote removal, when the shell cannot change it at run time.
    pub value: Option<String>,
    /// Written as one bare word: no quotes, escapes, expansions or glob characters.
    pub bare: bool,
    /// Stands for arguments appended at run time (what `xargs` reads from stdin); not printed.
    pub appended: bool,
}

impl Word {
    /// The word a tree-sitter node spells in `src`.
    pub(crate) fn from_node(node: Node<'_>, src: &str) -> Word {
        let text = node_text(node, src).to_string();
        let value = static_value(node, src).filter(|_| !has_brace_expansion(&text));
        let bare = node.kind() == "word"
            && !text.contains('\\')
            && value.as_deref() == Some(text.as_str());
        Word {
            text,
            value,
            bare,
            appended: false,
        }
    }

    /// A word produced by a program at run time (an `xargs -I` replacement, appended input).
    pub(crate) fn run_time(text: &str) -> Word {
        Word {
            text: text.to_string(),
            value: None,
            bare: false,
            appended: false,
        }
    }

    /// The marker for arguments a program appends at run time.
    pub(crate) fn appended_arguments() -> Word {
        Word {
            text: "…".to_string(),
            value: None,
            bare: false,
            appended: true,
        }
    }

    /// The static value, if any.
    pub(crate) fn val(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

/// The source text of a node (empty if the range is not on a char boundary, which tree-sitter
/// never produces for valid UTF-8 input).
pub(crate) fn node_text<'s>(node: Node<'_>, src: &'s str) -> &'s str {
    src.get(node.byte_range()).unwrap_or("")
}

/// The value of a word after quote removal, or `None` when it depends on the run time.
pub(crate) fn static_value(node: Node<'_>, src: &str) -> Option<String> {
    let text = node_text(node, src);
    match node.kind() {
        "word" => unescape_bare(text),
        "number" if node.named_child_count() == 0 => unescape_bare(text),
        "raw_string" => text
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .map(str::to_string),
        "string" => {
            let mut cursor = node.walk();
            let only_text = node
                .named_children(&mut cursor)
                .all(|c| c.kind() == "string_content");
            if !only_text {
                return None;
            }
            let inner = text.strip_prefix('"')?.strip_suffix('"')?;
            Some(unescape_double_quoted(inner))
        }
        "concatenation" => {
            let mut out = String::new();
            let mut cursor = node.walk();
            for child in node.children(&mut cursor) {
                out.push_str(&static_value(child, src)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Quote removal for an unquoted word; `None` if it contains glob or other run-time syntax.
fn unescape_bare(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(next) => out.push(next),
                None => return None,
            },
            '*' | '?' | '[' | '$' | '`' | '(' | ')' | '\'' | '"' => return None,
            _ => out.push(c),
        }
    }
    Some(out)
}

/// Backslash handling inside double quotes (only `\\ \" \$ \` \newline` are escapes).
fn unescape_double_quoted(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('\\' | '"' | '$' | '`') => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                Some('\n') => {
                    chars.next();
                }
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the text may undergo brace expansion (`{a,b}`, `{1..3}`), quoted parts included
/// (a false positive only makes an analyzer more careful).
pub(crate) fn has_brace_expansion(text: &str) -> bool {
    // One pass: a stack of open braces, each remembering whether it saw `,` or `..`.
    let mut open: Vec<bool> = Vec::new();
    let mut prev = '\0';
    for c in text.chars() {
        if c == '}' && open.pop() == Some(true) {
            return true;
        }
        match c {
            '{' => open.push(false),
            ',' => {
                if let Some(top) = open.last_mut() {
                    *top = true;
                }
            }
            '.' if prev == '.' => {
                if let Some(top) = open.last_mut() {
                    *top = true;
                }
            }
            _ => {}
        }
        prev = c;
    }
    false
}

/// Whether `name` may be run as a command name by a params rule: plain ASCII letters, digits and
/// `_ . + - : /`, or exactly `[` or `.`; a path must be absolute or start with `./` or `~/` and may not
/// step through `.`/`..` components (so `ls/../../bin/rm` cannot pass as `ls…`).
pub(crate) fn plain_command_name(name: &str) -> bool {
    if name == "[" || name == "." {
        return true;
    }
    if name.is_empty() || name.starts_with('-') {
        return false;
    }
    let ok_chars = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_alphanumeric() || b"_.+-:/".contains(&b) || (i == 0 && b == b'~'));
    if !ok_chars {
        return false;
    }
    if name.starts_with('~') && !name.starts_with("~/") {
        return false;
    }
    if !name.contains('/') {
        return name != "." && name != "..";
    }
    let rest = if let Some(r) = name.strip_prefix("./") {
        r
    } else if let Some(r) = name.strip_prefix("~/") {
        r
    } else if let Some(r) = name.strip_prefix('/') {
        r
    } else {
        return false;
    };
    rest.split('/').all(|c| c != "." && c != "..")
}

/// The last path component of a command name (`/usr/bin/sudo` → `sudo`).
pub(crate) fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names() {
        for ok in [
            "ls",
            "git",
            "./gradlew",
            "/usr/bin/env",
            "~/bin/x",
            "[",
            ":",
            "python3.12",
        ] {
            assert!(plain_command_name(ok), "{ok}");
        }
        for bad in [
            "ls/../../bin/rm",
            "/bin/../tmp/x",
            "bin/rm",
            "./a/../b",
            "-rm",
            "r m",
            "rm;",
            "~root/x",
            "",
            "..",
            "ｒm",
        ] {
            assert!(!plain_command_name(bad), "{bad}");
        }
    }

    #[test]
    fn brace_expansion_detection() {
        assert!(has_brace_expansion("{a,b}"));
        assert!(has_brace_expansion("-{exec,x}"));
        assert!(has_brace_expansion("{1..3}"));
        assert!(!has_brace_expansion("{}"));
        assert!(!has_brace_expansion("{fd}"));
        assert!(!has_brace_expansion("a{"));
        assert!(has_brace_expansion("{a{b}c,d}"));
        assert!(!has_brace_expansion("{a,b"));
    }
}
