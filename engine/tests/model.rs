//! Random command sequences against the real engine (N = 1 and N = 3 shards, durable sync mode) and
//! against a simple sequential reference model (`model_ref`): same outcomes, same final state, and the
//! invariants — stock never negative, available + reserved + sold constant except by catalog edits,
//! every completed payment's lines sold exactly once, amounts equal to their lines.

mod model_ref;

use model_ref::{Op, PRODUCTS, USERS, run};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..USERS.len(), 0..PRODUCTS, 1i64..4).prop_map(|(user, product, qty)| Op::Add { user, product, qty }),
        1 => (0..USERS.len(), 0..PRODUCTS, 0i64..4).prop_map(|(user, product, qty)| Op::Update { user, product, qty }),
        1 => (0..USERS.len()).prop_map(|user| Op::Clear { user }),
        3 => (0..USERS.len()).prop_map(|user| Op::Pay { user }),
        3 => (0..8usize).prop_map(|payment| Op::Process { payment }),
        1 => (0..8usize).prop_map(|payment| Op::Cancel { payment }),
        1 => (0..8usize).prop_map(|payment| Op::Refund { payment }),
        1 => (0..PRODUCTS, 0i64..6).prop_map(|(product, stock)| Op::SetStock { product, stock }),
        1 => (0..PRODUCTS, 1i64..500).prop_map(|(product, price)| Op::SetPrice { product, price }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn one_shard_matches_the_model(ops in prop::collection::vec(op(), 1..50)) {
        run(1, &ops);
    }

    #[test]
    fn three_shards_match_the_model(ops in prop::collection::vec(op(), 1..50)) {
        run(3, &ops);
    }
}
