//! Starts the real `kassa` binary on ephemeral ports with its own data directory, and talks to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Starts a prepared `kassa` command (quiet logs, no PORT/GRPC_PORT from the environment) and waits for
/// its "kassa listening http=.. grpc=.." line; returns the child and a lookup of that line's fields.
pub fn spawn_kassa(command: Command) -> (Child, impl Fn(&str) -> String) {
    spawn_kassa_logging(command, "warn", Stdio::inherit())
}

/// [`spawn_kassa`] with this log filter, its logs (stderr) going to `logs`.
pub fn spawn_kassa_logging(mut command: Command, level: &str, logs: Stdio) -> (Child, impl Fn(&str) -> String) {
    let mut child = command
        .env("LOG_LEVEL", level)
        .env_remove("PORT")
        .env_remove("GRPC_PORT")
        .stdout(Stdio::piped())
        .stderr(logs)
        .spawn()
        .expect("kassa starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("kassa listening") {
                let _ = tx.send(line);
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("kassa did not print its addresses within 60 s");
        }
    };
    let field = move |name: &str| {
        line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_string).unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    (child, field)
}

/// `kassa serve` with auth off, 2 shards, ports chosen by the kernel, its data and config file (with
/// `toml` added) under `dir`. The suite sends thousands of requests from one client: the gateway's rate
/// limits are off here (they have their own tests).
pub fn serve_command(dir: &std::path::Path, toml: &str, extra: &[&str]) -> Command {
    let config = dir.join("kassa.toml");
    std::fs::write(&config, format!("{toml}\n[gateway.rate_limit]\nenabled = false\n")).expect("config file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
    command
        .args(["serve", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--auth", "off", "--shards", "2", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config)
        .args(extra);
    command
}

pub struct Server {
    child: Child,
    pub http: String,
    pub grpc: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl Server {
    /// `kassa serve` with auth off, 2 shards, the seed catalog, ports chosen by the kernel.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Server::start_in(dir, extra)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Server::start_configured(dir, "", extra)
    }

    /// Like `start_in`, with these lines added to the config file (TOML tables such as `[engine]`).
    pub fn start_configured(dir: tempfile::TempDir, toml: &str, extra: &[&str]) -> Server {
        let (child, field) = spawn_kassa(serve_command(dir.path(), toml, extra));
        let http = format!("http://{}", field("http="));
        let grpc = format!("http://{}", field("grpc="));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Server { child, http, grpc, dir, client }
    }

    /// Like `start_configured`, logging at `info` as JSON lines into `log_file`.
    pub fn start_logged(dir: tempfile::TempDir, toml: &str, log_file: &std::path::Path) -> Server {
        let mut command = serve_command(dir.path(), toml, &[]);
        command.env("LOG_FORMAT", "json");
        let logs = std::fs::File::create(log_file).expect("log file");
        let (child, field) = spawn_kassa_logging(command, "info", Stdio::from(logs));
        let http = format!("http://{}", field("http="));
        let grpc = format!("http://{}", field("grpc="));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Server { child, http, grpc, dir, client }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.expect("request");
        read(r).await
    }

    /// Polls `GET path` until `ready` holds of its body (30 s at most).
    pub async fn until(&self, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = self.get(path).await;
            if ready(&body) {
                return body;
            }
            assert!(std::time::Instant::now() < deadline, "{path} never got there: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let (status, text) = self.raw("GET", "/metrics", Vec::new(), &[]).await;
        assert_eq!(status, 200, "{text}");
        text
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method.parse().expect("method"), self.url(path));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        read(req.send().await.expect("request")).await
    }

    /// Like `send`, plus the raw body text (for field-order checks).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
        let mut req = self.client.request(method.parse().expect("method"), self.url(path));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: status {status}: not JSON ({e}): {text:?}"));
        (status, value, text)
    }

    pub async fn raw(&self, method: &str, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, String) {
        let mut req = self.client.request(method.parse().expect("method"), self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.stop()
    }

    /// Stops the server cleanly (asserting a successful exit) and hands back its data directory.
    /// SIGKILL (no shutdown at all), keeping the data directory for a restart.
    pub fn kill_keep_data(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    pub fn stop_keep_data(mut self) -> tempfile::TempDir {
        let status = self.stop();
        assert!(status.success(), "clean exit on SIGTERM: {status:?}");
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kassa did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub async fn read(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    (status, value)
}

/// The keys of a JSON object, in order.
pub fn keys(v: &Value) -> Vec<String> {
    // serde_json without `preserve_order` sorts keys, so order is checked on the raw text instead.
    v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// Asserts that `text` (a JSON object) has exactly these top-level keys in this order.
pub fn assert_key_order(text: &str, expected: &[&str]) {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0i32, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let s = &text[start..i];
                let mut j = i + 1;
                while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                if depth == 1 && j < bytes.len() && bytes[j] == b':' {
                    found.push(s.to_string());
                }
            }
            _ => {}
        }
        i += 1;
    }
    assert_eq!(found, expected, "key order of {text}");
}

/// A finished command's stdout and stderr, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
