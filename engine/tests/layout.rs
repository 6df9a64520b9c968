//! How many shards a data directory gets, and keeps.

use kassa_engine::{Engine, EngineConfig, OpenError};

fn config(dir: &std::path::Path, shards: usize) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = shards;
    cfg.pin_threads = false;
    cfg
}

/// Stops the engine and lets go of its files, so the directory can be opened again.
fn close(engine: Engine) {
    engine.shutdown();
    drop(engine);
}

#[test]
fn automatic_shards_are_one_per_two_cores_and_an_existing_directory_keeps_its_count() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fresh = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(config(fresh.path(), 0)).expect("open");
    assert_eq!(engine.shards(), (cores / 2).max(1));
    close(engine);

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(config(dir.path(), 3)).expect("open with 3");
    close(engine);
    let engine = Engine::open(config(dir.path(), 0)).expect("reopen automatic");
    assert_eq!(engine.shards(), 3, "automatic keeps the directory's own count");
    close(engine);
    match Engine::open(config(dir.path(), 2)) {
        Err(OpenError::Layout(reason)) => assert!(reason.contains("created with 3 shards"), "{reason}"),
        Err(e) => panic!("expected a layout error, got {e}"),
        Ok(_) => panic!("a directory of 3 shards opened with 2"),
    }
}
