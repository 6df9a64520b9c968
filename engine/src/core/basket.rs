//! Basket commands on the user's shard. Lines are priced from the catalog at the moment they are added.

use super::validate::{check_quantity, check_user};
use super::*;

impl Core {
    pub(super) fn live_basket(&self, user_id: &str, now: Micros) -> Option<&Basket> {
        self.baskets.get(user_id).filter(|b| b.expires_at > now)
    }

    pub(super) fn fresh_basket(&self, user_id: &str, now: Micros) -> Basket {
        Basket {
            id: format!("basket_{user_id}_{}", now / MICROS_PER_SECOND),
            user_id: user_id.to_string(),
            lines: Vec::new(),
            created_at: now,
            updated_at: now,
            expires_at: now + self.cfg.basket_ttl,
            version: 0,
        }
    }

    /// The user's live basket, or a new one (an expired basket is abandoned first).
    pub(super) fn basket_for_write(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> Basket {
        if let Some(b) = self.live_basket(user_id, now) {
            return b.clone();
        }
        if self.baskets.contains_key(user_id) {
            self.abandon_basket(user_id, now, fx);
        }
        self.fresh_basket(user_id, now)
    }

    pub(super) fn create_basket(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        if let Some(b) = self.live_basket(user_id, now) {
            return Ok(Reply::Basket(b.clone()));
        }
        let basket = self.basket_for_write(user_id, now, fx);
        self.emit(Event::BasketPut { basket, cause: BasketCause::Created }, fx);
        Ok(Reply::Basket(self.baskets[user_id].clone()))
    }

    pub(super) fn delete_basket(&mut self, user_id: &str, why: BasketGone, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        let Some(old) = self.baskets.get(user_id) else {
            return Ok(Reply::Deleted { existed: false });
        };
        let basket_id = old.id.clone();
        self.emit(Event::BasketDeleted { user_id: user_id.to_string(), basket_id, version: 0, why }, fx);
        Ok(Reply::Deleted { existed: true })
    }

    pub(super) fn abandon_basket(&mut self, user_id: &str, now: Micros, fx: &mut Effects) {
        let Some(old) = self.baskets.get(user_id).cloned() else { return };
        let _ = self.delete_basket(user_id, BasketGone::Abandoned, fx);
        if !old.lines.is_empty() {
            let data = vec![("basket_id".to_string(), old.id.clone()), ("reason".to_string(), "Basket expired".to_string())];
            self.notify(user_id, "Basket Abandoned", "Your basket expired before checkout", "info", "low", data, now, fx);
        }
    }

    pub(super) fn add_item(
        &mut self,
        user_id: &str,
        product_id: u64,
        quantity: i64,
        now: Micros,
        catalog: &dyn CatalogView,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        check_quantity(quantity, false)?;
        let Some(product) = catalog.product(product_id) else {
            return Err(EngineError::not_found(format!("product not found: {product_id}")).because(Refusal::ProductNotFound { product_id }));
        };
        let current =
            self.live_basket(user_id, now).and_then(|b| b.lines.iter().find(|l| l.product_id == product_id)).map_or(0, |l| l.quantity);
        let wanted = current + quantity;
        if wanted > limits::QUANTITY_MAX {
            return Err(EngineError::invalid(format!("validation failed: quantity must be between 1 and {}", limits::QUANTITY_MAX)));
        }
        // Better than the old system: the whole quantity in the basket is checked, not just this add.
        if product.available < wanted {
            return Err(short_in_basket(product_id, wanted, product.available));
        }
        let mut basket = self.basket_for_write(user_id, now, fx);
        match basket.lines.iter_mut().find(|l| l.product_id == product_id) {
            Some(line) => line.quantity = wanted,
            None => {
                if basket.lines.len() >= limits::BASKET_LINES_MAX {
                    return Err(EngineError::invalid(format!(
                        "validation failed: a basket holds at most {} lines",
                        limits::BASKET_LINES_MAX
                    )));
                }
                basket.lines.push(BasketLine {
                    product_id,
                    name: product.name.clone(),
                    price: product.price,
                    category: product.category.clone(),
                    quantity,
                });
            }
        }
        basket.updated_at = now;
        self.emit(Event::BasketPut { basket, cause: BasketCause::ItemAdded }, fx);
        Ok(Reply::Basket(self.baskets[user_id].clone()))
    }

    /// Sets a line's quantity; 0 removes it.
    pub(super) fn update_item(
        &mut self,
        user_id: &str,
        product_id: u64,
        quantity: i64,
        now: Micros,
        catalog: &dyn CatalogView,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        check_quantity(quantity, true)?;
        let Some(mut basket) = self.live_basket(user_id, now).cloned() else {
            return Err(EngineError::not_found(format!("basket not found for user {user_id}"))
                .because(Refusal::BasketNotFound { user_id: user_id.to_string() }));
        };
        let Some(pos) = basket.lines.iter().position(|l| l.product_id == product_id) else {
            return Err(EngineError::not_found(format!("product {product_id} not found in basket of user {user_id}"))
                .because(Refusal::BasketLineNotFound { user_id: user_id.to_string(), product_id }));
        };
        let cause = if quantity == 0 {
            basket.lines.remove(pos);
            BasketCause::ItemRemoved
        } else {
            if quantity > basket.lines[pos].quantity {
                let available = catalog.product(product_id).map_or(0, |p| p.available);
                if available < quantity {
                    return Err(short_in_basket(product_id, quantity, available));
                }
            }
            basket.lines[pos].quantity = quantity;
            BasketCause::ItemUpdated
        };
        basket.updated_at = now;
        self.emit(Event::BasketPut { basket, cause }, fx);
        Ok(Reply::Basket(self.baskets[user_id].clone()))
    }

    pub(super) fn clear_basket(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        let mut basket = self.basket_for_write(user_id, now, fx);
        let had_lines = !basket.lines.is_empty();
        basket.lines.clear();
        basket.updated_at = now;
        self.emit(Event::BasketPut { basket: basket.clone(), cause: BasketCause::Cleared }, fx);
        if had_lines {
            let data = vec![("basket_id".to_string(), basket.id.clone()), ("reason".to_string(), "Cleared by user".to_string())];
            self.notify(user_id, "Basket Cleared", "Your basket has been cleared", "info", "low", data, now, fx);
        }
        Ok(Reply::Basket(self.baskets[user_id].clone()))
    }
}

/// A basket line that would ask for more units than are for sale (the old system's message).
fn short_in_basket(product_id: u64, requested: i64, available: i64) -> EngineError {
    EngineError::insufficient_stock(
        format!("product is not available or insufficient stock: product {product_id}, requested {requested}, available {available}"),
        product_id,
        requested,
        available,
    )
}
