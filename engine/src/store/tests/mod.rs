//! The stores' suites: one contract run against both backends, a model check, and kill -9 recovery.

mod crash;
mod model;
mod suite;

use super::*;

#[test]
fn prefix_upper_bound_carries_over_0xff() {
    assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
    assert_eq!(prefix_upper_bound(&[1, 0xFF]), Some(vec![2]));
    assert_eq!(prefix_upper_bound(&[0xFF, 0xFF]), None);
    assert_eq!(prefix_upper_bound(b""), None);
}

#[test]
fn inverted_ranges_are_empty() {
    use Bound::*;
    assert!(range_is_empty(Included(b"b"), Included(b"a")));
    assert!(range_is_empty(Included(b"a"), Excluded(b"a")));
    assert!(!range_is_empty(Included(b"a"), Included(b"a")));
    assert!(!range_is_empty(Unbounded, Excluded(b"a")));
}

#[test]
fn over_long_bounds_are_clamped_equivalently() {
    use Bound::*;
    let long = vec![b'a'; MAX_KEY_BYTES + 3];
    assert_eq!(clamp_start(Included(&long)), Excluded(&long[..MAX_KEY_BYTES]));
    assert_eq!(clamp_end(Excluded(&long)), Included(&long[..MAX_KEY_BYTES]));
    assert_eq!(clamp_start(Included(b"a")), Included(&b"a"[..]));
    assert!(impossible_key(b""));
    assert!(impossible_key(&long));
    assert!(!impossible_key(b"a"));
}

#[test]
fn invalid_batches_are_rejected() {
    let mut b = WriteBatch::new();
    b.put(Keyspace::Users, b"ok", b"v");
    assert!(validate_batch(&b).is_ok());
    b.delete(Keyspace::Users, b"");
    assert!(matches!(validate_batch(&b), Err(StoreError::InvalidKey { keyspace: "users", len_bytes: 0 })));
    let mut b = WriteBatch::new();
    b.put(Keyspace::Meta, &vec![1; MAX_KEY_BYTES + 1], b"v");
    assert!(validate_batch(&b).is_err());
}

#[test]
fn keyspace_names_are_unique_and_indexed() {
    let mut names: Vec<_> = Keyspace::ALL.iter().map(|k| k.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Keyspace::ALL.len());
    for (i, ks) in Keyspace::ALL.iter().enumerate() {
        assert_eq!(ks.index(), i);
    }
}

#[test]
fn bad_lsn_record_is_an_error() {
    assert!(matches!(decode_lsn(b"abc"), Err(StoreError::BadAppliedLsn { len_bytes: 3 })));
    assert_eq!(decode_lsn(&7u64.to_be_bytes()).ok(), Some(7));
}
