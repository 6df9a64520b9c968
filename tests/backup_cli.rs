//! `kassa backup` against a running node under write load, then `kassa verify-backup` and `kassa
//! restore` into a new data directory that a new node serves: every product acknowledged before the
//! backup started is there, with its fields; a damaged copy is refused by the check and by the restore.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Server, output_text};
use serde_json::json;
use tokio::sync::watch;

fn kassa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kassa")).args(args).output().expect("kassa runs")
}

/// Creates products and puts each in a basket (a hundred lines per buyer) until told to stop, counting
/// its acknowledgements on `acked`; returns the products acknowledged before `started`.
async fn writer(s: Arc<Server>, started: Arc<AtomicBool>, stop: Arc<AtomicBool>, acked: watch::Sender<usize>) -> Vec<(u64, String)> {
    let mut before = Vec::new();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let name = format!("backed-{n}");
        let (status, p) = s.send("POST", "/api/products", Some(json!({"name": name, "price": 2.5, "stock": 7, "category": "c"}))).await;
        assert_eq!(status, 201, "{p}");
        let basket = format!("/api/baskets/buyer-{}/items", n / 100);
        let (status, b) = s.send("POST", &basket, Some(json!({"product_id": p["id"], "quantity": 1}))).await;
        assert!(status == 200 || status == 201, "{b}");
        if !started.load(Ordering::SeqCst) {
            before.push((p["id"].as_u64().unwrap(), name));
        }
        acked.send_replace(n + 1);
    }
    before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_is_checked_restored_and_served() {
    let s = Arc::new(Server::start());
    let (started, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (acked, mut acks) = watch::channel(0);
    let load = tokio::spawn(writer(s.clone(), started.clone(), stop.clone(), acked));
    // Some writes first, so the backup is taken while they go on.
    acks.wait_for(|n| *n >= 150).await.unwrap();
    started.store(true, Ordering::SeqCst);

    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("backup");
    let (url, dest_arg) = (s.http.clone(), dest.display().to_string());
    let taken = tokio::task::spawn_blocking(move || kassa(&["backup", "--url", &url, &dest_arg])).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let before = load.await.unwrap();
    assert!(taken.status.success(), "{}", output_text(&taken));
    assert!(output_text(&taken).contains("checked:"), "the fetched backup is checked: {}", output_text(&taken));
    assert!(!before.is_empty());
    let kept = std::fs::read_dir(s.dir.path().join("data/backups")).map_or(0, |d| d.count());
    assert_eq!(kept, 0, "the node keeps no copy once it is sent");

    let dest_arg = dest.display().to_string();
    let verified = kassa(&["verify-backup", &dest_arg]);
    assert!(verified.status.success(), "{}", output_text(&verified));

    let restored = tempfile::tempdir().unwrap();
    let data = restored.path().join("data").display().to_string();
    let out = kassa(&["restore", &dest_arg, "--data-dir", &data]);
    assert!(out.status.success(), "{}", output_text(&out));
    let r = Server::start_in(restored, &[]);
    for (id, name) in &before {
        let (status, p) = r.get(&format!("/api/products/{id}")).await;
        assert_eq!(status, 200, "product {id} was acknowledged before the backup started");
        assert_eq!((p["name"].as_str(), p["price"].as_f64(), p["stock"].as_i64()), (Some(name.as_str()), Some(2.5), Some(7)));
    }
    for (k, chunk) in before.chunks(100).enumerate() {
        let (status, basket) = r.get(&format!("/api/baskets/buyer-{k}")).await;
        assert_eq!(status, 200);
        let lines = basket["items"].as_array().map_or(0, Vec::len);
        assert!(lines >= chunk.len(), "buyer-{k}: {lines} lines restored, {} acknowledged before", chunk.len());
    }
    // The restored node takes writes.
    let (status, _) = r.send("POST", "/api/products", Some(json!({"name": "after", "price": 1, "stock": 1, "category": "c"}))).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_damaged_backup_is_refused_by_the_check_and_the_restore() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("backup");
    let dest_arg = dest.display().to_string();
    let taken = kassa(&["backup", "--url", &s.http, &dest_arg]);
    assert!(taken.status.success(), "{}", output_text(&taken));
    let again = kassa(&["backup", "--url", &s.http, &dest_arg]);
    assert!(!again.status.success() && output_text(&again).contains("exists already"), "{}", output_text(&again));

    // The seed catalog's products are in the catalog store of one shard or the other.
    let file = ["shard-000", "shard-001"].iter().map(|d| dest.join(d).join("catalog.kv")).max_by_key(|f| size(f)).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let checked = kassa(&["verify-backup", &dest_arg]);
    assert!(!checked.status.success());
    assert!(output_text(&checked).contains("damaged backup"), "{}", output_text(&checked));
    let data = work.path().join("data");
    let out = kassa(&["restore", &dest_arg, "--data-dir", &data.display().to_string()]);
    assert!(!out.status.success() && output_text(&out).contains("damaged backup"), "{}", output_text(&out));
    assert!(!data.exists(), "a refused restore leaves nothing behind");
}

fn size(f: &Path) -> u64 {
    std::fs::metadata(f).map_or(0, |m| m.len())
}

#[tokio::test]
async fn only_an_administrator_may_take_a_backup_and_unsent_ones_are_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    // A backup a node was sending when it died is no use to anyone: the next start removes it.
    let unsent = dir.path().join("data/backups/backup-1/shard-000");
    std::fs::create_dir_all(&unsent).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
    command.args(["serve", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--auth", "on", "--data-dir", &data]);
    let (child, field) = common::spawn_kassa(command);
    let _node = Killed(child);
    let http = format!("http://{}", field("http="));
    assert!(!dir.path().join("data/backups").exists(), "backups left unsent by an earlier run are removed");
    let token = |role: &str| {
        let out = kassa(&["token", "--role", role, "--subject", "ops", "--data-dir", &data]);
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let client = reqwest::Client::new();
    let post = |token: Option<String>| {
        let mut req = client.post(format!("{http}/admin/backup"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(None).await, 401);
    assert_eq!(post(Some(token("user"))).await, 403);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("backup").display().to_string();
    let refused = kassa(&["backup", "--url", &http, &dest]);
    assert!(!refused.status.success() && output_text(&refused).contains("401"), "{}", output_text(&refused));
    assert!(!Path::new(&dest).exists(), "a refused backup leaves no directory behind");
    let admin = token("admin");
    let taken = kassa(&["backup", "--url", &http, "--token", &admin, &dest]);
    assert!(taken.status.success(), "{}", output_text(&taken));
}

/// A node stopped when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
