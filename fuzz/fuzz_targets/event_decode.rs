//! Event payload decoding (replication ingress, damaged disks): never panics; what decodes re-encodes
//! to bytes that decode to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(event) = kassa_engine::Event::decode(bytes) {
        let again = kassa_engine::Event::decode(&event.encode()).expect("re-encoded events decode");
        assert_eq!(again, event);
    }
});
