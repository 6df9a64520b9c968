//! Basket answers written straight from the record into one pre-sized buffer: the bytes [`BasketJson`]
//! serializes to (the tests hold the two to each other). Every basket write answers with the whole
//! basket; through serde that was a copy of each line's strings and a tenth of W3's CPU (BENCHMARKS.md).

use kassa_engine::money::push_minor;
use kassa_engine::wire::{go_str_len, push_go_str};
use kassa_engine::{Basket, BasketLine, Currency};

use super::json_writer::{push_field, push_int, push_time};

#[cfg(doc)]
use super::baskets::{BasketJson, ItemJson};

/// About what a basket takes besides its lines and their text, and what one line takes besides its text.
const BASKET_BYTES: usize = 192;
const LINE_BYTES: usize = 112;

/// One line, as [`ItemJson`] writes it.
fn push_item(out: &mut String, l: &BasketLine, currency: Currency) {
    out.push_str("{\"product_id\":");
    push_int(out, l.product_id);
    push_field(out, "name");
    push_go_str(out, &l.name);
    push_field(out, "price");
    push_minor(out, l.price, currency);
    push_field(out, "quantity");
    push_int(out, l.quantity);
    push_field(out, "subtotal");
    push_minor(out, l.subtotal(), currency);
    push_field(out, "category");
    push_go_str(out, &l.category);
    out.push('}');
}

/// A basket's answer body, as [`BasketJson`] writes it.
pub fn basket_body(b: &Basket, currency: Currency) -> String {
    let text: usize = go_str_len(&b.id)
        + go_str_len(&b.user_id)
        + b.lines.iter().map(|l| LINE_BYTES + go_str_len(&l.name) + go_str_len(&l.category)).sum::<usize>();
    let mut out = String::with_capacity(BASKET_BYTES + text);
    out.push_str("{\"id\":");
    push_go_str(&mut out, &b.id);
    push_field(&mut out, "user_id");
    push_go_str(&mut out, &b.user_id);
    out.push_str(",\"items\":[");
    for (i, l) in b.lines.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_item(&mut out, l, currency);
    }
    out.push(']');
    push_field(&mut out, "total");
    push_minor(&mut out, b.total(), currency);
    push_field(&mut out, "item_count");
    push_int(&mut out, b.item_count());
    push_field(&mut out, "created_at");
    push_time(&mut out, b.created_at);
    push_field(&mut out, "updated_at");
    push_time(&mut out, b.updated_at);
    push_field(&mut out, "expires_at");
    push_time(&mut out, b.expires_at);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::super::baskets::BasketJson;
    use super::super::json_writer::strategies::{TEXT, currency};
    use super::*;
    use kassa_engine::wire::to_go_json;
    use proptest::prelude::*;

    fn through_serde(b: &Basket, currency: Currency) -> String {
        String::from_utf8(to_go_json(&BasketJson::new(b, currency)).unwrap()).unwrap()
    }

    fn line() -> impl Strategy<Value = BasketLine> {
        // Prices and quantities wide enough to pass every sign and digit count, but whose subtotals
        // stay in range (as the engine's limits keep them).
        (any::<u64>(), TEXT, TEXT, -1_000_000_000i64..1_000_000_000, -10_000i64..10_000)
            .prop_map(|(product_id, name, category, price, quantity)| BasketLine { product_id, name, price, category, quantity })
    }

    fn basket() -> impl Strategy<Value = Basket> {
        (TEXT, TEXT, proptest::collection::vec(line(), 0..6), (any::<i64>(), any::<i64>(), any::<i64>()), any::<u64>()).prop_map(
            |(id, user_id, lines, (created_at, updated_at, expires_at), version)| Basket {
                id,
                user_id,
                lines,
                created_at,
                updated_at,
                expires_at,
                version,
            },
        )
    }

    proptest! {
        #[test]
        fn a_basket_is_byte_for_byte_what_serde_writes(b in basket(), currency in currency()) {
            prop_assert_eq!(basket_body(&b, currency), through_serde(&b, currency));
        }
    }

    #[test]
    fn an_empty_basket_has_an_empty_list_and_a_line_its_exact_money() {
        let mut b = Basket {
            id: "basket_u1_1714558830".into(),
            user_id: "u1".into(),
            lines: vec![],
            created_at: 1_714_558_830_000_000,
            updated_at: 1_714_558_830_120_000,
            expires_at: 1_714_645_230_000_000,
            version: 4,
        };
        assert_eq!(
            basket_body(&b, Currency::USD),
            concat!(
                r#"{"id":"basket_u1_1714558830","user_id":"u1","items":[],"total":0,"item_count":0,"#,
                r#""created_at":"2024-05-01T10:20:30Z","updated_at":"2024-05-01T10:20:30.12Z","expires_at":"2024-05-02T10:20:30Z"}"#
            )
        );
        b.lines.push(BasketLine { product_id: 7, name: "Tom & Jerry".into(), price: 2999, category: "Toys".into(), quantity: 3 });
        assert!(basket_body(&b, Currency::USD).contains(
            r#""items":[{"product_id":7,"name":"Tom \u0026 Jerry","price":29.99,"quantity":3,"subtotal":89.97,"category":"Toys"}],"total":89.97,"item_count":3,"#
        ));
    }
}
