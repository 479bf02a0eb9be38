//! Runtime-directory helpers. Kept in their own test binary because they read and set process
//! environment variables, which no other test here touches.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

#[test]
fn config_path_and_runtime_dir_follow_the_environment() {
    let home = tempfile::tempdir().expect("tempdir");
    std::env::set_var("HOME", home.path());
    std::env::remove_var("ACG_CONFIG");
    assert_eq!(
        acg_config::default_runtime_dir(),
        home.path().join(".agent-chat-gateway")
    );
    assert_eq!(
        acg_config::default_config_path(),
        home.path().join(".agent-chat-gateway/config.yaml")
    );
    std::env::set_var("ACG_CONFIG", "/etc/acg/custom.yaml");
    assert_eq!(
        acg_config::default_config_path(),
        PathBuf::from("/etc/acg/custom.yaml")
    );
    std::env::remove_var("ACG_CONFIG");
}

#[test]
fn restrict_permissions_makes_the_file_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "x").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    acg_config::restrict_permissions(&path).expect("restrict");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
