//! The gRPC API: `product.ProductService`, `basket.BasketService`, `payment.PaymentService` with real
//! data, plus `grpc.health.v1` and server reflection (`grpc.reflection.v1` and `v1alpha`, see [`reflection`]).
//!
//! Errors are gRPC statuses (NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION for state conflicts, expiry
//! and insufficient stock, PERMISSION_DENIED, UNAVAILABLE, INTERNAL), never `success=false` with OK: a
//! client cannot mistake a failure for an answer. Successful answers keep the old `success`/`message`.

use axum::Router;
use kassa_engine::{
    Answer, Cmd, Currency, Deleted, Engine, EngineError, IdempotencyKey, PaymentInput, PaymentStatus, ProductInput, ProductQuery, cmd,
};
use kassa_engine::{Basket, Payment, Product, now_micros};
use prost::Message;
use tonic::{Response, Status};

use crate::auth::{Actor, authorize};
use crate::error::grpc_status;
use crate::pb::{basket as bpb, payment as ppb, product as pb};
use crate::wire;

pub(crate) mod codec;
mod reflection;

type R<T> = Result<Response<T>, Status>;

#[derive(Clone)]
struct Svc {
    engine: Engine,
}

fn actor<T>(req: &tonic::Request<T>) -> Option<Actor> {
    req.extensions().get::<Actor>().cloned()
}

/// The `idempotency-key` metadata entry, fingerprinted with the RPC and the encoded request.
fn idempotency<T: Message>(req: &tonic::Request<T>, rpc: &str) -> Result<Option<IdempotencyKey>, Status> {
    let Some(value) = req.metadata().get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > crate::http::IDEMPOTENCY_KEY_MAX || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(Status::invalid_argument("idempotency-key must be 1 to 128 visible ASCII characters"));
    }
    let scope = req.extensions().get::<Actor>().map_or_else(|| "anonymous".to_string(), |a| a.subject.clone());
    let fingerprint = wire::fnv1a(&[b"grpc", rpc.as_bytes(), &req.get_ref().encode_to_vec()]);
    Ok(Some(IdempotencyKey { scope, key: String::from_utf8_lossy(bytes).into_owned(), fingerprint }))
}

impl Svc {
    async fn run<T: Answer>(&self, command: Cmd<T>, idempotency: Option<IdempotencyKey>) -> Result<T, Status> {
        self.engine.run(command.idempotent(idempotency)).await.map_err(grpc_status)
    }
    fn currency(&self) -> Currency {
        self.engine.currency()
    }
    /// Runs a scan off the listener's runtime (`scan::blocking`).
    async fn scan<T: Send + 'static>(&self, f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static) -> Result<T, Status> {
        crate::scan::blocking(&self.engine, f).await.map_err(|e| Status::internal(e.message))?.map_err(grpc_status)
    }
    /// Every product of a listing, up to `cap`, as the list answer.
    async fn listing(&self, q: ProductQuery, cap: usize) -> R<pb::ListProductsResponse> {
        product_list(self.scan(move |e| all_products(e, &q, cap)).await?, self.currency())
    }
    /// Every payment of a user.
    async fn user_payments(&self, user_id: &str) -> Result<Vec<Payment>, Status> {
        let user_id = user_id.to_string();
        self.scan(move |e| crate::http::payments::all_of_user(e, &user_id)).await
    }
}

fn int32(value: i64, what: &str) -> Result<i32, Status> {
    i32::try_from(value).map_err(|_| Status::out_of_range(format!("{what} {value} does not fit the protocol's int32")))
}

fn positive_id(id: i32, what: &str) -> Result<u64, Status> {
    u64::try_from(id).ok().filter(|v| *v > 0).ok_or_else(|| Status::invalid_argument(format!("{what} must be a positive integer")))
}

fn money_in(value: f64, c: Currency, what: &str) -> Result<i64, Status> {
    wire::minor_from_f64(value, c).map_err(|e| Status::invalid_argument(format!("{what}: {e}")))
}

fn forbid(e: crate::auth::Forbidden) -> Status {
    e.into()
}

fn product_pb(p: Product, c: Currency) -> Result<pb::Product, Status> {
    Ok(pb::Product {
        id: int32(p.id as i64, "product id")?,
        price: wire::f64_from_minor(p.price, c),
        stock: int32(p.available, "stock")?,
        created_at: wire::rfc3339_seconds(p.created_at),
        updated_at: wire::rfc3339_seconds(p.updated_at),
        name: p.name,
        description: p.description,
        category: p.category,
    })
}

fn product_list(products: Vec<Product>, c: Currency) -> R<pb::ListProductsResponse> {
    let products = products.into_iter().map(|p| product_pb(p, c)).collect::<Result<Vec<_>, _>>()?;
    Ok(Response::new(pb::ListProductsResponse { products }))
}

/// Every product of a listing, up to `cap` (a scan: run it with `Svc::scan`).
fn all_products(engine: &Engine, q: &ProductQuery, cap: usize) -> Result<Vec<Product>, EngineError> {
    crate::scan::all_pages(cap, |page| Ok(engine.products(q, page)?.into_iter().map(std::sync::Arc::unwrap_or_clone).collect()))
}

const LIST_MAX: usize = 100_000;

#[tonic::async_trait]
impl pb::product_service_server::ProductService for Svc {
    async fn get_product(&self, req: tonic::Request<pb::GetProductRequest>) -> R<pb::ProductResponse> {
        let id = positive_id(req.get_ref().id, "id")?;
        let p = self.engine.product(id).map_err(grpc_status)?.ok_or_else(|| Status::not_found("product not found"))?;
        Ok(Response::new(pb::ProductResponse { product: Some(product_pb(std::sync::Arc::unwrap_or_clone(p), self.currency())?) }))
    }

    async fn create_product(&self, req: tonic::Request<pb::CreateProductRequest>) -> R<pb::ProductResponse> {
        let key = idempotency(&req, "CreateProduct")?;
        let r = req.into_inner();
        let input = ProductInput {
            price: money_in(r.price, self.currency(), "price")?,
            stock: i64::from(r.stock),
            name: r.name,
            description: r.description,
            category: r.category,
            image_url: String::new(),
        };
        let p = self.run(cmd::create_product(input), key).await?;
        Ok(Response::new(pb::ProductResponse { product: Some(product_pb(p, self.currency())?) }))
    }

    async fn update_product(&self, req: tonic::Request<pb::UpdateProductRequest>) -> R<pb::ProductResponse> {
        let key = idempotency(&req, "UpdateProduct")?;
        let r = req.into_inner();
        let id = positive_id(r.id, "id")?;
        let input = ProductInput {
            price: money_in(r.price, self.currency(), "price")?,
            stock: i64::from(r.stock),
            name: r.name,
            description: r.description,
            category: r.category,
            image_url: String::new(),
        };
        let p = self.run(cmd::update_product(id, input), key).await?;
        Ok(Response::new(pb::ProductResponse { product: Some(product_pb(p, self.currency())?) }))
    }

    async fn delete_product(&self, req: tonic::Request<pb::DeleteProductRequest>) -> R<pb::DeleteProductResponse> {
        let key = idempotency(&req, "DeleteProduct")?;
        let id = positive_id(req.get_ref().id, "id")?;
        match self.run(cmd::delete_product(id), key).await? {
            Deleted { existed: false } => Err(Status::not_found("product not found")),
            _ => Ok(Response::new(pb::DeleteProductResponse { message: "Product deleted successfully".into() })),
        }
    }

    async fn list_products(&self, _req: tonic::Request<pb::ListProductsRequest>) -> R<pb::ListProductsResponse> {
        self.listing(ProductQuery::All, LIST_MAX).await
    }

    async fn get_top_most_expensive_products(
        &self,
        req: tonic::Request<pb::GetTopMostExpensiveProductsRequest>,
    ) -> R<pb::ListProductsResponse> {
        // Negative means "no limit" in the old service; 0 means an empty list.
        let limit = match req.get_ref().limit {
            l if l < 0 => LIST_MAX,
            l => l as usize,
        };
        if limit == 0 {
            return Ok(Response::new(pb::ListProductsResponse { products: Vec::new() }));
        }
        self.listing(ProductQuery::TopByPrice, limit).await
    }

    async fn get_low_stock_products(&self, req: tonic::Request<pb::GetLowStockProductsRequest>) -> R<pb::ListProductsResponse> {
        self.listing(ProductQuery::StockAtMost(i64::from(req.get_ref().max_stock)), LIST_MAX).await
    }

    async fn get_products_by_category(&self, req: tonic::Request<pb::GetProductsByCategoryRequest>) -> R<pb::ListProductsResponse> {
        self.listing(ProductQuery::Category(req.into_inner().category), LIST_MAX).await
    }
}

fn basket_pb(b: &Basket, c: Currency) -> Result<bpb::Basket, Status> {
    let items = b
        .lines
        .iter()
        .map(|l| {
            Ok(bpb::BasketItem {
                product_id: int32(l.product_id as i64, "product id")?,
                name: l.name.clone(),
                price: wire::f64_from_minor(l.price, c),
                quantity: int32(l.quantity, "quantity")?,
                subtotal: wire::f64_from_minor(l.subtotal(), c),
                category: l.category.clone(),
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(bpb::Basket {
        id: b.id.clone(),
        user_id: b.user_id.clone(),
        items,
        total: wire::f64_from_minor(b.total(), c),
        item_count: int32(b.item_count(), "item count")?,
        created_at: wire::rfc3339_seconds(b.created_at),
        updated_at: wire::rfc3339_seconds(b.updated_at),
        expires_at: wire::rfc3339_seconds(b.expires_at),
    })
}

fn user_of<'a>(actor: Option<&Actor>, user_id: &'a str) -> Result<&'a str, Status> {
    if user_id.is_empty() {
        return Err(Status::invalid_argument("user_id is required"));
    }
    authorize(actor, user_id).map_err(forbid)?;
    Ok(user_id)
}

impl Svc {
    async fn basket_command<T: Message>(
        &self,
        req: &tonic::Request<T>,
        rpc: &str,
        user_id: &str,
        command: Cmd<Basket>,
    ) -> Result<bpb::Basket, Status> {
        user_of(actor(req).as_ref(), user_id)?;
        let key = idempotency(req, rpc)?;
        basket_pb(&self.run(command, key).await?, self.currency())
    }
}

fn ok_basket(message: &str, basket: bpb::Basket) -> (bool, String, Option<bpb::Basket>) {
    (true, message.to_string(), Some(basket))
}

#[tonic::async_trait]
impl bpb::basket_service_server::BasketService for Svc {
    async fn get_basket(&self, req: tonic::Request<bpb::GetBasketRequest>) -> R<bpb::GetBasketResponse> {
        let user_id = user_of(actor(&req).as_ref(), &req.get_ref().user_id)?;
        let b = self
            .engine
            .basket(user_id)
            .map_err(grpc_status)?
            .ok_or_else(|| Status::not_found(format!("basket not found for user {user_id}")))?;
        let (success, message, basket) = ok_basket("Basket retrieved successfully", basket_pb(&b, self.currency())?);
        Ok(Response::new(bpb::GetBasketResponse { success, message, basket }))
    }

    async fn create_basket(&self, req: tonic::Request<bpb::CreateBasketRequest>) -> R<bpb::CreateBasketResponse> {
        let user_id = req.get_ref().user_id.clone();
        let b = self.basket_command(&req, "CreateBasket", &user_id, cmd::create_basket(user_id.clone())).await?;
        let (success, message, basket) = ok_basket("Basket created successfully", b);
        Ok(Response::new(bpb::CreateBasketResponse { success, message, basket }))
    }

    async fn delete_basket(&self, req: tonic::Request<bpb::DeleteBasketRequest>) -> R<bpb::DeleteBasketResponse> {
        let user_id = user_of(actor(&req).as_ref(), &req.get_ref().user_id)?.to_string();
        let key = idempotency(&req, "DeleteBasket")?;
        self.run(cmd::delete_basket(user_id), key).await?;
        Ok(Response::new(bpb::DeleteBasketResponse { success: true, message: "Basket deleted successfully".into() }))
    }

    async fn add_item(&self, req: tonic::Request<bpb::AddItemRequest>) -> R<bpb::AddItemResponse> {
        let r = req.get_ref().clone();
        let product_id = positive_id(r.product_id, "product_id")?;
        let command = cmd::add_item(r.user_id.clone(), product_id, i64::from(r.quantity));
        let b = self.basket_command(&req, "AddItem", &r.user_id, command).await?;
        let (success, message, basket) = ok_basket("Item added to basket successfully", b);
        Ok(Response::new(bpb::AddItemResponse { success, message, basket }))
    }

    async fn update_item(&self, req: tonic::Request<bpb::UpdateItemRequest>) -> R<bpb::UpdateItemResponse> {
        let r = req.get_ref().clone();
        let product_id = positive_id(r.product_id, "product_id")?;
        let command = cmd::update_item(r.user_id.clone(), product_id, i64::from(r.quantity));
        let b = self.basket_command(&req, "UpdateItem", &r.user_id, command).await?;
        let (success, message, basket) = ok_basket("Item updated in basket successfully", b);
        Ok(Response::new(bpb::UpdateItemResponse { success, message, basket }))
    }

    async fn remove_item(&self, req: tonic::Request<bpb::RemoveItemRequest>) -> R<bpb::RemoveItemResponse> {
        let r = req.get_ref().clone();
        let command = cmd::remove_item(r.user_id.clone(), positive_id(r.product_id, "product_id")?);
        let b = self.basket_command(&req, "RemoveItem", &r.user_id, command).await?;
        let (success, message, basket) = ok_basket("Item removed from basket successfully", b);
        Ok(Response::new(bpb::RemoveItemResponse { success, message, basket }))
    }

    async fn clear_basket(&self, req: tonic::Request<bpb::ClearBasketRequest>) -> R<bpb::ClearBasketResponse> {
        let user_id = req.get_ref().user_id.clone();
        let b = self.basket_command(&req, "ClearBasket", &user_id, cmd::clear_basket(user_id.clone())).await?;
        let (success, message, basket) = ok_basket("Basket cleared successfully", b);
        Ok(Response::new(bpb::ClearBasketResponse { success, message, basket }))
    }

    async fn health_check(&self, _req: tonic::Request<bpb::HealthCheckRequest>) -> R<bpb::HealthCheckResponse> {
        let (success, status) = if self.engine.is_open() { (true, "healthy") } else { (false, "unhealthy") };
        Ok(Response::new(bpb::HealthCheckResponse {
            success,
            message: if success { "Basket service is healthy".into() } else { "Basket service is shutting down".into() },
            service: "basket-service".into(),
            status: status.into(),
            timestamp: wire::rfc3339_seconds(now_micros()),
            version: "1.0.0".into(),
        }))
    }
}

fn payment_pb(p: &Payment, shop: Currency) -> Result<ppb::Payment, Status> {
    let c = Currency::from_code(&p.currency).unwrap_or(shop);
    let items = p
        .items
        .iter()
        .map(|i| {
            Ok(ppb::PaymentItem {
                id: i.id.clone(),
                product_id: int32(i.product_id as i64, "product id")?,
                name: i.name.clone(),
                quantity: int32(i.quantity, "quantity")?,
                price: wire::f64_from_minor(i.price, c),
                subtotal: wire::f64_from_minor(i.subtotal(), c),
                category: i.category.clone(),
                created_at: wire::rfc3339_seconds(i.created_at),
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(ppb::Payment {
        id: p.id.clone(),
        user_id: p.user_id.clone(),
        basket_id: p.basket_id.clone(),
        amount: wire::f64_from_minor(p.amount, c),
        currency: p.currency.clone(),
        status: p.status.as_str().into(),
        method: p.method.clone(),
        provider: p.provider.clone(),
        provider_id: p.provider_id.clone(),
        description: p.description.clone(),
        created_at: wire::rfc3339_seconds(p.created_at),
        updated_at: wire::rfc3339_seconds(p.updated_at),
        processed_at: p.processed_at.map(wire::rfc3339_seconds).unwrap_or_default(),
        expires_at: p.expires_at.map(wire::rfc3339_seconds).unwrap_or_default(),
        items,
    })
}

impl Svc {
    /// Loads a payment and checks the caller owns it (administrators own everything).
    fn payment_for(&self, actor: Option<&Actor>, id: &str) -> Result<Payment, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("payment_id is required"));
        }
        let p = self.engine.payment(id).map_err(grpc_status)?.ok_or_else(|| Status::not_found(format!("payment not found: {id}")))?;
        authorize(actor, &p.user_id).map_err(forbid)?;
        Ok(p)
    }

    async fn payment_command(&self, command: Cmd<Payment>, key: Option<IdempotencyKey>) -> Result<Option<ppb::Payment>, Status> {
        Ok(Some(payment_pb(&self.run(command, key).await?, self.currency())?))
    }
}

/// A metadata entry as text, or empty when absent.
fn metadata_text<T>(req: &tonic::Request<T>, name: &str) -> Result<String, Status> {
    match req.metadata().get(name) {
        Some(v) => v.to_str().map(str::to_string).map_err(|_| Status::invalid_argument(format!("{name} must be visible ASCII"))),
        None => Ok(String::new()),
    }
}

#[tonic::async_trait]
impl ppb::payment_service_server::PaymentService for Svc {
    async fn create_payment(&self, req: tonic::Request<ppb::CreatePaymentRequest>) -> R<ppb::CreatePaymentResponse> {
        user_of(actor(&req).as_ref(), &req.get_ref().user_id)?;
        let key = idempotency(&req, "CreatePayment")?;
        // The old message has no token field: a checkout charged through a provider sends it (or the id
        // of a stored payment method) as metadata.
        let token = metadata_text(&req, "payment-token")?;
        let payment_method_id = metadata_text(&req, "payment-method-id")?;
        let r = req.into_inner();
        if r.method.is_empty() || r.provider.is_empty() {
            return Err(Status::invalid_argument("method and provider are required"));
        }
        let input = PaymentInput {
            user_id: r.user_id,
            basket_id: r.basket_id,
            method: r.method,
            provider: r.provider,
            currency: r.currency,
            description: r.description,
            metadata: Vec::new(),
            token,
            payment_method_id,
        };
        let payment = self.payment_command(cmd::create_payment(input), key).await?;
        Ok(Response::new(ppb::CreatePaymentResponse { success: true, message: "Payment created successfully".into(), payment }))
    }

    async fn get_payment(&self, req: tonic::Request<ppb::GetPaymentRequest>) -> R<ppb::GetPaymentResponse> {
        let p = self.payment_for(actor(&req).as_ref(), &req.get_ref().payment_id)?;
        Ok(Response::new(ppb::GetPaymentResponse {
            success: true,
            message: "Payment retrieved successfully".into(),
            payment: Some(payment_pb(&p, self.currency())?),
        }))
    }

    async fn update_payment(&self, req: tonic::Request<ppb::UpdatePaymentRequest>) -> R<ppb::UpdatePaymentResponse> {
        let p = self.payment_for(actor(&req).as_ref(), &req.get_ref().payment_id)?;
        let key = idempotency(&req, "UpdatePayment")?;
        let text = &req.get_ref().status;
        let status = PaymentStatus::parse(text).ok_or_else(|| Status::invalid_argument(format!("invalid payment status: {text}")))?;
        let payment = self.payment_command(cmd::update_payment(p.id, status, None), key).await?;
        Ok(Response::new(ppb::UpdatePaymentResponse { success: true, message: "Payment updated successfully".into(), payment }))
    }

    async fn process_payment(&self, req: tonic::Request<ppb::ProcessPaymentRequest>) -> R<ppb::ProcessPaymentResponse> {
        let p = self.payment_for(actor(&req).as_ref(), &req.get_ref().payment_id)?;
        let key = idempotency(&req, "ProcessPayment")?;
        let command = cmd::process_payment(p.id, req.into_inner().provider_id);
        let payment = self.payment_command(command, key).await?;
        Ok(Response::new(ppb::ProcessPaymentResponse { success: true, message: "Payment processed successfully".into(), payment }))
    }

    async fn refund_payment(&self, req: tonic::Request<ppb::RefundPaymentRequest>) -> R<ppb::RefundPaymentResponse> {
        let p = self.payment_for(actor(&req).as_ref(), &req.get_ref().payment_id)?;
        let key = idempotency(&req, "RefundPayment")?;
        let r = req.into_inner();
        let minor = money_in(r.amount, self.currency(), "amount")?;
        if minor < 0 {
            return Err(Status::invalid_argument("refund amount cannot be negative"));
        }
        let command = cmd::refund_payment(p.id, (minor > 0).then_some(minor), r.reason);
        let payment = self.payment_command(command, key).await?;
        Ok(Response::new(ppb::RefundPaymentResponse { success: true, message: "Payment refunded successfully".into(), payment }))
    }

    async fn get_payments_by_user(&self, req: tonic::Request<ppb::GetPaymentsByUserRequest>) -> R<ppb::GetPaymentsByUserResponse> {
        let user_id = user_of(actor(&req).as_ref(), &req.get_ref().user_id)?;
        let c = self.currency();
        let payments = self.user_payments(user_id).await?.iter().map(|p| payment_pb(p, c)).collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(ppb::GetPaymentsByUserResponse { success: true, message: "Payments retrieved successfully".into(), payments }))
    }

    async fn get_payment_stats(&self, req: tonic::Request<ppb::GetPaymentStatsRequest>) -> R<ppb::GetPaymentStatsResponse> {
        let user_id = user_of(actor(&req).as_ref(), &req.get_ref().user_id)?;
        let t = crate::http::payments::tally(&self.user_payments(user_id).await?);
        let c = self.currency();
        let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(Response::new(ppb::GetPaymentStatsResponse {
            success: true,
            message: "Payment stats retrieved successfully".into(),
            stats: Some(ppb::PaymentStats {
                total_payments: count(t.total),
                total_amount: wire::f64_from_minor(t.amount, c),
                completed_payments: count(t.completed),
                failed_payments: count(t.failed),
                pending_payments: count(t.pending),
                average_amount: wire::f64_from_minor(crate::http::payments::average(&t), c),
            }),
        }))
    }

    async fn health_check(&self, _req: tonic::Request<ppb::HealthCheckRequest>) -> R<ppb::HealthCheckResponse> {
        let (success, status) = if self.engine.is_open() { (true, "healthy") } else { (false, "unhealthy") };
        Ok(Response::new(ppb::HealthCheckResponse {
            success,
            message: if success { "Payment service is healthy".into() } else { "Payment service is shutting down".into() },
            service: "payment-service".into(),
            status: status.into(),
            timestamp: wire::rfc3339_seconds(now_micros()),
            version: "1.0.0".into(),
        }))
    }
}

/// The gRPC services as an axum router (serve it over h2c).
pub fn grpc_router(engine: Engine) -> Router {
    let svc = Svc { engine };
    let (reporter, health) = tonic_health::server::health_reporter();
    // The reporter's lock is uncontended here, so this completes at once on any executor.
    futures::executor::block_on(async {
        reporter.set_serving::<pb::product_service_server::ProductServiceServer<Svc>>().await;
        reporter.set_serving::<bpb::basket_service_server::BasketServiceServer<Svc>>().await;
        reporter.set_serving::<ppb::payment_service_server::PaymentServiceServer<Svc>>().await;
    });
    let mut routes = tonic::service::Routes::new(health)
        .add_service(pb::product_service_server::ProductServiceServer::new(svc.clone()))
        .add_service(bpb::basket_service_server::BasketServiceServer::new(svc.clone()))
        .add_service(ppb::payment_service_server::PaymentServiceServer::new(svc));
    let descriptors = [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    match reflection::Reflection::new(&descriptors) {
        Ok(reflection) => routes = routes.add_service(reflection.v1()).add_service(reflection.v1alpha()),
        Err(e) => tracing::error!(error = %e, "gRPC reflection is unavailable"),
    }
    routes.prepare().into_axum_router()
}
