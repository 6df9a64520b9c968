//! Smoke test: a tiny `--quick`-like run of the real binary against a real Kassa process and the real
//! references (PostgreSQL and Redis from deploy/local/services.sh). `benches/run.sh --test` starts the
//! services and builds Kassa first; without them this test fails and says what is missing.

use std::path::PathBuf;
use std::process::Command;

use kassa_bench::report::RunResult;

fn kassa_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KASSA_BIN") {
        return PathBuf::from(p);
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    target.join("release").join("kassa")
}

#[test]
fn quick_run_against_real_kassa_and_references() {
    let pg = std::env::var("KASSA_PG_URL").unwrap_or_default();
    let redis = std::env::var("KASSA_REDIS_URL").unwrap_or_default();
    assert!(
        !pg.is_empty() && !redis.is_empty(),
        "KASSA_PG_URL and KASSA_REDIS_URL must be set: run `eval \"$(deploy/local/services.sh up)\"` first, \
         or use `benches/run.sh --test`, which does"
    );
    let kassa = kassa_binary();
    assert!(kassa.exists(), "no kassa binary at {}: `cargo build --release -p kassa` (or set KASSA_BIN)", kassa.display());

    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_kassa-bench"))
        .args(["run", "--quick", "--connections", "4", "--duration-s", "1", "--warmup-s", "0.2", "--products", "300", "--users", "40"])
        .args(["--flash-buyers", "150", "--flash-rounds", "2", "--fsync-samples", "20", "--scale", "500"])
        .arg("--kassa-bin")
        .arg(&kassa)
        .arg("--out-dir")
        .arg(out.path())
        .env("KASSA_PG_URL", &pg)
        .env("KASSA_REDIS_URL", &redis)
        .output()
        .expect("run kassa-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kassa-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");

    let json = std::fs::read_dir(out.path())
        .expect("out dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a result json");
    assert!(json.with_extension("md").exists(), "the table is written beside the json");
    let r: RunResult = serde_json::from_str(&std::fs::read_to_string(&json).expect("read")).expect("schema");
    r.validate().expect("valid result");

    for id in [
        "ceiling",
        "ceiling_page",
        "pg_checkout",
        "pg_browse",
        "redis_fsync",
        "w1_http",
        "w2_http_uniform",
        "w2_http_zipf",
        "w2_http_category",
        "w3_http",
        "w4_http",
        "w7_grpc_browse",
        "w7_grpc_add_item",
        "w7_grpc_checkout",
        "w2_http_open",
        "w3_http_open",
        "w4_http_open",
        "w2_http_open_quarter",
        "w3_http_open_quarter",
        "w4_http_open_quarter",
    ] {
        let m = r.measurement(id).unwrap_or_else(|| panic!("{id} was not measured\n{stdout}\n{stderr}"));
        assert!(m.ops > 0, "{id}: nothing succeeded: {:?} {:?}", m.errors, m.error_samples);
        assert_eq!(m.ops_failed, 0, "{id}: failures {:?} {:?}", m.errors, m.error_samples);
        assert!(m.latency.p50_us > 0 && m.latency.p50_us <= m.latency.max_us, "{id}: {:?}", m.latency);
        // Kassa's CPU over the window is recorded for its workloads, never for the references.
        let is_reference = ["ceiling", "ceiling_page", "pg_checkout", "pg_browse", "redis_fsync"].contains(&id);
        assert_eq!(m.kassa_cpu_s.is_none(), is_reference, "{id}: kassa CPU {:?}", m.kassa_cpu_s);
    }
    for name in ["W1 requests/s / ceiling", "W2 by category / ceiling_page", "W3 add item / redis-fsync", "W4 checkouts / pg-checkout"] {
        let ratio = r.ratios.iter().find(|x| x.name == name).unwrap_or_else(|| panic!("ratio {name} missing"));
        assert!(ratio.value.is_some_and(|v| v > 0.0), "{name}: {ratio:?}");
    }
    assert_eq!(r.flash_sales.len(), 2);
    for sale in &r.flash_sales {
        assert_eq!(sale.sold, 100, "round {}: {sale:?}", sale.round);
        assert!(sale.exact && sale.clean, "round {}: {sale:?}", sale.round);
        assert_eq!(sale.rejected_409, 50, "buyers beyond the stock are turned away with 409");
    }
    // W9/W10: the data directory restarted with all four mirrors on, its lag sampled under W4.
    let adapters = r.adapters.as_ref().expect("the adapters' run (KASSA_MYSQL_URL and KASSA_KAFKA_BROKERS set by services.sh)");
    assert!(adapters.bootstrap_s.is_some(), "{adapters:?}");
    for id in ["adapters_w4_http", "adapters_w4_http_open"] {
        let m = r.measurement(id).unwrap_or_else(|| panic!("{id} was not measured: {adapters:?}"));
        assert!(m.ops > 0 && m.ops_failed == 0, "{id}: {:?}", m.errors);
    }
    let lag = adapters.at_half.as_ref().expect("lag at half of max");
    let names: Vec<&str> = lag.adapters.iter().map(|a| a.adapter.as_str()).collect();
    assert_eq!(names, ["kafka", "mariadb", "postgres", "redis"]);
    assert!(lag.adapters.iter().all(|a| a.lag.count > 0 && a.unresolved == 0), "{lag:?}");
    assert_eq!(adapters.verify_clean, Some(true), "every mirror equals the engine after the load: {adapters:?}");
    assert!(r.ratios.iter().any(|x| x.name.contains("W10") && x.value.is_some_and(|v| v > 0.0)));
    let kassa = r.kassa.as_ref().expect("kassa info");
    assert!(kassa.peak_rss_kib.is_some_and(|k| k > 1000), "{kassa:?}");
    // The scale run at a tiny size: seeded, SIGKILLed, restarted on the same directory, every sampled
    // basket still holding its line; the 1M/1M targets are not judged at this size.
    let scale = r.scale.as_ref().unwrap_or_else(|| panic!("the scale run: {:?}", r.notes));
    assert_eq!((scale.products, scale.baskets), (500, 500));
    assert!(scale.restart_ready_s.is_some_and(|s| s > 0.0) && scale.recovery_ms.is_some(), "{scale:?}");
    assert!(scale.verified_of > 0 && scale.verified == scale.verified_of, "{scale:?}");
    assert!(scale.peak_rss_kib.is_some_and(|k| k > 1000) && scale.data_dir_bytes > 0, "{scale:?}");
    for name in ["memory", "W8 restart after SIGKILL"] {
        let check = r.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("check {name} missing"));
        assert_eq!(check.met, None, "{check:?}");
    }
    assert!(r.fdatasync.p50_us > 0);
    assert!(stdout.contains("| ceiling |"), "table printed:\n{stdout}");
}
