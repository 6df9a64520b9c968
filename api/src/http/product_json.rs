//! Product answers written straight from the record into one pre-sized buffer: the bytes
//! [`ProductJson`] and [`ProductList`] serialize to (the tests hold the two to each other), without the
//! intermediate structs, their `String`s or serde's per-field calls. A category page of 100 products
//! spent a third of its CPU in that serialization (BENCHMARKS.md).

use std::sync::Arc;

use kassa_engine::money::push_minor;
use kassa_engine::wire::{go_str_len, push_go_str};
use kassa_engine::{Currency, Product};

use super::json_writer::{push_field, push_int, push_time};

#[cfg(doc)]
use super::products::{ProductJson, ProductList};

/// About what one product takes, so a page's buffer is allocated once.
const PRODUCT_BYTES: usize = 256;

/// One product, as [`ProductJson`] writes it.
pub fn push_product(out: &mut String, p: &Product, currency: Currency) {
    out.push_str("{\"id\":");
    push_int(out, p.id);
    push_field(out, "name");
    push_go_str(out, &p.name);
    push_field(out, "description");
    push_go_str(out, &p.description);
    push_field(out, "price");
    push_minor(out, p.price, currency);
    push_field(out, "stock");
    push_int(out, p.available);
    push_field(out, "category");
    push_go_str(out, &p.category);
    push_field(out, "created_at");
    push_time(out, p.created_at);
    push_field(out, "updated_at");
    push_time(out, p.updated_at);
    push_field(out, "reserved");
    push_int(out, p.reserved);
    push_field(out, "sold");
    push_int(out, p.sold);
    out.push('}');
}

/// One product's answer body.
pub fn product_body(p: &Product, currency: Currency) -> String {
    let mut out = String::with_capacity(PRODUCT_BYTES + p.name.len() + p.description.len());
    push_product(&mut out, p, currency);
    out
}

/// A listing's answer body, as [`ProductList`] writes it.
pub fn list_body(products: &[Arc<Product>], currency: Currency, next_after: Option<&str>) -> String {
    let text: usize = products.iter().map(|p| go_str_len(&p.name) + go_str_len(&p.description) + go_str_len(&p.category)).sum();
    let mut out = String::with_capacity(64 + products.len() * PRODUCT_BYTES + text);
    out.push_str("{\"products\":[");
    for (i, p) in products.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_product(&mut out, p, currency);
    }
    out.push(']');
    push_field(&mut out, "count");
    push_int(&mut out, products.len());
    if let Some(cursor) = next_after {
        push_field(&mut out, "next_after");
        push_go_str(&mut out, cursor);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::super::json_writer::strategies::{TEXT, currency};
    use super::super::products::{ProductJson, ProductList};
    use super::*;
    use kassa_engine::wire::to_go_json;
    use proptest::prelude::*;

    fn through_serde_one(p: &Product, currency: Currency) -> String {
        String::from_utf8(to_go_json(&ProductJson::new(p.clone(), currency)).unwrap()).unwrap()
    }

    fn through_serde_list(products: &[Arc<Product>], currency: Currency, next_after: Option<&str>) -> String {
        let list = ProductList {
            products: products.iter().map(|p| ProductJson::new(Product::clone(p), currency)).collect(),
            count: products.len(),
            next_after: next_after.map(str::to_string),
        };
        String::from_utf8(to_go_json(&list).unwrap()).unwrap()
    }

    fn product() -> impl Strategy<Value = Product> {
        // Any counters, any time (out-of-range times are clamped the same way on both paths).
        (any::<u64>(), (TEXT, TEXT, TEXT), any::<i64>(), (any::<i64>(), any::<i64>(), any::<i64>()), (any::<i64>(), any::<i64>())).prop_map(
            |(id, (name, description, category), price, (available, reserved, sold), (created_at, updated_at))| Product {
                id,
                name,
                description,
                price,
                category,
                image_url: String::new(),
                available,
                reserved,
                sold,
                created_at,
                updated_at,
                version: 1,
            },
        )
    }

    proptest! {
        #[test]
        fn one_product_is_byte_for_byte_what_serde_writes(p in product(), currency in currency()) {
            prop_assert_eq!(product_body(&p, currency), through_serde_one(&p, currency));
        }

        #[test]
        fn a_listing_is_byte_for_byte_what_serde_writes(
            products in proptest::collection::vec(product(), 0..6),
            currency in currency(),
            next_after in proptest::option::of("[0-9:-]{1,30}"),
        ) {
            let next_after = next_after.as_deref();
            let products: Vec<Arc<Product>> = products.into_iter().map(Arc::new).collect();
            prop_assert_eq!(list_body(&products, currency, next_after), through_serde_list(&products, currency, next_after));
        }
    }

    #[test]
    fn go_escapes_and_exact_money_as_the_old_services_wrote_them() {
        let p = Product {
            id: 7,
            name: "Tom & Jerry <3>".into(),
            description: "line\nbreak \"quoted\"\u{2028}".into(),
            price: 2999,
            category: "Home & Kitchen".into(),
            image_url: String::new(),
            available: 5,
            reserved: 1,
            sold: 2,
            created_at: 1_714_558_830_120_000,
            updated_at: 1_714_558_830_000_000,
            version: 3,
        };
        assert_eq!(
            product_body(&p, Currency::USD),
            concat!(
                r#"{"id":7,"name":"Tom \u0026 Jerry \u003c3\u003e","description":"line\nbreak \"quoted\"\u2028","price":29.99,"#,
                r#""stock":5,"category":"Home \u0026 Kitchen","created_at":"2024-05-01T10:20:30.12Z","#,
                r#""updated_at":"2024-05-01T10:20:30Z","reserved":1,"sold":2}"#
            )
        );
    }
}
