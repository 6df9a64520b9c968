//! Reads, served from any thread straight from the owners' stores: they never queue behind writes.
//! Every listing is bounded by a page (`offset` + `limit`); results that span shards are merged in a
//! stable order.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::command::{EngineError, ErrorKind};
use crate::engine::{Engine, store_error};
use crate::model::{Basket, Notification, Payment, PaymentMethod, PaymentStatus, Product, now_micros};
use std::sync::Arc;

use crate::store::{Keyspace, Store};
use crate::views::{self, Views};

/// Largest page any listing returns.
pub const PAGE_LIMIT_MAX: usize = 1000;
/// Deepest offset a listing accepts (deeper paging should filter instead).
pub const PAGE_OFFSET_MAX: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
    /// Keyset paging: the page starts just after this position of the listing's order (then `offset`
    /// more are skipped), so a deep page costs what the first one does.
    pub after: Option<Cursor>,
}

/// A position in a product listing's order: the listing's sort key (0 when it sorts by id alone) and
/// the product id that breaks ties. Written as `key:id`; clients pass back what `Cursor::of` gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub key: i128,
    pub id: u64,
}

impl Cursor {
    pub fn parse(text: &str) -> Option<Cursor> {
        let (key, id) = text.split_once(':')?;
        Some(Cursor { key: key.parse().ok()?, id: id.parse().ok()? })
    }

    /// Where `product` stands in the order of `query`'s listing.
    pub fn of(query: &ProductQuery, product: &Product) -> Cursor {
        let key = match query {
            ProductQuery::PriceRange { .. } => i128::from(product.price),
            ProductQuery::TopByPrice => -i128::from(product.price),
            ProductQuery::StockAtMost(_) => i128::from(product.available),
            _ => 0,
        };
        Cursor { key, id: product.id }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.key, self.id)
    }
}

impl Page {
    pub fn new(offset: usize, limit: usize) -> Page {
        Page { offset: offset.min(PAGE_OFFSET_MAX), limit: limit.clamp(0, PAGE_LIMIT_MAX), after: None }
    }
    pub fn first(limit: usize) -> Page {
        Page::new(0, limit)
    }
    pub fn after(self, cursor: Option<Cursor>) -> Page {
        Page { after: cursor, ..self }
    }
    fn end(&self) -> usize {
        self.offset + self.limit
    }
    fn cut<T>(&self, items: Vec<T>) -> Vec<T> {
        items.into_iter().skip(self.offset).take(self.limit).collect()
    }
    /// Whether a listing position comes after the cursor (every position does without one).
    fn past(&self, position: Cursor) -> bool {
        self.after.is_none_or(|after| position > after)
    }
}

/// Product listings of the old API.
#[derive(Clone, Debug, PartialEq)]
pub enum ProductQuery {
    /// By id.
    All,
    /// Exact, case-sensitive category, by id.
    Category(String),
    /// Inclusive price range in minor units, by price then id.
    PriceRange { min: i64, max: i64 },
    /// Most expensive first.
    TopByPrice,
    /// Case-insensitive substring of the name, by id.
    NameContains(String),
    /// Available units equal to the value, by id.
    StockEquals(i64),
    /// Available units at most the value, fewest first.
    StockAtMost(i64),
    /// Created within [from, to] (micros), by id.
    CreatedBetween { from: i64, to: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProductStats {
    pub total_products: u64,
    pub total_categories: u64,
    /// Minor units, rounded to the nearest unit.
    pub average_price: i64,
    /// Σ price × available, minor units.
    pub total_value: i128,
    /// Products with at most 10 available (out-of-stock included), as the old stats did.
    pub low_stock_products: u64,
    pub out_of_stock_products: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryStats {
    pub name: String,
    pub product_count: u64,
    pub average_price: i64,
}

/// Filters for payment listings.
#[derive(Clone, Debug, Default)]
pub struct PaymentFilter {
    pub status: Option<PaymentStatus>,
    pub method: Option<String>,
    pub provider: Option<String>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
}

impl PaymentFilter {
    fn matches(&self, p: &Payment) -> bool {
        self.status.is_none_or(|s| p.status == s)
            && self.method.as_ref().is_none_or(|m| &p.method == m)
            && self.provider.as_ref().is_none_or(|m| &p.provider == m)
            && self.amount_min.is_none_or(|v| p.amount >= v)
            && self.amount_max.is_none_or(|v| p.amount <= v)
            && self.created_from.is_none_or(|v| p.created_at >= v)
            && self.created_to.is_none_or(|v| p.created_at <= v)
    }
}

/// Filters for a user's notifications.
#[derive(Clone, Debug, Default)]
pub struct NotificationFilter {
    pub status: Option<String>,
    pub kind: Option<String>,
    pub unread_only: bool,
}

/// A page of a user's notifications plus the counts the old API reported.
#[derive(Clone, Debug, Default)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    /// All of the user's notifications matching the filter.
    pub total: u64,
    pub unread: u64,
}

fn round_div(sum: i128, count: u64) -> i64 {
    if count == 0 {
        return 0;
    }
    let c = i128::from(count);
    let q = (sum * 2 + c * sum.signum()) / (2 * c);
    i64::try_from(q).unwrap_or(i64::MAX)
}

impl Engine {
    /// A product from its shard's in-memory view (`product_view`), as the view shares it: no store read,
    /// no decode, no copy.
    pub fn product(&self, id: u64) -> Result<Option<Arc<Product>>, EngineError> {
        let shard = crate::core::shard_of_product(id, self.shards() as u32) as usize;
        Ok(self.views()[shard].products.get(id))
    }

    /// A version of `category`'s listing: it changes whenever a product enters, leaves or changes in the
    /// category (sometimes also when one of another category does). A listing read after this version
    /// was taken holds every change it counts, so an answer kept with it may be given again for as long
    /// as the version is the same (each shard's count only grows, so their sum is equal only when none
    /// moved).
    pub fn category_version(&self, category: &str) -> u64 {
        self.views().iter().map(|v| v.products.category_version(category)).fold(0, u64::wrapping_add)
    }

    /// The products of `ids` that exist, in the order of `ids`, as the view shares them.
    fn products_by_id(&self, ids: &[u64]) -> Vec<Arc<Product>> {
        ids.iter().filter_map(|&id| self.product(id).ok().flatten()).collect()
    }

    /// Visits every product of every shard (shard by shard, each in id order) until `f` returns false.
    pub fn for_each_product(&self, f: &mut dyn FnMut(Product) -> bool) -> Result<(), EngineError> {
        self.for_each_decoded(|v| &v.catalog, Keyspace::Products, views::decode_product, f)
    }

    /// A page of a listing. Index-ordered listings hand out the view's own records; scans decode theirs.
    pub fn products(&self, query: &ProductQuery, page: Page) -> Result<Vec<Arc<Product>>, EngineError> {
        let want = page.end();
        if want == 0 {
            return Ok(Vec::new());
        }
        // Listings ordered by an index: merge the shards' keys, cut the page, and only then take the page's
        // products from the view (reading everything up to `offset + limit` was most of a deep page's cost).
        let ordered = |mut keys: Vec<(i128, u64)>| -> Vec<Arc<Product>> {
            keys.retain(|&(key, id)| page.past(Cursor { key, id }));
            keys.sort_unstable();
            let ids: Vec<u64> = keys.into_iter().skip(page.offset).take(page.limit).map(|(_, id)| id).collect();
            self.products_by_id(&ids)
        };
        // Each index walk starts at the cursor when there is one: a shard then yields the page's
        // candidates first, however deep the page.
        let after = page.after;
        let index_keys = |ks: Keyspace, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool| -> Result<Vec<Vec<u8>>, EngineError> {
            let mut out = Vec::new();
            for v in self.views() {
                out.extend(v.catalog.range(ks, start, end, reverse, want).map_err(store_error)?.into_iter().map(|(k, _)| k));
            }
            Ok(out)
        };
        let mut all: Vec<Product> = Vec::new();
        match query {
            ProductQuery::Category(category) => {
                let prefix = views::category_prefix(category);
                let start = after.map(|a| views::category_key(category, a.id));
                let start = start.as_deref().map_or(Bound::Included(&prefix[..]), Bound::Excluded);
                let end = crate::store::prefix_upper_bound(&prefix);
                let end = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let keys = index_keys(Keyspace::ProductsByCategory, start, end, false)?;
                return Ok(ordered(keys.iter().filter_map(|k| views::id_from_index_key(k)).map(|id| (0, id)).collect()));
            }
            ProductQuery::PriceRange { min, max } => {
                if min > max {
                    return Ok(Vec::new());
                }
                let lo = views::price_key(*min, 0);
                let hi = views::price_key(*max, u64::MAX);
                // A cursor before the range changes nothing; one inside it starts the walk there.
                let from = after.and_then(|a| i64::try_from(a.key).ok().map(|price| views::price_key(price, a.id))).filter(|k| *k >= lo);
                let start = from.as_ref().map_or(Bound::Included(&lo[..]), |k| Bound::Excluded(&k[..]));
                let keys = index_keys(Keyspace::ProductsByPrice, start, Bound::Included(&hi[..]), false)?;
                return Ok(ordered(
                    keys.iter().filter_map(|k| Some((i128::from(views::price_from_index_key(k)?), views::id_from_index_key(k)?))).collect(),
                ));
            }
            ProductQuery::TopByPrice => {
                // Most expensive first, ties by id: from a cursor at price p the walk goes down from the
                // last key of p (ties past the cursor included) and `ordered` drops what is not past it.
                let until = after.and_then(|a| i64::try_from(-a.key).ok().map(|price| views::price_key(price, u64::MAX)));
                let end = until.as_ref().map_or(Bound::Unbounded, |k| Bound::Included(&k[..]));
                let keys = index_keys(Keyspace::ProductsByPrice, Bound::Unbounded, end, true)?;
                return Ok(ordered(
                    keys.iter()
                        .filter_map(|k| Some((-i128::from(views::price_from_index_key(k)?), views::id_from_index_key(k)?)))
                        .collect(),
                ));
            }
            ProductQuery::All => {
                let from = after.map(|a| views::product_key(a.id));
                let start = from.as_ref().map_or(Bound::Unbounded, |k| Bound::Excluded(&k[..]));
                let keys = index_keys(Keyspace::Products, start, Bound::Unbounded, false)?;
                return Ok(ordered(keys.iter().filter_map(|k| Some((0, u64::from_be_bytes(k.as_slice().try_into().ok()?)))).collect()));
            }
            ProductQuery::StockAtMost(max) => {
                // Fewest first needs every match; the catalog is scanned (an admin listing, not a hot path).
                self.for_each_product(&mut |p| {
                    if p.available <= *max && page.past(Cursor { key: i128::from(p.available), id: p.id }) {
                        all.push(p);
                    }
                    true
                })?;
                all.sort_by_key(|p| (p.available, p.id));
            }
            filter => {
                let needle = match filter {
                    ProductQuery::NameContains(n) => n.to_lowercase(),
                    _ => String::new(),
                };
                let matches = |p: &Product| match filter {
                    ProductQuery::NameContains(_) => p.name.to_lowercase().contains(&needle),
                    ProductQuery::StockEquals(s) => p.available == *s,
                    ProductQuery::CreatedBetween { from, to } => p.created_at >= *from && p.created_at <= *to,
                    _ => false,
                };
                for v in self.views() {
                    // Each shard yields ids in order, so `want` matches per shard are enough for the page.
                    let mut per_shard = 0usize;
                    let mut failure = None;
                    v.catalog
                        .for_each(Keyspace::Products, &mut |_, bytes| match views::decode_product(bytes) {
                            Ok(p) => {
                                if page.past(Cursor { key: 0, id: p.id }) && matches(&p) {
                                    all.push(p);
                                    per_shard += 1;
                                }
                                per_shard < want
                            }
                            Err(e) => {
                                failure = Some(store_error(e));
                                false
                            }
                        })
                        .map_err(store_error)?;
                    if let Some(e) = failure {
                        return Err(e);
                    }
                }
                all.sort_by_key(|p| p.id);
            }
        }
        Ok(page.cut(all).into_iter().map(Arc::new).collect())
    }

    /// `count` distinct products picked uniformly at random.
    pub fn random_products(&self, count: usize) -> Result<Vec<Arc<Product>>, EngineError> {
        use rand::seq::IndexedRandom;
        let mut ids = Vec::new();
        self.for_each_product(&mut |p| {
            ids.push(p.id);
            true
        })?;
        let picked: Vec<u64> = ids.choose_multiple(&mut rand::rng(), count.min(PAGE_LIMIT_MAX)).copied().collect();
        Ok(self.products_by_id(&picked))
    }

    pub fn product_stats(&self) -> Result<ProductStats, EngineError> {
        let mut stats = ProductStats::default();
        let mut categories = std::collections::HashSet::new();
        let mut price_sum: i128 = 0;
        self.for_each_product(&mut |p| {
            stats.total_products += 1;
            categories.insert(p.category.clone());
            price_sum += i128::from(p.price);
            stats.total_value += i128::from(p.price) * i128::from(p.available);
            if p.available <= 10 {
                stats.low_stock_products += 1;
            }
            if p.available == 0 {
                stats.out_of_stock_products += 1;
            }
            true
        })?;
        stats.total_categories = categories.len() as u64;
        stats.average_price = round_div(price_sum, stats.total_products);
        Ok(stats)
    }

    /// Categories by name, with counts and average prices.
    pub fn categories(&self) -> Result<Vec<CategoryStats>, EngineError> {
        let mut by_name: BTreeMap<String, (u64, i128)> = BTreeMap::new();
        self.for_each_product(&mut |p| {
            let e = by_name.entry(p.category).or_default();
            e.0 += 1;
            e.1 += i128::from(p.price);
            true
        })?;
        Ok(by_name
            .into_iter()
            .map(|(name, (count, sum))| CategoryStats { name, product_count: count, average_price: round_div(sum, count) })
            .collect())
    }

    /// The user's basket. An expired basket not yet swept is reported as expired (410 at the API).
    pub fn basket(&self, user_id: &str) -> Result<Option<Basket>, EngineError> {
        if user_id.is_empty() || user_id.len() > crate::core::limits::USER_ID_MAX {
            return Ok(None);
        }
        let shard = crate::core::shard_of_user(user_id, self.shards() as u32) as usize;
        let Some(bytes) = self.views()[shard].state.get(Keyspace::Baskets, user_id.as_bytes()).map_err(store_error)? else {
            return Ok(None);
        };
        let basket = views::decode_basket(&bytes).map_err(store_error)?;
        if basket.expires_at <= now_micros() {
            return Err(EngineError::new(ErrorKind::Expired, "basket is expired"));
        }
        Ok(Some(basket))
    }

    /// The user's stored payment methods: the default first, then oldest first.
    pub fn payment_methods(&self, user_id: &str) -> Result<Vec<PaymentMethod>, EngineError> {
        if user_id.is_empty() || user_id.len() > crate::core::limits::USER_ID_MAX {
            return Ok(Vec::new());
        }
        let shard = crate::core::shard_of_user(user_id, self.shards() as u32) as usize;
        let Some(bytes) = self.views()[shard].state.get(Keyspace::Wallets, user_id.as_bytes()).map_err(store_error)? else {
            return Ok(Vec::new());
        };
        let mut methods = views::decode_wallet(&bytes).map_err(store_error)?.methods;
        // Stable: the rest keep the order they were added in.
        methods.sort_by_key(|m| !m.is_default);
        Ok(methods)
    }

    /// A user's payments, newest first.
    pub fn payments_by_user(&self, user_id: &str, page: Page) -> Result<Vec<Payment>, EngineError> {
        if user_id.is_empty() || user_id.len() > crate::core::limits::USER_ID_MAX {
            return Ok(Vec::new());
        }
        let shard = crate::core::shard_of_user(user_id, self.shards() as u32) as usize;
        let v = &self.views()[shard];
        let prefix = views::user_prefix(user_id);
        let mut end = prefix.clone();
        *end.last_mut().expect("prefix ends with a separator") = 1;
        let keys = v
            .state
            .range(Keyspace::PaymentsByUser, Bound::Included(&prefix[..]), Bound::Excluded(&end[..]), true, page.end())
            .map_err(store_error)?;
        let mut out = Vec::with_capacity(keys.len());
        for (k, _) in keys.into_iter().skip(page.offset) {
            let id = &k[prefix.len() + 8..];
            if let Some(bytes) = v.state.get(Keyspace::Payments, id).map_err(store_error)? {
                out.push(views::decode_payment(&bytes).map_err(store_error)?);
            }
        }
        Ok(out)
    }

    /// Visits every payment of every shard until `f` returns false (aggregates and filtered listings).
    pub fn for_each_payment(&self, f: &mut dyn FnMut(Payment) -> bool) -> Result<(), EngineError> {
        self.for_each_decoded(|v| &v.state, Keyspace::Payments, views::decode_payment, f)
    }

    /// Visits every record of `ks` in the store `store` picks, shard by shard, until `f` returns false;
    /// a record that does not decode ends the walk with an error.
    fn for_each_decoded<T>(
        &self,
        store: fn(&Views) -> &Arc<dyn Store>,
        ks: Keyspace,
        decode: fn(&[u8]) -> Result<T, views::DecodeError>,
        f: &mut dyn FnMut(T) -> bool,
    ) -> Result<(), EngineError> {
        let mut failure = None;
        for v in self.views() {
            let mut go_on = true;
            store(v)
                .for_each(ks, &mut |_, bytes| match decode(bytes) {
                    Ok(record) => {
                        go_on = f(record);
                        go_on
                    }
                    Err(e) => {
                        failure = Some(store_error(e));
                        false
                    }
                })
                .map_err(store_error)?;
            if let Some(e) = failure.take() {
                return Err(e);
            }
            if !go_on {
                break;
            }
        }
        Ok(())
    }

    /// Payments matching `filter`, newest first.
    pub fn payments(&self, filter: &PaymentFilter, page: Page) -> Result<Vec<Payment>, EngineError> {
        let mut all = Vec::new();
        self.for_each_payment(&mut |p| {
            if filter.matches(&p) {
                all.push(p);
            }
            true
        })?;
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        Ok(page.cut(all))
    }

    /// A user's notifications, newest first, with the old API's counts. Event notifications about stock
    /// live with the product that caused them, so every shard is asked.
    pub fn notifications_for_user(&self, user_id: &str, filter: &NotificationFilter, page: Page) -> Result<NotificationPage, EngineError> {
        let mut result = NotificationPage::default();
        if user_id.is_empty() || user_id.len() > crate::core::limits::USER_ID_MAX {
            return Ok(result);
        }
        let prefix = views::user_prefix(user_id);
        let mut all = Vec::new();
        for v in self.views() {
            let keys = v.state.prefix(Keyspace::NotificationsByUser, &prefix, usize::MAX).map_err(store_error)?;
            for (k, _) in keys {
                let id = &k[prefix.len() + 8..];
                if let Some(bytes) = v.state.get(Keyspace::Notifications, id).map_err(store_error)? {
                    let n = views::decode_notification(&bytes).map_err(store_error)?;
                    if n.read_at.is_none() {
                        result.unread += 1;
                    }
                    let keep = filter.status.as_ref().is_none_or(|s| &n.status == s)
                        && (filter.status.is_some() || filter.kind.as_ref().is_none_or(|t| &n.kind == t))
                        && (!filter.unread_only || n.read_at.is_none());
                    if keep {
                        all.push(n);
                    }
                }
            }
        }
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        result.total = all.len() as u64;
        result.items = page.cut(all);
        Ok(result)
    }
}
