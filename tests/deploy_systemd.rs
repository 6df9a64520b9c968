//! The systemd unit in `deploy/systemd/` is one systemd itself accepts (`systemd-analyze verify`), is
//! hardened (`systemd-analyze security --offline`), and its `Type=notify` is kept by the binary: READY=1
//! on `$NOTIFY_SOCKET` once it serves, STOPPING=1 on SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

const UNIT: &str = include_str!("../deploy/systemd/kassa.service");

/// The unit with its binary path pointing at the one this test built (verify checks that it exists).
fn unit_here(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = UNIT.replace("/usr/local/bin/kassa", env!("CARGO_BIN_EXE_kassa"));
    assert_ne!(unit, UNIT, "the unit runs /usr/local/bin/kassa");
    let path = dir.join("kassa.service");
    std::fs::write(&path, unit).unwrap();
    path
}

fn analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze").args(args).output().expect("systemd-analyze runs (package systemd)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_here(dir.path());
    let unit = unit.to_str().unwrap();
    let (ok, text) = analyze(&["verify", unit]);
    // Lines about other units (the machine's own) are not this unit's business; nothing about ours may appear.
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("kassa.service")).collect();
    assert!(ok && ours.is_empty(), "systemd-analyze verify: {text}");
    for setting in ["Type=notify", "DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n"] {
        assert!(UNIT.contains(setting), "{setting}");
    }
    let (_, text) = analyze(&["security", "--offline=yes", unit]);
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("no exposure level: {text}"));
    let level: f64 = line.split(':').nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).expect(line);
    // systemd rates 0–10, lower is safer; under 2 is "OK" (its best band but one), where a network service can sit.
    assert!(level < 2.0, "{line}\n{text}");
}

#[test]
fn readiness_and_stopping_are_told_to_the_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut command = common::serve_command(dir.path(), "", &[]);
    command.env("NOTIFY_SOCKET", &socket_path);
    let (mut child, field) = common::spawn_kassa(command);

    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification");
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.lines().any(|l| l == "READY=1"), "{text}");
    assert!(text.contains(&format!("STATUS=serving http={}", field("http="))), "{text}");
    // Ready means serving: what systemd starts next can use it at once.
    let url = format!("http://{}/health/ready", field("http="));
    let status = tokio::runtime::Runtime::new().unwrap().block_on(async { reqwest::get(&url).await.map(|r| r.status().as_u16()) });
    assert_eq!(status.ok(), Some(200));

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let n = socket.recv(&mut buf).expect("a notification at shutdown");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}
