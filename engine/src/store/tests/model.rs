//! Model test: random batches and reads against both stores, both behind a write buffer too, and a
//! `BTreeMap` model; every read must agree with the model, and the stores with each other.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use crate::store::{BufferedStore, Keyspace, Lsn, Store, StoreError, WriteBatch, open_fjall, open_redb};
use proptest::prelude::*;

const CACHE_BYTES: u64 = 4 << 20;
/// A few keyspaces are enough to catch cross-keyspace mix-ups.
const SPACES: [Keyspace; 3] = [Keyspace::Products, Keyspace::Payments, Keyspace::Meta];

#[derive(Clone, Debug)]
enum Op {
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
}

#[derive(Clone, Debug)]
enum Step {
    /// Applied at the next LSN.
    Apply(Vec<Op>),
    /// Applied at an LSN already applied: must change nothing.
    Replay(Vec<Op>),
    Get(usize, Vec<u8>),
    Range(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, bool, usize),
    Prefix(usize, Vec<u8>, usize),
    ForEach(usize, usize),
    /// Persist, close and reopen both stores.
    Reopen,
    /// The buffered stores move what they hold into their backing stores.
    Project,
}

/// Keys from a tiny alphabet (including 0xFF) so that ranges, prefixes and overwrites collide.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xFE, 0xFF]), 0..4)
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![Just(Bound::Unbounded), key().prop_map(Bound::Included), key().prop_map(Bound::Excluded),]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SPACES.len(), key(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(s, k, v)| Op::Put(s, k, v)),
        1 => (0..SPACES.len(), key()).prop_map(|(s, k)| Op::Delete(s, k)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let space = 0..SPACES.len();
    prop_oneof![
        6 => prop::collection::vec(op(), 0..12).prop_map(Step::Apply),
        1 => prop::collection::vec(op(), 1..4).prop_map(Step::Replay),
        2 => (space.clone(), key()).prop_map(|(s, k)| Step::Get(s, k)),
        3 => (space.clone(), bound(), bound(), any::<bool>(), 0usize..6)
            .prop_map(|(s, a, b, r, l)| Step::Range(s, a, b, r, l)),
        2 => (space.clone(), key(), 0usize..6).prop_map(|(s, p, l)| Step::Prefix(s, p, l)),
        1 => (space, 0usize..6).prop_map(|(s, l)| Step::ForEach(s, l)),
        1 => Just(Step::Reopen),
        2 => Just(Step::Project),
    ]
}

type Model = [BTreeMap<Vec<u8>, Vec<u8>>; SPACES.len()];
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn model_range(m: &BTreeMap<Vec<u8>, Vec<u8>>, a: &Bound<Vec<u8>>, b: &Bound<Vec<u8>>, reverse: bool, limit: usize) -> Entries {
    // Filter instead of BTreeMap::range, which panics on inverted bounds.
    let inside = |k: &Vec<u8>| {
        let lo = match a {
            Bound::Included(s) => k >= s,
            Bound::Excluded(s) => k > s,
            Bound::Unbounded => true,
        };
        let hi = match b {
            Bound::Included(e) => k <= e,
            Bound::Excluded(e) => k < e,
            Bound::Unbounded => true,
        };
        lo && hi
    };
    let all = m.iter().filter(|(k, _)| inside(k));
    let pick = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
    if reverse { all.rev().take(limit).map(pick).collect() } else { all.take(limit).map(pick).collect() }
}

fn to_batch(ops: &[Op]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for op in ops {
        match op {
            Op::Put(s, k, v) => b.put(SPACES[*s], k, v),
            Op::Delete(s, k) => b.delete(SPACES[*s], k),
        }
    }
    b
}

/// fjall and redb bare, and another fjall and redb each behind a write buffer.
fn open_all(dir: &Path) -> (Vec<Arc<dyn Store>>, Vec<Arc<BufferedStore>>) {
    let fjall = |name: &str| open_fjall(&dir.join(name), CACHE_BYTES).expect("open fjall");
    let redb = |name: &str| open_redb(&dir.join(name), CACHE_BYTES).expect("open redb");
    let buffered = [fjall("buffered-fjall"), redb("buffered.redb")].map(|s| Arc::new(BufferedStore::new(s).expect("buffer")));
    let mut stores = vec![fjall("fjall"), redb("store.redb")];
    stores.extend(buffered.iter().map(|b| b.clone() as Arc<dyn Store>));
    (stores, buffered.into())
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    // tmpfs when there is one: this test is about logic, and every case opens, persists and
    // reopens stores, whose fsyncs cost seconds on a busy disk.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("tempdir");
    let (mut stores, mut buffered) = open_all(dir.path());
    let mut model: Model = Default::default();
    let mut lsn: Lsn = 0;

    for step in steps {
        for s in &stores {
            prop_assert_eq!(s.applied_lsn().expect("lsn"), lsn, "{:?}", s.kind());
        }
        match step {
            Step::Apply(ops) => {
                let batch = to_batch(&ops);
                let invalid = ops.iter().any(|op| match op {
                    Op::Put(_, k, _) | Op::Delete(_, k) => k.is_empty(),
                });
                if invalid {
                    // Rejected as a whole: nothing written, LSN unchanged.
                    for s in &stores {
                        let res = s.apply(&batch, lsn + 1);
                        prop_assert!(matches!(res, Err(StoreError::InvalidKey { len_bytes: 0, .. })), "{:?}: {:?}", s.kind(), res);
                    }
                    continue;
                }
                lsn += 1;
                for s in &stores {
                    s.apply(&batch, lsn).expect("apply");
                }
                for op in ops {
                    match op {
                        Op::Put(s, k, v) => {
                            model[s].insert(k, v);
                        }
                        Op::Delete(s, k) => {
                            model[s].remove(&k);
                        }
                    }
                }
            }
            Step::Replay(ops) => {
                let batch = to_batch(&ops);
                for s in &stores {
                    s.apply(&batch, lsn).expect("replay");
                    s.apply(&batch, lsn.saturating_sub(1)).expect("replay");
                }
            }
            Step::Get(i, k) => {
                for s in &stores {
                    let got = s.get(SPACES[i], &k).expect("get");
                    prop_assert_eq!(got.as_ref(), model[i].get(&k), "{:?}", s.kind());
                }
            }
            Step::Range(i, a, b, reverse, limit) => {
                let want = model_range(&model[i], &a, &b, reverse, limit);
                for s in &stores {
                    let got = s.range(SPACES[i], as_ref(&a), as_ref(&b), reverse, limit).expect("range");
                    prop_assert_eq!(&got, &want, "{:?}", s.kind());
                }
            }
            Step::Prefix(i, p, limit) => {
                let want: Entries =
                    model[i].iter().filter(|(k, _)| k.starts_with(&p)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect();
                for s in &stores {
                    let got = s.prefix(SPACES[i], &p, limit).expect("prefix");
                    prop_assert_eq!(&got, &want, "{:?}", s.kind());
                }
            }
            Step::ForEach(i, stop_after) => {
                let want: Entries = model[i].iter().take(stop_after.max(1)).map(|(k, v)| (k.clone(), v.clone())).collect();
                for s in &stores {
                    let mut got = Vec::new();
                    s.for_each(SPACES[i], &mut |k, v| {
                        got.push((k.to_vec(), v.to_vec()));
                        got.len() < stop_after.max(1)
                    })
                    .expect("for_each");
                    prop_assert_eq!(&got, &want, "{:?}", s.kind());
                }
            }
            Step::Reopen => {
                for s in &stores {
                    prop_assert_eq!(s.persist().expect("persist"), lsn);
                }
                drop((stores, buffered));
                (stores, buffered) = open_all(dir.path());
            }
            Step::Project => {
                for b in &buffered {
                    prop_assert_eq!(b.flush().expect("flush"), lsn);
                    prop_assert_eq!(b.buffered_entries(), 0);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    // No regression file: this crate's tests directory is shared; failures print their input.
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn stores_match_btreemap_model(steps in prop::collection::vec(step(), 1..40)) {
        run(steps)?;
    }
}
