//! The adapter lag sampler's arithmetic: status reads in, lag samples out.

use std::time::Duration;

use kassa_bench::mirrors::{AdapterPositions, LagTracker, ShardPosition, with_db};

fn read(name: &str, shards: &[(u64, u64)]) -> AdapterPositions {
    AdapterPositions {
        name: name.into(),
        shards: shards
            .iter()
            .enumerate()
            .map(|(shard, &(cursor, head))| ShardPosition { shard, state: "following".into(), cursor, head })
            .collect(),
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn a_head_is_resolved_by_the_first_read_whose_cursor_passed_it() {
    let mut t = LagTracker::default();
    t.observe(ms(0), &[read("redis", &[(11, 10)])]); // caught up at the first read: lag 0
    t.observe(ms(10), &[read("redis", &[(11, 20)])]); // head 20 seen at 10 ms
    t.observe(ms(20), &[read("redis", &[(15, 30)])]); // head 30 seen at 20 ms; 20 not yet reached
    t.observe(ms(30), &[read("redis", &[(21, 30)])]); // 20 reached: 20 ms; 30 still pending
    assert_eq!(t.unresolved(), 1);
    t.observe(ms(50), &[read("redis", &[(31, 30)])]); // 30 reached: 30 ms
    assert_eq!(t.unresolved(), 0);
    let s = &t.summary()[0];
    assert_eq!(s.adapter, "redis");
    assert_eq!(s.lag.count, 3);
    assert_eq!(s.lag.max_us / 1000, 30, "{s:?}");
    assert_eq!(s.lag.p50_us / 1000, 20, "{s:?}");
    assert_eq!(t.reads, 5);
}

#[test]
fn an_idle_shard_adds_no_samples_and_shards_and_adapters_are_apart() {
    let mut t = LagTracker::default();
    for at in 0..5 {
        // Shard 0 idle and caught up; shard 1 moves once and kafka lags behind it.
        let head1 = if at == 0 { 4 } else { 9 };
        t.observe(ms(at * 10), &[read("kafka", &[(3, 2), (5, head1)]), read("postgres", &[(3, 2), (10, head1)])]);
    }
    let by_name: Vec<(String, u64, u64)> = t.summary().into_iter().map(|a| (a.adapter, a.lag.count, a.unresolved)).collect();
    // kafka: shard 0's head once and shard 1's head 4 (both held at once), its head 9 never reached.
    // postgres: every head resolved at the read that saw it.
    assert_eq!(by_name, vec![("kafka".into(), 2, 1), ("postgres".into(), 3, 0)]);
    assert_eq!(t.overall().count, 5);
}

#[test]
fn a_url_gets_the_run_database() {
    assert_eq!(with_db("postgres://kassa:kassa@127.0.0.1:55432/kassa", "x"), "postgres://kassa:kassa@127.0.0.1:55432/x");
    assert_eq!(with_db("redis://127.0.0.1:56379", "12"), "redis://127.0.0.1:56379/12");
    assert_eq!(with_db("redis://127.0.0.1:56379/0", "12"), "redis://127.0.0.1:56379/12");
}
