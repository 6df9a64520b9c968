//! The journal's suites: round trips, recovery from torn and corrupt tails, live tailing, and decoding of
//! arbitrary bytes.

mod decode_arbitrary;
mod recovery;
mod roundtrip;
mod tail;
