//! The references measured in the same run: `ceiling` (a minimal axum handler), `pg-checkout`,
//! `pg-browse` (PostgreSQL, default durability) and `redis-fsync` (Redis with `appendfsync always`).

use std::time::SystemTime;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, NoTls, Statement};

use crate::BenchError;
use crate::errors::OpError;
use crate::load::{Op, OpOutcome};
use crate::workloads::BasketRotation;

/// The path and body the ceiling server answers.
pub const CEILING_PATH: &str = "/ceiling";
pub const CEILING_BODY: &str = r#"{"status":"ok","service":"ceiling"}"#;

/// `ceiling_page`: the same minimal server answering a fixed body as large as a category page.
pub const CEILING_PAGE_PATH: &str = "/ceiling/page";

/// Serves the ceiling reference on `listener` until the process ends; with `page`, also that body on
/// [`CEILING_PAGE_PATH`].
pub async fn serve_ceiling(listener: tokio::net::TcpListener, page: Option<bytes::Bytes>) -> std::io::Result<()> {
    use axum::routing::get;
    const JSON: [(http::HeaderName, &str); 1] = [(http::header::CONTENT_TYPE, "application/json")];
    let mut app = axum::Router::new().route(CEILING_PATH, get(|| async { (JSON, CEILING_BODY) }));
    if let Some(page) = page {
        app = app.route(CEILING_PAGE_PATH, get(move || async move { (JSON, page) }));
    }
    axum::serve(listener, app).await
}

fn store_err(e: impl std::fmt::Display) -> OpError {
    OpError::Store(e.to_string())
}

/// Opens one PostgreSQL connection (its driver task runs on the runtime).
pub async fn pg_connect(url: &str) -> Result<Client, BenchError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| BenchError::Store(format!("postgres {url}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Price in minor units of reference product `id`, the same formula as the Kassa seed.
pub fn reference_price(id: i64) -> i64 {
    199 + (id * 37) % 99_800
}

/// (Re)creates the reference tables with `products` rows.
pub async fn pg_setup(url: &str, products: usize) -> Result<(), BenchError> {
    let client = pg_connect(url).await?;
    let sql = format!(
        "DROP TABLE IF EXISTS kassa_bench_basket_lines, kassa_bench_payments, kassa_bench_products;
         CREATE TABLE kassa_bench_products (
             id bigint PRIMARY KEY, name text NOT NULL, description text NOT NULL, price bigint NOT NULL,
             stock bigint NOT NULL, category text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO kassa_bench_products (id, name, description, price, stock, category)
             SELECT g, 'Bench product ' || g, 'Seeded by kassa-bench', 199 + (g * 37) % 99800, 1000000000,
                    'cat-' || lpad((g / 100)::text, 5, '0')
             FROM generate_series(1, {products}) AS g;
         CREATE TABLE kassa_bench_basket_lines (
             user_id text NOT NULL, product_id bigint NOT NULL, quantity bigint NOT NULL, price bigint NOT NULL,
             PRIMARY KEY (user_id, product_id));
         CREATE TABLE kassa_bench_payments (
             id bigserial PRIMARY KEY, user_id text NOT NULL, amount bigint NOT NULL, status text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now());
         ANALYZE kassa_bench_products;"
    );
    client.batch_execute(&sql).await.map_err(|e| BenchError::Store(format!("postgres setup: {e}")))
}

/// `pg-checkout`: one transaction per checkout — upsert the basket line, conditional stock decrement,
/// insert the payment, delete the basket lines.
pub struct PgCheckout {
    client: Client,
    upsert: Statement,
    decrement: Statement,
    pay: Statement,
    clear: Statement,
    rng: SmallRng,
    user: String,
    products: i64,
}

impl PgCheckout {
    pub async fn connect(url: &str, user: String, products: usize, seed: u64) -> Result<PgCheckout, BenchError> {
        let client = pg_connect(url).await?;
        let prep = |sql: &'static str| {
            let client = &client;
            async move { client.prepare(sql).await.map_err(|e| BenchError::Store(format!("prepare: {e}"))) }
        };
        let upsert = prep(
            "INSERT INTO kassa_bench_basket_lines (user_id, product_id, quantity, price) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = kassa_bench_basket_lines.quantity + EXCLUDED.quantity",
        )
        .await?;
        let decrement =
            prep("UPDATE kassa_bench_products SET stock = stock - $1, updated_at = now() WHERE id = $2 AND stock >= $1").await?;
        let pay = prep("INSERT INTO kassa_bench_payments (user_id, amount, status) VALUES ($1, $2, 'completed')").await?;
        let clear = prep("DELETE FROM kassa_bench_basket_lines WHERE user_id = $1").await?;
        Ok(PgCheckout { client, upsert, decrement, pay, clear, rng: SmallRng::seed_from_u64(seed), user, products: products.max(1) as i64 })
    }

    async fn checkout(&mut self) -> Result<(), OpError> {
        let product: i64 = self.rng.random_range(1..=self.products);
        let quantity: i64 = 1;
        let price = reference_price(product);
        let tx = self.client.transaction().await.map_err(store_err)?;
        tx.execute(&self.upsert, &[&self.user, &product, &quantity, &price]).await.map_err(store_err)?;
        let updated = tx.execute(&self.decrement, &[&quantity, &product]).await.map_err(store_err)?;
        if updated != 1 {
            tx.rollback().await.map_err(store_err)?;
            return Err(OpError::Store("out of stock".into()));
        }
        tx.execute(&self.pay, &[&self.user, &(price * quantity)]).await.map_err(store_err)?;
        tx.execute(&self.clear, &[&self.user]).await.map_err(store_err)?;
        tx.commit().await.map_err(store_err)
    }
}

impl Op for PgCheckout {
    async fn run(&mut self) -> OpOutcome {
        match self.checkout().await {
            Ok(()) => OpOutcome::ok(1),
            Err(e) => OpOutcome::failed(1, e),
        }
    }
}

/// `pg-browse`: point select of a product by id (every column decoded, as a service would).
pub struct PgBrowse {
    client: Client,
    select: Statement,
    rng: SmallRng,
    products: i64,
}

impl PgBrowse {
    pub async fn connect(url: &str, products: usize, seed: u64) -> Result<PgBrowse, BenchError> {
        let client = pg_connect(url).await?;
        let select = client
            .prepare("SELECT id, name, description, price, stock, category, created_at, updated_at FROM kassa_bench_products WHERE id = $1")
            .await
            .map_err(|e| BenchError::Store(format!("prepare: {e}")))?;
        Ok(PgBrowse { client, select, rng: SmallRng::seed_from_u64(seed), products: products.max(1) as i64 })
    }

    async fn browse(&mut self) -> Result<(), OpError> {
        let id: i64 = self.rng.random_range(1..=self.products);
        let row = self.client.query_one(&self.select, &[&id]).await.map_err(store_err)?;
        let got: i64 = row.try_get(0).map_err(store_err)?;
        let _name: &str = row.try_get(1).map_err(store_err)?;
        let _price: i64 = row.try_get(3).map_err(store_err)?;
        let _created: SystemTime = row.try_get(6).map_err(store_err)?;
        if got != id {
            return Err(OpError::BadResponse(format!("asked for {id}, got {got}")));
        }
        Ok(())
    }
}

impl Op for PgBrowse {
    async fn run(&mut self) -> OpOutcome {
        match self.browse().await {
            Ok(()) => OpOutcome::ok(1),
            Err(e) => OpOutcome::failed(1, e),
        }
    }
}

/// `redis-fsync`: `HSET basket:<user> <product_id> <line json>` on the appendfsync-always Redis, users and
/// products rotating as in W3 (one hash per user, at most `BASKET_LINES_MAX` fields).
pub struct RedisFsync {
    conn: redis::aio::MultiplexedConnection,
    rotation: BasketRotation,
    products: usize,
}

impl RedisFsync {
    pub async fn connect(url: &str, users: Vec<String>, products: usize, seed: u64) -> Result<RedisFsync, BenchError> {
        let client = redis::Client::open(url).map_err(|e| BenchError::Store(format!("redis {url}: {e}")))?;
        let conn = client.get_multiplexed_async_connection().await.map_err(|e| BenchError::Store(format!("redis {url}: {e}")))?;
        let products = products.max(1);
        Ok(RedisFsync { conn, rotation: BasketRotation::new(users, products, seed), products })
    }

    /// Checks that the server really is the `appendfsync always` reference.
    pub async fn appendfsync(&mut self) -> Result<String, BenchError> {
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendfsync")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| BenchError::Store(e.to_string()))?;
        Ok(reply.get(1).cloned().unwrap_or_default())
    }

    async fn write(&mut self) -> Result<(), OpError> {
        let (user, index) = self.rotation.next(self.products);
        let key = format!("kassa_bench:basket:{user}");
        let product = index as i64 + 1;
        let line =
            format!(r#"{{"product_id":{product},"name":"Bench product {product}","price":{},"quantity":1}}"#, reference_price(product));
        let _: i64 = redis::cmd("HSET").arg(key).arg(product).arg(line).query_async(&mut self.conn).await.map_err(store_err)?;
        Ok(())
    }
}

impl Op for RedisFsync {
    async fn run(&mut self) -> OpOutcome {
        match self.write().await {
            Ok(()) => OpOutcome::ok(1),
            Err(e) => OpOutcome::failed(1, e),
        }
    }
}
