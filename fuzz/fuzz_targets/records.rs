//! Stored records (rkyv, validated on read) from arbitrary bytes, as a damaged disk would hand them over:
//! never a panic, and a record that decodes re-encodes to bytes that decode to the same record. The
//! first byte picks the record type; the rest is the record.
#![no_main]

use kassa_engine::internals::records::*;
use libfuzzer_sys::fuzz_target;

macro_rules! round_trip {
    ($decode:ident, $bytes:expr) => {
        if let Ok(record) = $decode($bytes) {
            let again = $decode(&encode(&record)).expect("a re-encoded record decodes");
            assert_eq!(again, record);
        }
    };
}

fuzz_target!(|input: &[u8]| {
    let Some((&kind, bytes)) = input.split_first() else { return };
    match kind % 7 {
        0 => round_trip!(decode_product, bytes),
        1 => round_trip!(decode_basket, bytes),
        2 => round_trip!(decode_payment, bytes),
        3 => round_trip!(decode_notification, bytes),
        4 => round_trip!(decode_reservation, bytes),
        5 => round_trip!(decode_idempotency, bytes),
        _ => round_trip!(decode_wallet, bytes),
    }
});
