//! Event payload decoding (replication ingress, damaged disks, journals written by older schemas): never
//! panics; what decodes re-encodes to bytes that decode to the same event. The first byte picks the
//! record schema the bytes claim (every schema a journal may hold); the rest is the event.
#![no_main]

use kassa_engine::Event;
use kassa_engine::internals::{RECORD_SCHEMA, decode_event_of_schema};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&schema, bytes)) = input.split_first() else { return };
    let schema = 1 + u16::from(schema) % RECORD_SCHEMA;
    // The journal hands its decoder aligned payloads; so does this target.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    if let Ok(event) = decode_event_of_schema(schema, &aligned) {
        let again = Event::decode(&event.encode()).expect("re-encoded events decode");
        assert_eq!(again, event);
    }
});
