//! The param strings rules are matched against, per tool (0.5.x compatible, lower-case names):
//!
//! | tool | params |
//! |---|---|
//! | `bash` | [`crate::split_bash`] of `command` |
//! | `read`, `edit`, `write`, `multiedit` | `file_path` joined onto the call's `cwd`, normalized lexically |
//! | `notebookedit` | the same with `notebook_path` |
//! | `webfetch` | `url` |
//! | `skill` | `skill` |
//! | anything else | the input as Python's `json.dumps` writes it |
//!
//! A missing or non-string field gives `""`.

use std::path::Path;

use crate::bash::{split_bash, Opaque};
use crate::input::ToolInput;

/// The strings a call must have approved, and what makes it unapprovable by `params` rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extraction {
    /// Param strings; never empty.
    pub params: Vec<String>,
    /// Constructs no `params` rule may approve (only Bash produces these).
    pub opaque: Vec<Opaque>,
}

/// Extracts the params of a Claude tool call. `cwd` is the hook's working directory.
pub fn extract_params(tool_name: &str, input: &ToolInput, cwd: &Path) -> Extraction {
    let field = |name: &str| input.get_str(name).unwrap_or("").to_string();
    let single = |p: String| Extraction {
        params: vec![p],
        opaque: Vec::new(),
    };
    match tool_name.to_lowercase().as_str() {
        "bash" => {
            let analysis = split_bash(input.get_str("command").unwrap_or(""));
            Extraction {
                params: analysis.params,
                opaque: analysis.opaque,
            }
        }
        "read" | "edit" | "write" | "multiedit" => single(file_param(&field("file_path"), cwd)),
        "notebookedit" => single(file_param(&field("notebook_path"), cwd)),
        "webfetch" => single(field("url")),
        "skill" => single(field("skill")),
        _ => single(input.to_python_json()),
    }
}

/// Extracts the params of an OpenCode permission request: its `patterns`, verbatim, except
/// that for `bash` each pattern goes through the splitter too (OpenCode's own split keeps
/// substitutions and redirections inside a pattern). An empty list is `[""]`.
pub fn extract_patterns(permission: &str, patterns: &[String]) -> Extraction {
    if patterns.is_empty() {
        return Extraction {
            params: vec![String::new()],
            opaque: Vec::new(),
        };
    }
    if permission.eq_ignore_ascii_case("bash") {
        let mut out = Extraction::default();
        for p in patterns {
            let a = split_bash(p);
            for param in a.params {
                if !out.params.contains(&param) {
                    out.params.push(param);
                }
            }
            out.opaque.extend(a.opaque);
        }
        return out;
    }
    Extraction {
        params: patterns.to_vec(),
        opaque: Vec::new(),
    }
}

/// `file_path` made absolute against `cwd` and normalized; `""` stays `""`.
fn file_param(path: &str, cwd: &Path) -> String {
    if path.is_empty() {
        return String::new();
    }
    if path.starts_with('/') {
        return normalize_lexically(path);
    }
    let cwd = cwd.to_string_lossy();
    if cwd.is_empty() {
        return normalize_lexically(path);
    }
    normalize_lexically(&format!("{}/{}", cwd.trim_end_matches('/'), path))
}

/// Python's `os.path.normpath` on POSIX: collapses `//`, `.` and `..` without looking at the
/// file system (`/project/../../etc/passwd` → `/etc/passwd`; symlinks are not resolved).
pub fn normalize_lexically(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let initial_slashes = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if initial_slashes == 0 && (parts.is_empty() || parts.last() == Some(&"..")) {
                    parts.push("..");
                } else if !parts.is_empty() {
                    parts.pop();
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    let out = format!("{}{}", "/".repeat(initial_slashes), joined);
    if out.is_empty() {
        ".".to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normpath_like_python() {
        let cases = [
            ("/project/../../etc/passwd", "/etc/passwd"),
            ("/a/./b//c/", "/a/b/c"),
            ("//a/b", "//a/b"),
            ("///a/b", "/a/b"),
            ("a/../..", ".."),
            ("../x/../y", "../y"),
            ("", "."),
            ("/", "/"),
            ("/..", "/"),
            ("./", "."),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_lexically(input), want, "{input}");
        }
    }

    #[test]
    fn file_tools_join_cwd_and_normalize() {
        let cwd = Path::new("/work/proj");
        let input = ToolInput::parse(r#"{"file_path": "../../etc/passwd"}"#).unwrap();
        assert_eq!(
            extract_params("Read", &input, cwd).params,
            vec!["/etc/passwd"]
        );
        let input = ToolInput::parse(r#"{"file_path": "src/main.rs", "content": "x"}"#).unwrap();
        assert_eq!(
            extract_params("Write", &input, cwd).params,
            vec!["/work/proj/src/main.rs"]
        );
        let input = ToolInput::parse(r#"{"notebook_path": "/n/./a.ipynb"}"#).unwrap();
        assert_eq!(
            extract_params("NotebookEdit", &input, cwd).params,
            vec!["/n/a.ipynb"]
        );
        let input = ToolInput::parse(r#"{}"#).unwrap();
        assert_eq!(extract_params("Edit", &input, cwd).params, vec![""]);
        let input = ToolInput::parse(r#"{"file_path": 5}"#).unwrap();
        assert_eq!(extract_params("multiedit", &input, cwd).params, vec![""]);
    }

    #[test]
    fn url_skill_and_json_tools() {
        let cwd = Path::new("/");
        let input = ToolInput::parse(r#"{"url": "https://x.y/z", "prompt": "p"}"#).unwrap();
        assert_eq!(
            extract_params("WebFetch", &input, cwd).params,
            vec!["https://x.y/z"]
        );
        let input = ToolInput::parse(r#"{"skill": "daily"}"#).unwrap();
        assert_eq!(extract_params("Skill", &input, cwd).params, vec!["daily"]);
        let input = ToolInput::parse(r#"{"pattern": "*.py", "path": "/w"}"#).unwrap();
        assert_eq!(
            extract_params("Glob", &input, cwd).params,
            vec![r#"{"pattern": "*.py", "path": "/w"}"#]
        );
        let input = ToolInput::parse(r#"{"query": "café"}"#).unwrap();
        assert_eq!(
            extract_params("mcp__search__find", &input, cwd).params,
            vec![r#"{"query": "café"}"#]
        );
    }

    #[test]
    fn opencode_patterns() {
        assert_eq!(extract_patterns("edit", &[]).params, vec![""]);
        let e = extract_patterns("edit", &["/a".into(), "/b".into()]);
        assert_eq!(e.params, vec!["/a", "/b"]);
        let e = extract_patterns("bash", &["ls".into(), "echo $(id)".into()]);
        assert_eq!(e.params, vec!["ls", "echo $(id)"]);
        assert_eq!(e.opaque.len(), 1);
    }
}
