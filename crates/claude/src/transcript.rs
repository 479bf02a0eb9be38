//! Where the CLI keeps a session's transcript, so a session the gateway drops can be removed.
//!
//! CLI 2.1.330 writes `<config dir>/projects/<working directory with every character that is
//! not an ASCII letter or digit replaced by '-'>/<session id>.jsonl` (config dir =
//! `$CLAUDE_CONFIG_DIR` or `~/.claude`). Versions shorten very long folder names, so when the
//! expected file is missing every project folder is searched for `<session id>.jsonl`.

use std::path::{Path, PathBuf};

/// The CLI's folder name for a working directory.
pub fn project_folder(working_directory: &Path) -> String {
    working_directory
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// True for ids that are safe as a file name (the CLI's are UUIDs).
fn is_plain_id(session_id: &str) -> bool {
    !session_id.is_empty()
        && session_id.len() <= 128
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The transcript of `session_id` under `config_dir`, if it exists.
pub fn find(config_dir: &Path, session_id: &str, working_directory: &Path) -> Option<PathBuf> {
    if !is_plain_id(session_id) {
        return None;
    }
    let projects = config_dir.join("projects");
    let file_name = format!("{session_id}.jsonl");
    let expected = projects
        .join(project_folder(working_directory))
        .join(&file_name);
    if expected.is_file() {
        return Some(expected);
    }
    std::fs::read_dir(&projects)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join(&file_name))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        assert_eq!(
            project_folder(Path::new("/tmp/cdisc/work")),
            "-tmp-cdisc-work"
        );
        assert_eq!(project_folder(Path::new("/a/b_c.d é")), "-a-b-c-d--");
    }

    #[test]
    fn finds_expected_then_anywhere_and_rejects_odd_ids() {
        let dir = tempfile::tempdir().unwrap();
        let wd = Path::new("/srv/app");
        let expected = dir.path().join("projects/-srv-app/abc-1.jsonl");
        std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
        std::fs::write(&expected, "{}").unwrap();
        assert_eq!(find(dir.path(), "abc-1", wd), Some(expected));

        let elsewhere = dir.path().join("projects/-shortened-123/abc-2.jsonl");
        std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
        std::fs::write(&elsewhere, "{}").unwrap();
        assert_eq!(find(dir.path(), "abc-2", wd), Some(elsewhere));

        assert_eq!(find(dir.path(), "missing", wd), None);
        assert_eq!(find(dir.path(), "../abc-1", wd), None);
        assert_eq!(find(dir.path(), "", wd), None);
        assert_eq!(find(Path::new("/nonexistent"), "abc-1", wd), None);
    }
}
