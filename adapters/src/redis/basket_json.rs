//! The value of a `basket:<user_id>` key, byte for byte as the old basket service stored it
//! (seed-contract §3.4): its struct's field order, `items` always an array, `category` omitted when
//! empty, exact decimal money, Go's `time.Time` text and Go's HTML escaping.

use kassa_engine::wire::{Money, WideMoney, rfc3339, to_go_json};
use kassa_engine::{Basket, BasketLine, Currency};
use serde::Serialize;

#[derive(Serialize)]
struct BasketJson<'a> {
    id: &'a str,
    user_id: &'a str,
    items: Vec<ItemJson<'a>>,
    total: WideMoney,
    created_at: String,
    updated_at: String,
    expires_at: String,
    // `metadata` comes here in the old struct, omitted when empty: Kassa's baskets have none.
}

#[derive(Serialize)]
struct ItemJson<'a> {
    product_id: u64,
    name: &'a str,
    price: Money,
    quantity: i64,
    subtotal: WideMoney,
    #[serde(skip_serializing_if = "str::is_empty")]
    category: &'a str,
}

/// Subtotal and total in i128: a sum of lines at the engine's limits still fits, and it is exact.
fn subtotal(line: &BasketLine) -> i128 {
    i128::from(line.price) * i128::from(line.quantity)
}

/// The key's JSON value for `basket`, its money in `currency` (the shop's: a basket has no currency).
pub(super) fn basket_json(basket: &Basket, currency: Currency) -> Vec<u8> {
    let items = basket
        .lines
        .iter()
        .map(|l| ItemJson {
            product_id: l.product_id,
            name: &l.name,
            price: Money::new(l.price, currency),
            quantity: l.quantity,
            subtotal: WideMoney { minor: subtotal(l), currency },
            category: &l.category,
        })
        .collect();
    let json = BasketJson {
        id: &basket.id,
        user_id: &basket.user_id,
        items,
        total: WideMoney { minor: basket.lines.iter().map(subtotal).sum(), currency },
        created_at: rfc3339(basket.created_at),
        updated_at: rfc3339(basket.updated_at),
        expires_at: rfc3339(basket.expires_at),
    };
    // Strings, integers and exact decimals only: serializing cannot fail; an empty value would show in
    // `verify` if it ever did.
    to_go_json(&json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_basket_has_an_empty_items_array() {
        let b = Basket {
            id: "basket_u_1".into(),
            user_id: "u".into(),
            lines: vec![],
            created_at: 1_714_558_830_000_000,
            updated_at: 1_714_558_830_500_000,
            expires_at: 1_714_645_230_000_000,
            version: 3,
        };
        let json = String::from_utf8(basket_json(&b, Currency::USD)).unwrap();
        assert_eq!(
            json,
            r#"{"id":"basket_u_1","user_id":"u","items":[],"total":0,"created_at":"2024-05-01T10:20:30Z","updated_at":"2024-05-01T10:20:30.5Z","expires_at":"2024-05-02T10:20:30Z"}"#
        );
    }
}
