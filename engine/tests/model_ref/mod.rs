//! The sequential reference model of the engine's checkout rules, and a runner that drives the real
//! engine and the model with the same commands and compares outcomes, final state and invariants.
//! Shared by the property test (`engine/tests/model.rs`) and the fuzz target `model_sequence`.

use std::collections::{BTreeMap, HashMap};

use kassa_engine::{Answer, Cmd, Engine, EngineConfig, ErrorKind, Holding, PaymentInput, PaymentStatus, ProductInput, cmd};

pub const USERS: [&str; 3] = ["ana", "bo", "cy"];
pub const PRODUCTS: usize = 4;

#[derive(Clone, Debug)]
pub enum Op {
    Add { user: usize, product: usize, qty: i64 },
    Update { user: usize, product: usize, qty: i64 },
    Clear { user: usize },
    Pay { user: usize },
    Process { payment: usize },
    Cancel { payment: usize },
    Refund { payment: usize },
    SetStock { product: usize, stock: i64 },
    SetPrice { product: usize, price: i64 },
}

/// The outcome shape both sides must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Ok,
    Err(ErrorKind),
}

#[derive(Clone, Debug, Default)]
struct MProduct {
    price: i64,
    available: i64,
    reserved: i64,
    sold: i64,
}

#[derive(Clone, Debug)]
struct MPayment {
    user: usize,
    status: PaymentStatus,
    lines: Vec<(usize, i64, i64)>, // product, qty, price
}

#[derive(Default)]
struct Model {
    products: Vec<MProduct>,
    baskets: HashMap<usize, BTreeMap<usize, i64>>,
    payments: Vec<MPayment>,
    /// available + reserved + sold per product, moved only by catalog edits.
    totals: Vec<i64>,
}

impl Model {
    fn apply(&mut self, op: &Op) -> Seen {
        match *op {
            Op::Add { user, product, qty } => {
                let wanted = self.baskets.get(&user).and_then(|b| b.get(&product)).copied().unwrap_or(0) + qty;
                if self.products[product].available < wanted {
                    return Seen::Err(ErrorKind::InsufficientStock);
                }
                self.baskets.entry(user).or_default().insert(product, wanted);
                Seen::Ok
            }
            Op::Update { user, product, qty } => {
                let Some(basket) = self.baskets.get_mut(&user) else { return Seen::Err(ErrorKind::NotFound) };
                let Some(cur) = basket.get(&product).copied() else { return Seen::Err(ErrorKind::NotFound) };
                if qty == 0 {
                    basket.remove(&product);
                } else {
                    if qty > cur && self.products[product].available < qty {
                        return Seen::Err(ErrorKind::InsufficientStock);
                    }
                    basket.insert(product, qty);
                }
                Seen::Ok
            }
            Op::Clear { user } => {
                self.baskets.entry(user).or_default().clear();
                Seen::Ok
            }
            Op::Pay { user } => {
                let Some(basket) = self.baskets.get(&user) else { return Seen::Err(ErrorKind::NotFound) };
                if basket.is_empty() {
                    return Seen::Err(ErrorKind::Invalid);
                }
                let lines: Vec<(usize, i64, i64)> = basket.iter().map(|(p, q)| (*p, *q, self.products[*p].price)).collect();
                let short = lines.iter().any(|(p, q, _)| self.products[*p].available < *q);
                let status = if short { PaymentStatus::Failed } else { PaymentStatus::Pending };
                if !short {
                    for (p, q, _) in &lines {
                        self.products[*p].available -= q;
                        self.products[*p].reserved += q;
                    }
                }
                self.payments.push(MPayment { user, status, lines });
                if short { Seen::Err(ErrorKind::InsufficientStock) } else { Seen::Ok }
            }
            Op::Process { payment } => {
                let Some(i) = self.pick(payment) else { return Seen::Err(ErrorKind::NotFound) };
                if self.payments[i].status != PaymentStatus::Pending {
                    return Seen::Err(ErrorKind::Conflict);
                }
                for (p, q, _) in self.payments[i].lines.clone() {
                    self.products[p].reserved -= q;
                    self.products[p].sold += q;
                }
                self.payments[i].status = PaymentStatus::Completed;
                let user = self.payments[i].user;
                self.baskets.entry(user).or_default().clear();
                Seen::Ok
            }
            Op::Cancel { payment } => {
                let Some(i) = self.pick(payment) else { return Seen::Err(ErrorKind::NotFound) };
                if self.payments[i].status != PaymentStatus::Pending {
                    return Seen::Err(ErrorKind::Conflict);
                }
                for (p, q, _) in self.payments[i].lines.clone() {
                    self.products[p].reserved -= q;
                    self.products[p].available += q;
                }
                self.payments[i].status = PaymentStatus::Cancelled;
                Seen::Ok
            }
            Op::Refund { payment } => {
                let Some(i) = self.pick(payment) else { return Seen::Err(ErrorKind::NotFound) };
                if self.payments[i].status != PaymentStatus::Completed {
                    return Seen::Err(ErrorKind::Conflict);
                }
                for (p, q, _) in self.payments[i].lines.clone() {
                    self.products[p].sold -= q;
                    self.products[p].available += q;
                }
                self.payments[i].status = PaymentStatus::Refunded;
                Seen::Ok
            }
            Op::SetStock { product, stock } => {
                let p = &mut self.products[product];
                self.totals[product] += stock - p.available;
                p.available = stock;
                Seen::Ok
            }
            Op::SetPrice { product, price } => {
                self.products[product].price = price;
                Seen::Ok
            }
        }
    }

    fn pick(&self, payment: usize) -> Option<usize> {
        if self.payments.is_empty() { None } else { Some(payment % self.payments.len()) }
    }
}

/// Runs one typed command and keeps only what the model predicts: success or the error's kind.
fn seen<T: Answer + std::fmt::Debug>(engine: &Engine, command: Cmd<T>) -> (Seen, String) {
    match engine.run_blocking(command) {
        Ok(answer) => (Seen::Ok, format!("{answer:?}")),
        Err(e) => (Seen::Err(e.kind), format!("{e:?}")),
    }
}

/// Waits until no payment waits on another shard (releases and restocks are answered after the reply).
/// The minute is a guard against payments that never settle, not a claim about how soon they do.
fn quiesce(engine: &Engine, ids: &[String]) {
    for _ in 0..60_000 {
        let busy = ids.iter().any(|id| {
            let p = engine.payment(id).unwrap().expect("payment exists");
            !matches!(p.holding, Holding::Reserved | Holding::Committed | Holding::Released | Holding::Restocked)
        });
        if !busy {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("payments did not settle");
}

/// Runs `ops` on a fresh engine of `shards` shards and on the model; panics on the first difference.
pub fn run(shards: usize, ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.shards = shards;
    cfg.pin_threads = false;
    let engine = Engine::open(cfg).unwrap();
    let mut model = Model::default();
    let mut ids = Vec::new();
    for i in 0..PRODUCTS {
        let input = ProductInput {
            name: format!("p{i}"),
            description: String::new(),
            price: 100 + i as i64,
            stock: 5,
            category: "c".into(),
            image_url: String::new(),
        };
        let p = engine.run_blocking(cmd::create_product(input)).unwrap();
        ids.push(p.id);
        model.products.push(MProduct { price: 100 + i as i64, available: 5, ..Default::default() });
        model.totals.push(5);
    }
    let mut payment_ids: Vec<String> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let pick = |k: usize| payment_ids.get(k % payment_ids.len().max(1)).cloned().unwrap_or_else(|| "missing".to_string());
        let before = model.payments.len();
        let expected = model.apply(op);
        let (result, detail) = match *op {
            Op::Add { user, product, qty } => seen(&engine, cmd::add_item(USERS[user], ids[product], qty)),
            Op::Update { user, product, qty } => seen(&engine, cmd::update_item(USERS[user], ids[product], qty)),
            Op::Clear { user } => seen(&engine, cmd::clear_basket(USERS[user])),
            Op::Pay { user } => seen(&engine, cmd::create_payment(PaymentInput::new(USERS[user], "paypal", "paypal"))),
            Op::Process { payment } => seen(&engine, cmd::process_payment(pick(payment), "")),
            Op::Cancel { payment } => seen(&engine, cmd::cancel_payment(pick(payment))),
            Op::Refund { payment } => seen(&engine, cmd::refund_payment(pick(payment), None, "test")),
            Op::SetStock { product, stock } | Op::SetPrice { product, price: stock } => {
                let current = engine.product(ids[product]).unwrap().unwrap();
                let (price, stock) = match *op {
                    Op::SetStock { .. } => (current.price, stock),
                    _ => (stock, current.available),
                };
                let input = ProductInput {
                    name: current.name.clone(),
                    description: String::new(),
                    price,
                    stock,
                    category: "c".into(),
                    image_url: String::new(),
                };
                seen(&engine, cmd::update_product(ids[product], input))
            }
        };
        // A failed checkout is still a recorded payment; learn its id from the engine.
        if model.payments.len() > before {
            let user = USERS[match op {
                Op::Pay { user } => *user,
                _ => unreachable!(),
            }];
            let newest = engine.payments_by_user(user, kassa_engine::Page::first(1)).unwrap();
            payment_ids.push(newest[0].id.clone());
        }
        assert_eq!(result, expected, "step {step}: {op:?} -> {detail}");
        quiesce(&engine, &payment_ids);
    }
    // Final state equals the model's.
    for (i, id) in ids.iter().enumerate() {
        let p = engine.product(*id).unwrap().unwrap();
        let m = &model.products[i];
        assert_eq!((p.available, p.reserved, p.sold), (m.available, m.reserved, m.sold), "product {i}");
        assert!(p.available >= 0 && p.reserved >= 0 && p.sold >= 0);
        assert_eq!(p.available + p.reserved + p.sold, model.totals[i], "units conserved except by catalog edits");
    }
    let mut sold_by_payments = [0i64; PRODUCTS];
    for (k, id) in payment_ids.iter().enumerate() {
        let p = engine.payment(id).unwrap().unwrap();
        assert_eq!(p.status, model.payments[k].status, "payment {k}");
        assert_eq!(p.amount, p.items.iter().map(|i| i.price * i.quantity).sum::<i64>());
        if p.status == PaymentStatus::Completed {
            let expected: i64 = model.payments[k].lines.iter().map(|(_, q, price)| q * price).sum();
            assert_eq!(p.amount, expected, "priced from the catalog at checkout");
            for item in &p.items {
                let i = ids.iter().position(|id| *id == item.product_id).unwrap();
                sold_by_payments[i] += item.quantity;
            }
        }
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(engine.product(*id).unwrap().unwrap().sold, sold_by_payments[i], "every completed line sold exactly once");
    }
    for (u, user) in USERS.iter().enumerate() {
        let lines: BTreeMap<u64, i64> = match engine.basket(user).unwrap() {
            Some(b) => b.lines.iter().map(|l| (l.product_id, l.quantity)).collect(),
            None => BTreeMap::new(),
        };
        let expected: BTreeMap<u64, i64> =
            model.baskets.get(&u).map(|b| b.iter().map(|(p, q)| (ids[*p], *q)).collect()).unwrap_or_default();
        assert_eq!(lines, expected, "basket of {user}");
    }
    engine.shutdown();
}
