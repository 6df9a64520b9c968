//! Catalog commands on the product's own shard: create, update, delete.

use super::validate::validate_product;
use super::*;

impl Core {
    /// Product ids owned by this shard are ≡ shard (mod shards), so the owner follows from the id.
    pub(super) fn allocate_product_id(&self) -> u64 {
        let n = u64::from(self.cfg.shards);
        let s = u64::from(self.shard);
        let mut id = (self.max_product_id / n) * n + s;
        while id <= self.max_product_id || id == 0 {
            id += n;
        }
        id
    }

    pub(super) fn create_product(
        &mut self,
        id: Option<u64>,
        input: ProductInput,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        validate_product(&input, self.cfg.currency)?;
        let id = match id {
            Some(id) => {
                if id == 0 || shard_of_product(id, self.cfg.shards) != self.shard {
                    return Err(EngineError::invalid("validation failed: product id is not valid here"));
                }
                if self.products.contains_key(&id) {
                    return Err(EngineError::conflict(format!("conflict: product {id} already exists")));
                }
                id
            }
            None => self.allocate_product_id(),
        };
        let product = Product {
            id,
            name: input.name,
            description: input.description,
            price: input.price,
            category: input.category,
            image_url: input.image_url,
            available: input.stock,
            reserved: 0,
            sold: 0,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        self.emit(Event::ProductPut { product, cause: ProductCause::Created }, fx);
        Ok(Reply::Product(Product::clone(&self.products[&id])))
    }

    pub(super) fn update_product(&mut self, id: u64, input: ProductInput, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        // Fault injection for tests: a panic here is a panic on the shard thread.
        fail::fail_point!("update-product");
        validate_product(&input, self.cfg.currency)?;
        let Some(old) = self.products.get(&id) else {
            return Err(EngineError::not_found("product not found").because(Refusal::ProductNotFound { product_id: id }));
        };
        let product = Product {
            name: input.name,
            description: input.description,
            price: input.price,
            category: input.category,
            image_url: input.image_url,
            available: input.stock,
            updated_at: now,
            ..Product::clone(old)
        };
        self.emit(Event::ProductPut { product, cause: ProductCause::Updated }, fx);
        Ok(Reply::Product(Product::clone(&self.products[&id])))
    }

    pub(super) fn delete_product(&mut self, id: u64, fx: &mut Effects) -> Result<Reply, EngineError> {
        let Some(old) = self.products.get(&id) else {
            return Err(EngineError::not_found("product not found").because(Refusal::ProductNotFound { product_id: id }));
        };
        if old.reserved > 0 {
            return Err(EngineError::conflict(format!("conflict: product {id} has {} units reserved by pending payments", old.reserved)));
        }
        self.emit(Event::ProductDeleted { id, version: 0 }, fx);
        Ok(Reply::Deleted { existed: true })
    }
}
