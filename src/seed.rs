//! The old product service's seed catalog (contract §2.5), inserted into an empty catalog at start.

use kassa_engine::{Engine, EngineError, Page, ProductInput, ProductQuery, cmd, money};

/// (id, name, description, price, stock, category), in the old insertion order.
pub const PRODUCTS: [(u64, &str, &str, &str, i64, &str); 10] = [
    (1, "MacBook Pro 16-inch", "Apple MacBook Pro with M2 Pro chip", "2499.99", 10, "Electronics"),
    (2, "iPhone 15 Pro", "Apple iPhone 15 Pro with titanium design", "999.99", 25, "Electronics"),
    (3, "Sony WH-1000XM5", "Sony noise-canceling headphones", "399.99", 15, "Electronics"),
    (4, "Nike Air Max 270", "Nike Air Max 270 running shoes", "150.00", 50, "Clothing"),
    (5, "Adidas Ultraboost 22", "Adidas Ultraboost 22 running shoes", "180.00", 30, "Clothing"),
    (6, "The Great Gatsby", "Classic novel by F. Scott Fitzgerald", "12.99", 100, "Books"),
    (7, "1984", "Dystopian novel by George Orwell", "14.99", 75, "Books"),
    (8, "Coffee Maker Deluxe", "Programmable coffee maker with timer", "89.99", 5, "Home & Kitchen"),
    (9, "Bluetooth Speaker", "Portable Bluetooth speaker with 360° sound", "79.99", 20, "Electronics"),
    (10, "Yoga Mat Premium", "Non-slip yoga mat with carrying strap", "45.00", 40, "Sports"),
];

/// Inserts the seed products if the catalog is empty; returns how many were inserted.
pub fn seed_if_empty(engine: &Engine) -> Result<usize, EngineError> {
    if !engine.products(&ProductQuery::All, Page::first(1))?.is_empty() {
        return Ok(0);
    }
    let currency = engine.currency();
    for (id, name, description, price, stock, category) in PRODUCTS {
        let price = money::parse_minor(price, currency).map_err(|e| EngineError::invalid(e.to_string()))?;
        let input = ProductInput {
            name: name.into(),
            description: description.into(),
            price,
            stock,
            category: category.into(),
            image_url: String::new(),
        };
        engine.run_blocking(cmd::create_product_with_id(id, input))?;
    }
    Ok(PRODUCTS.len())
}
