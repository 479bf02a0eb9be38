//! The standalone `acg-testkit mock-anthropic` server answers like the library mock.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

#[test]
fn mock_anthropic_subcommand_serves_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("requests.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_acg-testkit"))
        .args([
            "mock-anthropic",
            "--port",
            "0",
            "--reply",
            "canned answer",
            "--record",
        ])
        .arg(&record)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    let addr = base.trim_start_matches("http://");

    let body = r#"{"model":"m","stream":false,"tools":[{"name":"Bash"}],"messages":[{"role":"user","content":"hi"}]}"#;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("canned answer"), "{response}");

    // The request is appended to the record file shortly after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        if text.contains("\"kind\":\"Turn\"") {
            assert!(text.contains("\"query\":\"beta=true\""), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "request never recorded"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
