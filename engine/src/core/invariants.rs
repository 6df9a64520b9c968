//! What must hold between any two steps; checked by tests, the simulation and recovery.

use super::*;

impl Core {
    /// Checks the invariants that must hold between any two steps. Cheap enough for tests and simulation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut held: HashMap<u64, i64> = HashMap::default();
        for r in self.reservations.values() {
            if r.state == ReservationState::Held {
                for (id, qty) in &r.lines {
                    *held.entry(*id).or_default() += qty;
                }
            }
        }
        for p in self.products.values() {
            if p.available < 0 || p.reserved < 0 || p.sold < 0 {
                return Err(format!("negative stock: {p:?}"));
            }
            let expect = held.get(&p.id).copied().unwrap_or(0);
            if p.reserved != expect {
                return Err(format!("product {} reserved {} but held reservations add up to {expect}", p.id, p.reserved));
            }
        }
        for b in self.baskets.values() {
            if b.lines.iter().any(|l| l.quantity < 1) {
                return Err(format!("basket line with quantity < 1: {b:?}"));
            }
        }
        for p in self.payments.values() {
            if p.amount != p.items.iter().map(PaymentItem::subtotal).sum::<i64>() {
                return Err(format!("payment {} amount differs from its items", p.id));
            }
        }
        Ok(())
    }
}
