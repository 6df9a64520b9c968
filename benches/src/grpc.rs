//! W7: the browse, basket-write and checkout workloads over gRPC (one HTTP/2 connection per worker).

use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::dist::KeyDist;
use crate::errors::OpError;
use crate::load::{Op, OpOutcome};
use crate::workloads::{BasketRotation, Catalog};

pub mod pb {
    pub mod product {
        tonic::include_proto!("product");
    }
    pub mod basket {
        tonic::include_proto!("basket");
    }
    pub mod payment {
        tonic::include_proto!("payment");
    }
}

use pb::basket::basket_service_client::BasketServiceClient;
use pb::payment::payment_service_client::PaymentServiceClient;
use pb::product::product_service_client::ProductServiceClient;

/// Opens one HTTP/2 connection (a channel never shared between workers).
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Channel, OpError> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| OpError::Connect(e.to_string()))?
        .tcp_nodelay(true)
        .timeout(timeout)
        .connect_timeout(timeout)
        .connect()
        .await
        .map_err(|e| OpError::Connect(e.to_string()))
}

/// The `authorization` metadata every call carries (the bearer token, when auth is on).
pub type Auth = Option<MetadataValue<Ascii>>;

/// Turns a bearer token into call metadata; `None` when there is no token (or it is not valid ASCII).
pub fn auth(bearer: Option<&str>) -> Auth {
    bearer.and_then(|t| format!("Bearer {t}").parse().ok())
}

fn call<T>(message: T, auth: &Auth) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = auth {
        request.metadata_mut().insert("authorization", value.clone());
    }
    request
}

fn status_error(s: tonic::Status) -> OpError {
    if s.code() == tonic::Code::DeadlineExceeded || s.code() == tonic::Code::Cancelled {
        OpError::Timeout
    } else {
        OpError::Grpc(format!("{:?}", s.code()).to_lowercase())
    }
}

/// W7 browse: `ProductService/GetProduct`.
pub struct BrowseGrpc {
    client: ProductServiceClient<Channel>,
    auth: Auth,
    rng: SmallRng,
    catalog: Catalog,
    dist: KeyDist,
}

impl BrowseGrpc {
    pub fn new(channel: Channel, auth: Auth, catalog: Catalog, dist: KeyDist, seed: u64) -> BrowseGrpc {
        BrowseGrpc { client: ProductServiceClient::new(channel), auth, rng: SmallRng::seed_from_u64(seed), catalog, dist }
    }
}

impl Op for BrowseGrpc {
    async fn run(&mut self) -> OpOutcome {
        let id = self.catalog.pick(&mut self.rng, self.dist);
        let request = pb::product::GetProductRequest { id: i32::try_from(id).unwrap_or(i32::MAX) };
        match self.client.get_product(call(request, &self.auth)).await {
            Ok(r) if r.get_ref().product.is_some() => OpOutcome::ok(1),
            Ok(_) => OpOutcome::failed(1, OpError::BadResponse("no product in answer".into())),
            Err(s) => OpOutcome::failed(1, status_error(s)),
        }
    }
}

async fn add_item(client: &mut BasketServiceClient<Channel>, auth: &Auth, user: &str, product_id: u64) -> Result<String, OpError> {
    let request =
        pb::basket::AddItemRequest { user_id: user.to_owned(), product_id: i32::try_from(product_id).unwrap_or(i32::MAX), quantity: 1 };
    let answer = client.add_item(call(request, auth)).await.map_err(status_error)?.into_inner();
    if !answer.success {
        return Err(OpError::Rejected(answer.message));
    }
    Ok(answer.basket.map(|b| b.id).unwrap_or_default())
}

/// W7 basket write: `BasketService/AddItem` (baskets bounded as in W3).
pub struct AddItemGrpc {
    client: BasketServiceClient<Channel>,
    auth: Auth,
    catalog: Catalog,
    rotation: BasketRotation,
}

impl AddItemGrpc {
    pub fn new(channel: Channel, auth: Auth, catalog: Catalog, users: Vec<String>, seed: u64) -> AddItemGrpc {
        let rotation = BasketRotation::new(users, catalog.ids.len(), seed);
        AddItemGrpc { client: BasketServiceClient::new(channel), auth, catalog, rotation }
    }
}

impl Op for AddItemGrpc {
    async fn run(&mut self) -> OpOutcome {
        let (user, index) = self.rotation.next(self.catalog.ids.len());
        let product_id = self.catalog.ids[index];
        match add_item(&mut self.client, &self.auth, user, product_id).await {
            Ok(_) => OpOutcome::ok(1),
            Err(e) => OpOutcome::failed(1, e),
        }
    }
}

/// W7 checkout: AddItem, CreatePayment, ProcessPayment (basket and payment clients share one connection).
pub struct CheckoutGrpc {
    basket: BasketServiceClient<Channel>,
    payment: PaymentServiceClient<Channel>,
    auth: Auth,
    rng: SmallRng,
    catalog: Catalog,
    users: Vec<String>,
    next_user: usize,
}

impl CheckoutGrpc {
    pub fn new(channel: Channel, auth: Auth, catalog: Catalog, users: Vec<String>, seed: u64) -> CheckoutGrpc {
        CheckoutGrpc {
            basket: BasketServiceClient::new(channel.clone()),
            payment: PaymentServiceClient::new(channel),
            auth,
            rng: SmallRng::seed_from_u64(seed),
            catalog,
            users,
            next_user: 0,
        }
    }

    async fn checkout(&mut self, user: &str, product_id: u64, requests: &mut u32) -> Result<(), OpError> {
        *requests += 1;
        let basket_id = add_item(&mut self.basket, &self.auth, user, product_id).await?;
        *requests += 1;
        let create = pb::payment::CreatePaymentRequest {
            user_id: user.to_owned(),
            basket_id,
            method: "credit_card".into(),
            provider: "stripe".into(),
            currency: String::new(),
            description: String::new(),
        };
        let created = self.payment.create_payment(call(create, &self.auth)).await.map_err(status_error)?.into_inner();
        if !created.success {
            return Err(OpError::Rejected(created.message));
        }
        let payment_id =
            created.payment.map(|p| p.id).filter(|id| !id.is_empty()).ok_or_else(|| OpError::BadResponse("payment without id".into()))?;
        *requests += 1;
        let processed = self
            .payment
            .process_payment(call(pb::payment::ProcessPaymentRequest { payment_id, provider_id: String::new() }, &self.auth))
            .await
            .map_err(status_error)?
            .into_inner();
        if !processed.success {
            return Err(OpError::Rejected(processed.message));
        }
        match processed.payment.map(|p| p.status) {
            Some(s) if s == "completed" => Ok(()),
            other => Err(OpError::BadResponse(format!("processed payment has status {other:?}"))),
        }
    }
}

impl Op for CheckoutGrpc {
    async fn run(&mut self) -> OpOutcome {
        let user = self.users[self.next_user % self.users.len()].clone();
        self.next_user = self.next_user.wrapping_add(1);
        let product_id = self.catalog.pick(&mut self.rng, KeyDist::Uniform);
        let mut requests = 0;
        match self.checkout(&user, product_id, &mut requests).await {
            Ok(()) => OpOutcome::ok(requests),
            Err(e) => OpOutcome::failed(requests, e),
        }
    }
}
