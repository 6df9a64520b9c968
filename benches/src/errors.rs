//! Errors of the load generator, counted by kind.

use std::collections::BTreeMap;
use std::fmt;

/// Why one operation failed, as counted in the reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The server answered with an unexpected HTTP status.
    #[error("http status {0}")]
    Status(u16),
    /// No answer within the request timeout.
    #[error("timeout")]
    Timeout,
    /// The connection could not be established.
    #[error("connect: {0}")]
    Connect(String),
    /// The connection broke while sending or receiving.
    #[error("io: {0}")]
    Io(String),
    /// The answer was not what the contract promises (unparsable JSON, missing field).
    #[error("bad response: {0}")]
    BadResponse(String),
    /// A gRPC status other than OK.
    #[error("grpc {0}")]
    Grpc(String),
    /// A gRPC answer with `success = false`.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A reference store (PostgreSQL, Redis) failed.
    #[error("store: {0}")]
    Store(String),
}

impl OpError {
    /// The key under which this error is counted: a small fixed set, never the free text.
    pub fn kind(&self) -> String {
        match self {
            OpError::Status(code) => format!("status_{code}"),
            OpError::Timeout => "timeout".into(),
            OpError::Connect(_) => "connect".into(),
            OpError::Io(_) => "io".into(),
            OpError::BadResponse(_) => "bad_response".into(),
            OpError::Grpc(code) => format!("grpc_{code}"),
            OpError::Rejected(_) => "rejected".into(),
            OpError::Store(_) => "store".into(),
        }
    }
}

/// Error counts by kind, plus the first message of each kind (for diagnosis).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    pub counts: BTreeMap<String, u64>,
    pub samples: BTreeMap<String, String>,
}

/// Longest message kept per kind.
const SAMPLE_CHARS_MAX: usize = 300;

impl ErrorCounts {
    pub fn add(&mut self, error: &OpError) {
        let kind = error.kind();
        *self.counts.entry(kind.clone()).or_insert(0) += 1;
        self.samples.entry(kind).or_insert_with(|| error.to_string().chars().take(SAMPLE_CHARS_MAX).collect());
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &other.samples {
            self.samples.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl fmt::Display for ErrorCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.counts.is_empty() {
            return f.write_str("-");
        }
        let parts: Vec<String> = self.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}
