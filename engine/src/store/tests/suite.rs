//! One behavioural suite for every `Store` implementation: each check is a generic function
//! called with fjall and with redb, each bare and behind a write buffer.

use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::store::{BufferedStore, Keyspace, Lsn, MAX_KEY_BYTES, Store, StoreError, StoreKind, WriteBatch, open_fjall, open_redb};

const CACHE_BYTES: u64 = 8 << 20;

type Opener = fn(&Path) -> Result<Arc<dyn Store>, StoreError>;

fn fjall(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    open_fjall(&dir.join("fjall"), CACHE_BYTES)
}

fn redb(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    open_redb(&dir.join("store.redb"), CACHE_BYTES)
}

fn buffered_fjall(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(BufferedStore::new(fjall(dir)?)?))
}

fn buffered_redb(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(BufferedStore::new(redb(dir)?)?))
}

const OPENERS: [(StoreKind, Opener); 4] =
    [(StoreKind::Fjall, fjall), (StoreKind::Redb, redb), (StoreKind::Fjall, buffered_fjall), (StoreKind::Redb, buffered_redb)];

/// Runs `check` against a fresh store of each kind, bare and behind a write buffer.
fn for_both(check: fn(&Path, Opener)) {
    for (kind, open) in OPENERS {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).expect("open");
        assert_eq!(store.kind(), kind);
        drop(store);
        check(dir.path(), open);
    }
}

fn kv(pairs: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.clone()).collect()
}

fn apply_puts(store: &dyn Store, ks: Keyspace, pairs: &[(&[u8], &[u8])], lsn: Lsn) {
    let mut b = WriteBatch::new();
    for (k, v) in pairs {
        b.put(ks, k, v);
    }
    store.apply(&b, lsn).expect("apply");
}

fn check_fresh_store_is_empty(dir: &Path, open: Opener) {
    let s = open(dir).expect("open");
    assert_eq!(s.applied_lsn().expect("lsn"), 0);
    for ks in Keyspace::ALL {
        assert_eq!(s.get(ks, b"k").expect("get"), None);
        let all = s.range(ks, Unbounded, Unbounded, false, 10).expect("range");
        assert!(all.is_empty());
    }
}

fn check_put_get_delete_and_order_within_batch(dir: &Path, open: Opener) {
    let s = open(dir).expect("open");
    let mut b = WriteBatch::new();
    assert!(b.is_empty());
    b.put(Keyspace::Products, b"a", b"1");
    b.put(Keyspace::Products, b"b", b"2");
    b.put(Keyspace::Baskets, b"a", b"basket");
    // Later operations on one key win, in both directions.
    b.put(Keyspace::Products, b"c", b"3");
    b.delete(Keyspace::Products, b"c");
    b.delete(Keyspace::Products, b"d");
    b.put(Keyspace::Products, b"d", b"4");
    b.put(Keyspace::Products, b"a", b"1bis");
    assert_eq!(b.len(), 8);
    s.apply(&b, 1).expect("apply");
    assert_eq!(s.applied_lsn().expect("lsn"), 1);

    assert_eq!(s.get(Keyspace::Products, b"a").expect("get"), Some(b"1bis".to_vec()));
    assert_eq!(s.get(Keyspace::Products, b"b").expect("get"), Some(b"2".to_vec()));
    assert_eq!(s.get(Keyspace::Products, b"c").expect("get"), None);
    assert_eq!(s.get(Keyspace::Products, b"d").expect("get"), Some(b"4".to_vec()));
    // Keyspaces are separate namespaces.
    assert_eq!(s.get(Keyspace::Baskets, b"a").expect("get"), Some(b"basket".to_vec()));
    assert_eq!(s.get(Keyspace::Baskets, b"b").expect("get"), None);

    let mut del = WriteBatch::new();
    del.delete(Keyspace::Products, b"a");
    s.apply(&del, 2).expect("apply");
    assert_eq!(s.get(Keyspace::Products, b"a").expect("get"), None);
    assert_eq!(s.get(Keyspace::Baskets, b"a").expect("get"), Some(b"basket".to_vec()));

    // Empty values and binary keys round-trip.
    apply_puts(&*s, Keyspace::Meta, &[(&[0, 0xFF, 0], b"")], 3);
    assert_eq!(s.get(Keyspace::Meta, &[0, 0xFF, 0]).expect("get"), Some(Vec::new()));
}

fn check_apply_is_monotonic(dir: &Path, open: Opener) {
    let s = open(dir).expect("open");
    apply_puts(&*s, Keyspace::Users, &[(b"u", b"five")], 5);
    // Replays of LSN <= applied are no-ops.
    apply_puts(&*s, Keyspace::Users, &[(b"u", b"again")], 5);
    apply_puts(&*s, Keyspace::Users, &[(b"u", b"older"), (b"x", b"x")], 3);
    assert_eq!(s.applied_lsn().expect("lsn"), 5);
    assert_eq!(s.get(Keyspace::Users, b"u").expect("get"), Some(b"five".to_vec()));
    assert_eq!(s.get(Keyspace::Users, b"x").expect("get"), None);
    // An empty batch still advances the LSN (a journal record with no store effect).
    s.apply(&WriteBatch::new(), 9).expect("apply");
    assert_eq!(s.applied_lsn().expect("lsn"), 9);
    apply_puts(&*s, Keyspace::Users, &[(b"u", b"ten")], 10);
    assert_eq!(s.get(Keyspace::Users, b"u").expect("get"), Some(b"ten".to_vec()));
    assert_eq!(s.applied_lsn().expect("lsn"), 10);
}

fn check_range_bounds_reverse_and_limit(dir: &Path, open: Opener) {
    let s = open(dir).expect("open");
    let ks = Keyspace::ProductsByPrice;
    apply_puts(&*s, ks, &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"d", b"4"), (b"e", b"5")], 1);
    let r = |start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool, limit: usize| {
        keys(&s.range(ks, start, end, reverse, limit).expect("range"))
    };
    let v = |ks: &[&[u8]]| ks.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    assert_eq!(s.range(ks, Unbounded, Unbounded, false, 2).expect("range"), kv(&[(b"a", b"1"), (b"b", b"2")]));
    assert_eq!(r(Unbounded, Unbounded, true, 2), v(&[b"e", b"d"]));
    assert_eq!(r(Included(b"b"), Included(b"d"), false, 10), v(&[b"b", b"c", b"d"]));
    assert_eq!(r(Excluded(b"b"), Excluded(b"d"), false, 10), v(&[b"c"]));
    assert_eq!(r(Included(b"b"), Excluded(b"e"), true, 10), v(&[b"d", b"c", b"b"]));
    assert_eq!(r(Included(b"bb"), Unbounded, true, 1), v(&[b"e"]));
    assert_eq!(r(Unbounded, Excluded(b"c"), true, 10), v(&[b"b", b"a"]));
    assert_eq!(r(Included(b"c"), Included(b"c"), false, 10), v(&[b"c"]));
    // Bad input: inverted or empty ranges and a zero limit yield nothing, never a panic.
    assert!(r(Included(b"d"), Included(b"b"), false, 10).is_empty());
    assert!(r(Excluded(b"c"), Excluded(b"c"), true, 10).is_empty());
    assert!(r(Included(b"c"), Excluded(b"c"), false, 10).is_empty());
    assert!(r(Unbounded, Unbounded, false, 0).is_empty());
    assert_eq!(r(Unbounded, Unbounded, false, usize::MAX).len(), 5);
}

fn check_prefix(dir: &Path, open: Opener) {
    let s = open(dir).expect("open");
    let ks = Keyspace::ProductsByCategory;
    apply_puts(
        &*s,
        ks,
        &[
            (b"books/1", b""),
            (b"books/2", b""),
            (b"booksx", b""),
            (b"book", b""),
            (b"toys/1", b""),
            (&[0xFF, 0xFF, 1], b""),
            (&[0xFF, 0xFF], b""),
            (&[0xFF, 0xFE], b""),
        ],
        1,
    );
    let p = |prefix: &[u8], limit: usize| keys(&s.prefix(ks, prefix, limit).expect("prefix"));
    assert_eq!(p(b"books/", 10), vec![b"books/1".to_vec(), b"books/2".to_vec()]);
    assert_eq!(p(b"books/", 1), vec![b"books/1".to_vec()]);
    assert_eq!(p(b"books", 10), vec![b"books/1".to_vec(), b"books/2".to_vec(), b"booksx".to_vec()]);
    assert!(p(b"garden", 10).is_empty());
    assert!(p(b"books/", 0).is_empty());
    // A prefix of 0xFF bytes has no finite upper bound.
    assert_eq!(p(&[0xFF, 0xFF], 10), vec![vec![0xFF, 0xFF], vec![0xFF, 0xFF, 1]]);
    assert_eq!(p(&[0xFF], 10).len(), 3);
    // The empty prefix matches everything.
    assert_eq!(p(b"", 100).len(), 8);
}

fn check_get_answers_each_key(dir: &Path, open: Opener) {
    let s = open(dir).expect("open");
    let ks = Keyspace::Products;
    apply_puts(&*s, ks, &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], 1);
    let too_long = vec![b'x'; 100_000];
    let keys: [&[u8]; 5] = [b"c", b"missing", b"a", b"c", &too_long];
    let got: Vec<Option<Vec<u8>>> = keys.iter().map(|k| s.get(ks, k).expect("get")).collect();
    assert_eq!(got, vec![Some(b"3".to_vec()), None, Some(b"1".to_vec()), Some(b"3".to_vec()), None]);
}

fn check_for_each_streams_in_order_and_stops(dir: &Path, open: Opener) {
    let s = open(dir).expect("open");
    let ks = Keyspace::Notifications;
    let mut b = WriteBatch::new();
    for i in (0u64..300).rev() {
        b.put(ks, &i.to_be_bytes(), &i.to_le_bytes());
    }
    b.put(Keyspace::Payments, b"other", b"x");
    s.apply(&b, 1).expect("apply");

    let mut seen = Vec::new();
    s.for_each(ks, &mut |k, v| {
        seen.push((k.to_vec(), v.to_vec()));
        true
    })
    .expect("for_each");
    let want: Vec<_> = (0u64..300).map(|i| (i.to_be_bytes().to_vec(), i.to_le_bytes().to_vec())).collect();
    assert_eq!(seen, want);

    let mut calls = 0;
    s.for_each(ks, &mut |_, _| {
        calls += 1;
        calls < 7
    })
    .expect("for_each");
    assert_eq!(calls, 7);
}

fn check_persist_then_reopen_keeps_everything(dir: &Path, open: Opener) {
    {
        let s = open(dir).expect("open");
        for lsn in 1..=20u64 {
            apply_puts(&*s, Keyspace::Payments, &[(&lsn.to_be_bytes(), b"p")], lsn);
        }
        assert_eq!(s.persist().expect("persist"), 20);
    }
    let s = open(dir).expect("reopen");
    assert_eq!(s.applied_lsn().expect("lsn"), 20);
    let all = s.range(Keyspace::Payments, Unbounded, Unbounded, false, 100).expect("range");
    assert_eq!(all.len(), 20);
    // Recovery sizes its tables by this hint.
    assert_eq!(s.len_hint(Keyspace::Payments), 20);
    assert_eq!(s.len_hint(Keyspace::Baskets), 0);
    // Writing continues where it left off.
    apply_puts(&*s, Keyspace::Payments, &[(b"z", b"z")], 21);
    assert_eq!(s.persist().expect("persist"), 21);
}

/// Each batch `lsn` puts key `lsn` and sets a counter to `lsn`, so a consistent state with
/// applied LSN `l` holds exactly keys 1..=l and counter l.
fn assert_consistent(s: &dyn Store, at_least: Lsn) -> Lsn {
    let applied = s.applied_lsn().expect("lsn");
    assert!(applied >= at_least, "applied {applied} < durable {at_least}");
    let counter = s.get(Keyspace::Meta, b"counter").expect("get");
    if applied == 0 {
        assert_eq!(counter, None);
    } else {
        assert_eq!(counter, Some(applied.to_be_bytes().to_vec()));
    }
    let mut n = 0u64;
    s.for_each(Keyspace::Reservations, &mut |k, _| {
        n += 1;
        assert_eq!(k, n.to_be_bytes());
        true
    })
    .expect("for_each");
    assert_eq!(n, applied, "data does not match applied LSN");
    applied
}

fn counter_batch(lsn: Lsn) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(Keyspace::Reservations, &lsn.to_be_bytes(), &[7; 100]);
    b.put(Keyspace::Meta, b"counter", &lsn.to_be_bytes());
    b
}

fn check_drop_without_persist_reopens_consistent(dir: &Path, open: Opener) {
    {
        let s = open(dir).expect("open");
        for lsn in 1..=50 {
            s.apply(&counter_batch(lsn), lsn).expect("apply");
        }
        assert_eq!(s.persist().expect("persist"), 50);
        for lsn in 51..=120 {
            s.apply(&counter_batch(lsn), lsn).expect("apply");
        }
    }
    let s = open(dir).expect("reopen");
    let applied = assert_consistent(&*s, 50);
    // Replay from the journal continues from there.
    for lsn in applied + 1..=130 {
        s.apply(&counter_batch(lsn), lsn).expect("apply");
    }
    assert_consistent(&*s, 130);
}

/// Readers on other threads only ever see whole batches, and see every acknowledged batch.
fn check_concurrent_readers_see_committed_states(dir: &Path, open: Opener) {
    const KEYS: u64 = 16;
    const BATCHES: u64 = 400;
    let s = open(dir).expect("open");
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Readers that have finished at least one read: the writer does not say `done` before both have, or
    // a loaded machine could run every batch before a reader thread is first scheduled.
    let reading = Arc::new(AtomicU64::new(0));
    let ks = Keyspace::Idempotency;

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let s = Arc::clone(&s);
            let acked = Arc::clone(&acked);
            let done = Arc::clone(&done);
            let reading = Arc::clone(&reading);
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut last_seen = 0u64;
                // Bounded: the writer finishes in BATCHES steps; the cap only guards a hang.
                for _ in 0..5_000_000u64 {
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                    let floor = acked.load(Ordering::Acquire);
                    let all = s.range(ks, Unbounded, Unbounded, false, 100).expect("range");
                    if floor > 0 {
                        assert_eq!(all.len() as u64, KEYS);
                    }
                    let values: Vec<u64> = all.iter().map(|(_, v)| u64::from_be_bytes(v.as_slice().try_into().expect("8"))).collect();
                    // One range call is one snapshot: every key carries the same batch number.
                    assert!(values.windows(2).all(|w| w[0] == w[1]), "torn read {values:?}");
                    if let Some(&v) = values.first() {
                        assert!(v >= floor, "read {v} older than acknowledged {floor}");
                        assert!(v >= last_seen, "went back in time: {v} < {last_seen}");
                        last_seen = v;
                    }
                    let rev = s.prefix(ks, b"key", 100).expect("prefix");
                    let first = rev.first().map(|(_, v)| v.clone());
                    assert!(rev.iter().all(|(_, v)| Some(v) == first.as_ref()));
                    let got = s.get(ks, b"key00").expect("get");
                    if let Some(g) = got {
                        let g = u64::from_be_bytes(g.as_slice().try_into().expect("8"));
                        assert!(g >= last_seen);
                    }
                    reads += 1;
                    if reads == 1 {
                        reading.fetch_add(1, Ordering::AcqRel);
                    }
                }
                reads
            })
        })
        .collect();

    for lsn in 1..=BATCHES {
        let mut b = WriteBatch::new();
        for k in 0..KEYS {
            b.put(ks, format!("key{k:02}").as_bytes(), &lsn.to_be_bytes());
        }
        s.apply(&b, lsn).expect("apply");
        acked.store(lsn, Ordering::Release);
        if lsn % 100 == 0 {
            s.persist().expect("persist");
        }
    }
    // A reader that stopped early (a failed assertion) is reported by the join below.
    while reading.load(Ordering::Acquire) < 2 && !readers.iter().any(|r| r.is_finished()) {
        std::thread::yield_now();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        let reads = r.join().expect("reader panicked");
        assert!(reads > 0);
    }
}

fn check_bad_input_is_an_error_not_a_panic(dir: &Path, open: Opener) {
    let s = open(dir).expect("open");
    apply_puts(&*s, Keyspace::Users, &[(b"kept", b"1")], 1);
    let long = vec![b'k'; MAX_KEY_BYTES + 1];
    for bad_key in [&b""[..], &long[..]] {
        let mut b = WriteBatch::new();
        b.put(Keyspace::Users, b"good", b"2");
        b.delete(Keyspace::Users, bad_key);
        let res = s.apply(&b, 2);
        assert!(matches!(res, Err(StoreError::InvalidKey { keyspace: "users", .. })), "{res:?}");
        // Nothing of the rejected batch was written and the LSN did not move.
        assert_eq!(s.get(Keyspace::Users, b"good").expect("get"), None);
        assert_eq!(s.applied_lsn().expect("lsn"), 1);
        assert_eq!(s.get(Keyspace::Users, bad_key).expect("get"), None);
        assert!(s.prefix(Keyspace::Users, bad_key, 10).expect("prefix").len() <= 2);
    }
    // Over-long bounds behave like their clamped equivalents.
    let max_key = vec![b'k'; MAX_KEY_BYTES];
    apply_puts(&*s, Keyspace::Users, &[(&max_key, b"m"), (b"z", b"z")], 2);
    let r = s.range(Keyspace::Users, Included(&long), Unbounded, false, 10).expect("range");
    assert_eq!(keys(&r), vec![b"z".to_vec()]);
    let r = s.range(Keyspace::Users, Unbounded, Excluded(&long), false, 10).expect("range");
    assert_eq!(keys(&r), vec![b"kept".to_vec(), max_key.clone()]);
    assert!(s.prefix(Keyspace::Users, &long, 10).expect("prefix").is_empty());
    assert_eq!(s.get(Keyspace::Users, &max_key).expect("get"), Some(b"m".to_vec()));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    for_both(check_bad_input_is_an_error_not_a_panic);
}

#[test]
fn fresh_store_is_empty() {
    for_both(check_fresh_store_is_empty);
}

#[test]
fn put_get_delete_and_order_within_batch() {
    for_both(check_put_get_delete_and_order_within_batch);
}

#[test]
fn apply_is_monotonic() {
    for_both(check_apply_is_monotonic);
}

#[test]
fn range_bounds_reverse_and_limit() {
    for_both(check_range_bounds_reverse_and_limit);
}

#[test]
fn prefix_scans() {
    for_both(check_prefix);
}

#[test]
fn get_answers_each_key() {
    for_both(check_get_answers_each_key);
}

#[test]
fn for_each_streams_in_order_and_stops() {
    for_both(check_for_each_streams_in_order_and_stops);
}

#[test]
fn persist_then_reopen_keeps_everything() {
    for_both(check_persist_then_reopen_keeps_everything);
}

#[test]
fn drop_without_persist_reopens_consistent() {
    for_both(check_drop_without_persist_reopens_consistent);
}

#[test]
fn concurrent_readers_see_committed_states() {
    for_both(check_concurrent_readers_see_committed_states);
}
