//! A panic on a shard thread takes the whole process down (non-zero exit, so a supervisor restarts it)
//! instead of leaving a dead shard behind a healthy `/health`; the restart recovers every acknowledged
//! write from the journal.

mod common;

use std::time::Duration;

use common::{Server, read, serve_command, spawn_kassa};
use serde_json::{Value, json};

fn product(i: usize) -> Value {
    json!({"name": format!("Lamp {i}"), "description": "", "price": 12.5, "stock": 10, "category": "Home"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_panic_exits_the_process_and_a_restart_recovers_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_command(dir.path(), "", &[]);
    // The fourth product update panics on its shard's thread.
    command.env("KASSA_FAILPOINTS", "update-product=3*off->panic");
    let (mut child, field) = spawn_kassa(command);
    let http = format!("http://{}", field("http="));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    let mut acknowledged = Vec::new();
    for i in 0..6 {
        let (status, p) = read(client.post(format!("{http}/products")).json(&product(i)).send().await.unwrap()).await;
        assert_eq!(status, 201, "{p}");
        acknowledged.push((p["id"].as_u64().unwrap(), format!("Lamp {i}")));
    }
    for (id, name) in acknowledged.iter_mut().take(3) {
        *name = format!("{name} renamed");
        let body = json!({"name": name.clone(), "description": "", "price": 13, "stock": 9, "category": "Home"});
        let (status, p) = read(client.put(format!("{http}/products/{id}")).json(&body).send().await.unwrap()).await;
        assert_eq!((status, p["name"].as_str()), (200, Some(name.as_str())), "{p}");
    }
    let (ready, _) = read(client.get(format!("{http}/health/ready")).send().await.unwrap()).await;
    assert_eq!(ready, 200, "ready while every shard runs");

    // The fourth update never gets an answer: the process aborts.
    let (id, _) = acknowledged[3];
    let body = json!({"name": "never", "description": "", "price": 1, "stock": 1, "category": "Home"});
    let outcome = client.put(format!("{http}/products/{id}")).json(&body).send().await;
    assert!(outcome.is_err(), "no answer from a process whose shard panicked: {outcome:?}");
    let status = child.wait().expect("the process exits");
    assert!(!status.success(), "a shard panic is a failed exit, so a supervisor restarts: {status:?}");

    // Restarted without the fail point: every acknowledged write is there.
    let server = Server::start_in(dir, &[]);
    for (id, name) in &acknowledged {
        let (status, p) = server.get(&format!("/products/{id}")).await;
        assert_eq!((status, p["name"].as_str()), (200, Some(name.as_str())), "{p}");
    }
}
