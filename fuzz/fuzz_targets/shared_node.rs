//! One engine per fuzzing process (opening one per input would measure start-up, not decoding), in a
//! temporary directory, with a little data for the inputs' ids to find, and a runtime to drive the
//! routers on. Shared by the HTTP and gRPC targets through `#[path]`.

use std::sync::OnceLock;

use kassa_engine::{Engine, EngineConfig, PaymentInput, ProductInput, cmd};

pub struct Node {
    pub engine: Engine,
    pub runtime: tokio::runtime::Runtime,
    /// The engine's files, kept for the process's life (the node is never dropped).
    _dir: tempfile::TempDir,
}

pub fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cfg = EngineConfig::new(dir.path());
        cfg.shards = 2;
        cfg.pin_threads = false;
        cfg.cache_bytes = 16 << 20;
        let engine = Engine::open(cfg).expect("the engine opens");
        for (id, name) in [(1, "Pen"), (2, "Ink"), (3, "Pad")] {
            let input = ProductInput {
                name: name.into(),
                description: String::new(),
                price: 150,
                stock: 1_000_000,
                category: "Office".into(),
                image_url: String::new(),
            };
            engine.run_blocking(cmd::create_product_with_id(id, input)).expect("a product");
        }
        engine.run_blocking(cmd::add_item("ana", 1, 1)).expect("a basket");
        engine.run_blocking(cmd::create_payment(PaymentInput::new("ana", "credit_card", "simulated"))).expect("a payment");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        Node { engine, runtime, _dir: dir }
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters and those in `keep`, so that any
/// fuzzed text makes a valid URI whose decoding gives the text back.
pub fn encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
