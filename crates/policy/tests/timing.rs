//! A rough figure for the cost of one decision with bash splitting. No timing assertion (the
//! machine is shared); run with
//! `cargo test -p acg-policy --release --test timing -- --ignored --nocapture`.

use std::path::Path;
use std::time::Instant;

use acg_config::ToolRule;
use acg_policy::{Role, ToolInput, ToolPolicy};

#[test]
#[ignore = "prints a measurement; run explicitly"]
fn decision_with_bash_splitting_takes_microseconds() {
    let rules: Vec<ToolRule> = [
        "ls.*",
        "git (status|log|diff).*",
        "grep .*",
        "find .*",
        "cd .*",
    ]
    .iter()
    .map(|p| ToolRule {
        tool: "Bash".into(),
        params: Some((*p).into()),
    })
    .collect();
    let policy = ToolPolicy::new(&rules, &[]).unwrap();
    let commands = [
        "ls -la",
        "cd /work/proj && git status && git diff HEAD~1 -- src/ | grep -n foo",
        "find . -name '*.rs' -exec grep -l 'fn main' {} \\; 2>/dev/null | head -20",
        "for f in $(ls); do echo $f > /tmp/x; done",
    ];
    let inputs: Vec<ToolInput> = commands
        .iter()
        .map(|c| ToolInput::Object(vec![("command".into(), ToolInput::String((*c).into()))]))
        .collect();
    let cwd = Path::new("/work/proj");
    for input in &inputs {
        policy.decide(Role::Owner, "Bash", input, cwd); // warm up the parser
    }
    let rounds = 2000;
    for (cmd, input) in commands.iter().zip(&inputs) {
        let start = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(policy.decide(Role::Owner, "Bash", input, cwd));
        }
        let per = start.elapsed() / rounds;
        println!("{per:>10.1?} per decision: {cmd}");
    }
}
