//! The stdin/stdout example end to end: totals per user, bad lines to dead letters.

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn running_totals_reads_stdin_and_writes_stdout() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_running-totals"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let input =
        "{\"user\":\"ada\",\"amount\":3}\n{\"user\":\"bob\",\"amount\":1}\nnot json\n{\"user\":\"ada\",\"amount\":4}\n";
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("input written");
    let output = child.wait_with_output().expect("the example ends");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![r#"{"user":"ada","amount":3}"#, r#"{"user":"bob","amount":1}"#, r#"{"user":"ada","amount":7}"#]
    );
    assert!(stderr.contains(r#""position":"line 3""#) && stderr.contains("not json"), "{stderr}");
    assert!(stderr.contains("4 lines read, 3 totals written, 1 dead letters"), "{stderr}");
}
