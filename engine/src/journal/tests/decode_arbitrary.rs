//! Decoders at trust boundaries take arbitrary bytes without panicking: journal frames and event
//! payloads (what replication ingress and a damaged disk can hand us). The cargo-fuzz targets in
//! `fuzz/` explore the same functions coverage-guided; this runs on every test run.

use crate::Event;
use crate::journal::format::decode_frame;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn frames_from_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn events_from_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Event::decode(&bytes);
    }

    #[test]
    fn damaged_real_events_never_panic(flip in 0usize..4096, value in any::<u8>(), cut in 0usize..4096) {
        let event = Event::BasketDeleted {
            user_id: "someone".into(),
            basket_id: "basket_someone_1".into(),
            version: 7,
            why: crate::event::BasketGone::Abandoned,
        };
        let mut bytes = event.encode().to_vec();
        let i = flip % bytes.len();
        bytes[i] ^= value;
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = Event::decode(&bytes);
    }
}
