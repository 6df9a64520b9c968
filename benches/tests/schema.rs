//! The result JSON schema, the table, and the small parsers the harness relies on.

use std::collections::BTreeMap;

use kassa_bench::bench::finish;
use kassa_bench::dist::Zipf;
use kassa_bench::hist::LatencySummary;
use kassa_bench::kassa::{cpu_seconds, parse_cpu_ticks, parse_listening_line, parse_vm_hwm};
use kassa_bench::report::{Kind, Measurement, RunResult, SCHEMA_VERSION, portable_with, render_table, utc_stamp};
use kassa_bench::scale::ScaleRun;
use kassa_bench::sys::FsyncCost;
use rand::SeedableRng;

fn m(id: &str, ops_per_s: f64, requests_per_s: f64, open: Option<f64>, p99_us: u64) -> Measurement {
    Measurement {
        id: id.into(),
        title: id.into(),
        kind: if id.starts_with('w') { Kind::Workload } else { Kind::Reference },
        transport: "http".into(),
        mode: if open.is_some() { "open" } else { "closed" }.into(),
        target_rate_per_s: open,
        connections: 64,
        duration_s: 10.0,
        unit: "request".into(),
        ops: (ops_per_s * 10.0) as u64,
        ops_failed: 0,
        ops_per_s,
        requests: (requests_per_s * 10.0) as u64,
        requests_per_s,
        latency: LatencySummary { count: 10, p50_us: 100, p99_us, p999_us: p99_us.max(900), max_us: p99_us.max(2000), mean_us: 150 },
        service_latency: open.map(|_| LatencySummary::default()),
        errors: BTreeMap::new(),
        error_samples: BTreeMap::new(),
        missed: open.map(|_| 0),
        kassa_rss_kib_after: None,
        kassa_cpu_s: None,
    }
}

fn sample() -> RunResult {
    let mut r = RunResult {
        schema_version: SCHEMA_VERSION,
        started_at_us: 1_700_000_000_000_000,
        finished_at_us: 1_700_000_300_000_000,
        command: "kassa-bench run".into(),
        fdatasync: FsyncCost { samples: 10, bytes_per_write: 4096, p50_us: 500, p99_us: 900, max_us: 1000, mean_us: 550 },
        ..RunResult::default()
    };
    r.measurements = vec![
        m("ceiling", 80_000.0, 80_000.0, None, 900),
        m("pg_checkout", 5_000.0, 5_000.0, None, 9_000),
        m("redis_fsync", 40_000.0, 40_000.0, None, 3_000),
        m("w2_http_uniform", 60_000.0, 60_000.0, None, 1_500),
        m("w3_http", 30_000.0, 30_000.0, None, 4_000),
        m("w4_http", 60_000.0, 180_000.0, None, 4_000),
        m("w2_http_open", 30_000.0, 30_000.0, Some(30_000.0), 1_800),
        m("w3_http_open", 15_000.0, 15_000.0, Some(15_000.0), 3_500),
    ];
    finish(&mut r);
    r
}

#[test]
fn ratios_and_checks_follow_the_targets() {
    let r = sample();
    let get = |name: &str| r.ratios.iter().find(|x| x.name.starts_with(name)).unwrap_or_else(|| panic!("no ratio {name}: {:?}", r.ratios));
    let w2 = get("W2 by id (uniform)");
    assert_eq!(w2.value, Some(0.75));
    assert_eq!(w2.met, Some(true));
    let w3 = get("W3");
    assert_eq!(w3.value, Some(0.75));
    assert_eq!(w3.met, Some(false));
    let w4 = get("W4");
    assert_eq!(w4.value, Some(12.0));
    assert_eq!(w4.met, Some(true));
    // Ratios whose measurements did not run are left out rather than reported as 0.
    assert!(r.ratios.iter().all(|x| !x.name.starts_with("W1")));
    let check = |name: &str| r.checks.iter().find(|c| c.name.starts_with(name)).unwrap_or_else(|| panic!("no check {name}"));
    assert_eq!(check("W2 p99").met, Some(true));
    // W3 bound: 2 x 0.5 ms fdatasync + 2 ms = 3 ms < 3.5 ms measured.
    assert_eq!(check("W3 p99").target, "p99 <= 3.00 ms");
    assert_eq!(check("W3 p99").met, Some(false));
    assert!(r.validate().is_ok(), "{:?}", r.validate());
}

#[test]
fn json_round_trips_and_carries_the_documented_fields() {
    let r = sample();
    let text = serde_json::to_string_pretty(&r).expect("serialise");
    let back: RunResult = serde_json::from_str(&text).expect("parse back");
    assert_eq!(back, r);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    for key in [
        "schema_version",
        "started_at_us",
        "finished_at_us",
        "command",
        "machine",
        "config",
        "fdatasync",
        "kassa",
        "measurements",
        "flash_sales",
        "gateway_cost",
        "ratios",
        "checks",
        "engine",
        "notes",
    ] {
        assert!(v.get(key).is_some(), "missing top-level key {key}");
    }
    let m0 = &v["measurements"][0];
    for key in ["id", "kind", "transport", "mode", "connections", "ops_per_s", "requests_per_s", "errors", "latency"] {
        assert!(m0.get(key).is_some(), "missing measurement key {key}");
    }
    for key in ["p50_us", "p99_us", "p999_us", "max_us"] {
        assert!(m0["latency"].get(key).is_some(), "missing latency key {key}");
    }
    assert_eq!(m0["kind"], "reference");
}

#[test]
fn validate_rejects_broken_documents() {
    let mut r = sample();
    r.measurements[0].latency.p50_us = 5_000;
    assert!(r.validate().is_err());
    let mut r = sample();
    r.measurements[0].target_rate_per_s = Some(1.0);
    assert!(r.validate().is_err(), "closed run with a target rate");
    let mut r = sample();
    r.ratios[0].denominator = "nope".into();
    assert!(r.validate().is_err());
    let mut r = sample();
    r.schema_version = 99;
    assert!(r.validate().is_err());
}

#[test]
fn table_lists_every_measurement_and_ratio() {
    let r = sample();
    let t = render_table(&r);
    for x in &r.measurements {
        assert!(t.contains(&format!("| {} |", x.id)), "{} missing from\n{t}", x.id);
    }
    assert!(t.contains("W4 checkouts / pg-checkout | 12.000 | >= 10 | yes"), "{t}");
    assert!(t.contains("open @30000/s"), "{t}");
}

#[test]
fn listening_line_and_vm_hwm_parse() {
    let (h, g) = parse_listening_line("kassa listening http=127.0.0.1:4000 grpc=127.0.0.1:4001\n").expect("parses");
    assert_eq!(h.port(), 4000);
    assert_eq!(g.port(), 4001);
    assert!(parse_listening_line("kassa listening http=127.0.0.1:4000").is_none());
    assert!(parse_listening_line("starting up").is_none());
    let status = "Name:\tkassa\nVmPeak:\t  300000 kB\nVmHWM:\t   123456 kB\nVmRSS:\t 100000 kB\n";
    assert_eq!(parse_vm_hwm(status), Some(123_456));
    assert_eq!(parse_vm_hwm("Name: x\n"), None);
}

#[test]
fn kassa_cpu_is_reported_per_operation() {
    let mut x = m("w3_http", 1000.0, 1000.0, None, 500);
    assert_eq!(x.kassa_cpu_us_per_op(), None, "no figure without a Kassa process");
    x.kassa_cpu_s = Some(2.5);
    assert_eq!(x.kassa_cpu_us_per_op(), Some(250.0), "2.5 s over 10 000 operations");
    x.ops = 0;
    assert_eq!(x.kassa_cpu_us_per_op(), None);
}

#[test]
fn cpu_time_is_user_plus_system_after_the_command_name() {
    // A command name with spaces and a parenthesis must not shift the fields.
    let stat = "4242 (kassa (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 269 0 0 20 0 9 0 1000 0 0";
    assert_eq!(parse_cpu_ticks(stat), Some(1000));
    assert_eq!(parse_cpu_ticks("4242 (kassa) S 1"), None);
    // This very process: its CPU time grows while it spins (checked on the counter, not on a clock).
    let pid = std::process::id();
    let before = cpu_seconds(pid).expect("own /proc stat");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut x = 0u64;
    while cpu_seconds(pid).expect("own /proc stat") <= before {
        for _ in 0..1_000_000 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(std::time::Instant::now() < deadline, "CPU time never grew");
    }
    assert!(x > 0);
}

#[test]
fn utc_stamps_are_calendar_dates() {
    assert_eq!(utc_stamp(0), "1970-01-01T00-00-00Z");
    assert_eq!(utc_stamp(951_782_400), "2000-02-29T00-00-00Z");
    assert_eq!(utc_stamp(1_795_223_045), "2026-11-21T01-04-05Z");
}

#[test]
fn zipf_prefers_low_ranks_and_stays_in_range() {
    let z = Zipf::new(1000, 0.99);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let mut counts = vec![0u32; 1000];
    for _ in 0..100_000 {
        counts[z.sample(&mut rng)] += 1;
    }
    assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500], "{:?}", &counts[..12]);
    // Rank 0 of a 1000-rank zipf(0.99) gets about 13 % of the draws.
    assert!((10_000..16_000).contains(&counts[0]), "{}", counts[0]);
    assert_eq!(Zipf::new(0, 1.0).sample(&mut rng), 0);
}

#[test]
fn engine_figures_come_from_all_criterion_samples() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |group: &str, bench: &str, iters: &str, times: &str| {
        let d = dir.path().join(group).join(bench).join("new");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("sample.json"), format!(r#"{{"sampling_mode":"Linear","iters":{iters},"times":{times}}}"#)).expect("write");
    };
    // 3000 commands in 60 ms (20 µs each) = 50 000/s over 2 shards.
    write("w6_durable", "auto_2shards", "[1000.0, 2000.0]", "[10000000.0, 50000000.0]");
    // 0.2 µs per read: 5 000 000/s.
    write("w6_reads", "product_by_id_100k", "[500.0, 500.0]", "[100000.0, 100000.0]");
    // 1000 checkouts in 20 ms: 50 000/s, 10 x the sample's pg-checkout (5 000/s).
    write("w6_checkouts", "auto_2shards", "[400.0, 600.0]", "[8000000.0, 12000000.0]");
    let mut r = sample();
    let found = kassa_bench::engine_import::import(dir.path(), &mut r);
    assert_eq!(found, 3);
    let get = |id: &str| r.engine.iter().find(|e| e.id == id).unwrap_or_else(|| panic!("{id}: {:?}", r.engine)).ops_per_s;
    assert!((get("auto_2shards durable commands/s") - 50_000.0).abs() < 1.0);
    assert!((get("auto_2shards per shard") - 25_000.0).abs() < 1.0);
    assert!((get("point reads/s per core") - 5_000_000.0).abs() < 1.0);
    assert!((get("checkouts/s in process") - 50_000.0).abs() < 1.0);
    let check = |name: &str| r.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name}: {:?}", r.checks));
    assert_eq!(check("W6 durable commands/s per shard").met, Some(false));
    assert_eq!(check("W6 point reads/s per core").met, Some(true));
    let checkouts = check("W6 checkouts in process");
    assert_eq!(checkouts.met, Some(true), "{checkouts:?}");
    assert!(checkouts.measured.contains("10.00 x pg-checkout"), "{checkouts:?}");
    // Importing twice replaces, never duplicates.
    kassa_bench::engine_import::import(dir.path(), &mut r);
    assert_eq!(r.checks.iter().filter(|c| c.name.starts_with("W6")).count(), 3);
}

#[test]
fn basket_rotation_bounds_each_basket() {
    use kassa_bench::workloads::{BASKET_LINES_MAX, BasketRotation};
    let users: Vec<String> = (0..3).map(|i| format!("u{i}")).collect();
    let mut rotation = BasketRotation::new(users, 1000, 9);
    let mut lines: BTreeMap<String, std::collections::BTreeSet<usize>> = BTreeMap::new();
    for n in 0..300 {
        let (user, index) = rotation.next(1000);
        assert_eq!(user, format!("u{}", n % 3), "users in turn");
        assert!(index < 1000);
        lines.entry(user.to_owned()).or_default().insert(index);
    }
    for (user, products) in &lines {
        assert_eq!(products.len() as u64, BASKET_LINES_MAX, "{user}: {products:?}");
    }
}

#[test]
fn a_result_names_no_machine_directory() {
    let cmd = "/home/ci/cache/target/release/kassa-bench run --kassa-bin /home/ci/cache/target/release/kassa --out-dir /src/kassa/benches/results";
    assert_eq!(
        portable_with(cmd, Some("/home/ci/cache/target/"), Some("/src/kassa")),
        "$CARGO_TARGET_DIR/release/kassa-bench run --kassa-bin $CARGO_TARGET_DIR/release/kassa --out-dir benches/results"
    );
    assert_eq!(portable_with("target/release/kassa", Some("target"), Some("/")), "target/release/kassa", "relative paths stay");
}

#[test]
fn the_scale_run_decides_memory_and_w8_only_at_the_target_size() {
    let full = ScaleRun {
        products: 1_000_000,
        baskets: 1_000_000,
        rss_kib: Some(900 * 1024),
        peak_rss_kib: Some(1000 * 1024),
        restart_ready_s: Some(1.5),
        verified: 1000,
        verified_of: 1000,
        ..ScaleRun::default()
    };
    let check = |scale: &ScaleRun, name: &str| {
        let mut r = sample();
        r.scale = Some(scale.clone());
        finish(&mut r);
        r.checks.iter().find(|c| c.name.starts_with(name)).unwrap_or_else(|| panic!("no check {name}")).met
    };
    assert_eq!(check(&full, "memory"), Some(true));
    assert_eq!(check(&full, "W8"), Some(true));
    let heavy = ScaleRun { peak_rss_kib: Some(1100 * 1024), restart_ready_s: Some(9.7), ..full.clone() };
    assert_eq!(check(&heavy, "memory"), Some(false));
    assert_eq!(check(&heavy, "W8"), Some(false));
    let lost = ScaleRun { verified: 999, ..full.clone() };
    assert_eq!(check(&lost, "W8"), Some(false), "a basket missing after the restart fails W8 however fast");
    let small = ScaleRun { products: 10_000, baskets: 10_000, ..full.clone() };
    assert_eq!(check(&small, "memory"), None, "below 1M/1M the target is not judged");
    assert_eq!(check(&small, "W8"), None);
    let mut r = sample();
    r.scale = Some(heavy);
    finish(&mut r);
    let table = render_table(&r);
    assert!(table.contains("W8 after SIGKILL: serving 9.70 s"), "{table}");
    let back: RunResult = serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("schema");
    assert_eq!(back.scale, r.scale);
}
