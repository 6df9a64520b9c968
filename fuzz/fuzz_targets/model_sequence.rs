//! Command sequences against the real engine (one shard, then three) and the reference model of
//! `engine/tests/model_ref`: the same outcomes, final state and invariants as the property test, with
//! the sequences found by coverage instead of by chance. Each 3 bytes of input are one command.
#![no_main]

#[path = "../../engine/tests/model_ref/mod.rs"]
mod model_ref;

use libfuzzer_sys::fuzz_target;
use model_ref::{Op, PRODUCTS, USERS, run};

/// Long enough to reach refunds of processed payments, short enough that an engine per run stays cheap.
const OPS_MAX: usize = 40;

fn op(kind: u8, a: u8, b: u8) -> Op {
    let user = usize::from(a) % USERS.len();
    let product = usize::from(b) % PRODUCTS;
    let payment = usize::from(a) % 8;
    match kind % 16 {
        0..=3 => Op::Add { user, product, qty: 1 + i64::from(b % 3) },
        4 => Op::Update { user, product, qty: i64::from(a % 4) },
        5 => Op::Clear { user },
        6..=8 => Op::Pay { user },
        9..=11 => Op::Process { payment },
        12 => Op::Cancel { payment },
        13 => Op::Refund { payment },
        14 => Op::SetStock { product, stock: i64::from(a % 6) },
        _ => Op::SetPrice { product, price: 1 + i64::from(a) },
    }
}

fuzz_target!(|input: &[u8]| {
    let ops: Vec<Op> = input.chunks_exact(3).take(OPS_MAX).map(|c| op(c[0], c[1], c[2])).collect();
    if ops.is_empty() {
        return;
    }
    run(1, &ops);
    run(3, &ops);
});
