//! What clients ask of the engine (commands), what they get back (replies), and how it can fail.

use rkyv::{Archive, Deserialize, Serialize};

use crate::model::{Basket, Micros, Notification, Payment, PaymentMethod, PaymentStatus, Product};

/// A catalog entry as a client describes it (create, or full replacement on update).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductInput {
    pub name: String,
    pub description: String,
    pub price: i64,
    /// Units available for sale.
    pub stock: i64,
    pub category: String,
    pub image_url: String,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NotificationInput {
    pub user_id: String,
    pub title: String,
    pub message: String,
    pub kind: String,
    pub channel: String,
    /// Empty = the type's default priority.
    pub priority: String,
    pub template_id: String,
    pub data: Vec<(String, String)>,
    pub expires_at: Option<Micros>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PaymentInput {
    pub user_id: String,
    pub basket_id: String,
    pub method: String,
    pub provider: String,
    /// Empty = the shop currency.
    pub currency: String,
    pub description: String,
    pub metadata: Vec<(String, String)>,
    /// The provider token to charge with: required when Kassa charges through `provider`, unless
    /// `payment_method_id` names a stored method.
    pub token: String,
    /// A stored payment method of the user, whose token (and provider and type, when not given) the
    /// payment is charged with.
    pub payment_method_id: String,
}

/// A payment method to store for a user.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PaymentMethodInput {
    pub user_id: String,
    pub kind: String,
    pub provider: String,
    pub token: String,
    /// Empty, or the card's last four digits.
    pub last_four: String,
    /// Both 0 (not given), or month 1–12 and a four-digit year.
    pub expiry_month: u8,
    pub expiry_year: u16,
    /// Make it the default (a user's first method is the default anyway).
    pub is_default: bool,
}

impl PaymentInput {
    /// A checkout of the user's basket in the shop currency, without description or metadata.
    pub fn new(user_id: impl Into<String>, method: impl Into<String>, provider: impl Into<String>) -> PaymentInput {
        PaymentInput {
            user_id: user_id.into(),
            basket_id: String::new(),
            method: method.into(),
            provider: provider.into(),
            currency: String::new(),
            description: String::new(),
            metadata: Vec::new(),
            token: String::new(),
            payment_method_id: String::new(),
        }
    }

    /// The same checkout, charged with the provider `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> PaymentInput {
        self.token = token.into();
        self
    }
}

/// Every write the engine accepts.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    CreateProduct(ProductInput),
    /// Create with a given id (seeding, imports); refused if the id exists.
    CreateProductWithId {
        id: u64,
        input: ProductInput,
    },
    UpdateProduct {
        id: u64,
        input: ProductInput,
    },
    DeleteProduct {
        id: u64,
    },

    CreateBasket {
        user_id: String,
    },
    DeleteBasket {
        user_id: String,
    },
    AddItem {
        user_id: String,
        product_id: u64,
        quantity: i64,
    },
    /// Sets a line's quantity; 0 removes the line.
    UpdateItem {
        user_id: String,
        product_id: u64,
        quantity: i64,
    },
    RemoveItem {
        user_id: String,
        product_id: u64,
    },
    ClearBasket {
        user_id: String,
    },

    /// Checkout: prices the user's basket, reserves every line, answers with a pending payment.
    CreatePayment(PaymentInput),
    ProcessPayment {
        payment_id: String,
        provider_id: String,
    },
    CancelPayment {
        payment_id: String,
    },
    /// `amount` None (or ≤ 0) = the full amount.
    RefundPayment {
        payment_id: String,
        amount: Option<i64>,
        reason: String,
    },
    RetryPayment {
        payment_id: String,
    },
    /// Administrative status change (the old `PUT /payments/:id`), limited to legal transitions.
    UpdatePayment {
        payment_id: String,
        status: PaymentStatus,
        metadata: Option<Vec<(String, String)>>,
    },

    /// What the provider answered to a payment's charge (sent by the provider runner, never by clients).
    ChargeOutcome {
        payment_id: String,
        attempt: u32,
        result: crate::provider_call::CallOutcome,
    },
    /// What the provider answered to a refund (sent by the provider runner, never by clients).
    RefundOutcome {
        payment_id: String,
        refund_id: String,
        result: crate::provider_call::CallOutcome,
    },

    CreateNotification(NotificationInput),
    ScheduleNotification {
        input: NotificationInput,
        send_at: Micros,
    },
    UpdateNotification {
        id: String,
        status: String,
        title: String,
        message: String,
    },
    DeleteNotification {
        id: String,
    },
    SendNotification {
        id: String,
    },
    MarkNotificationRead {
        id: String,
    },
    MarkAllNotificationsRead {
        user_id: String,
    },
    RetryNotification {
        id: String,
    },
    /// What became of one delivery attempt (sent by the delivery runner, never by clients).
    DeliveryOutcome {
        id: String,
        delivery_id: String,
        attempt: u32,
        result: crate::delivery::DeliveryResult,
    },
    /// Deletes expired notifications on every shard.
    CleanupNotifications,
    /// Stores a payment method for its user.
    AddPaymentMethod(PaymentMethodInput),
    /// Makes one of the user's methods the default, and no other, in one change.
    SetDefaultPaymentMethod {
        user_id: String,
        id: String,
    },
    /// Forgets a stored method; when it was the default, the oldest one left becomes the default.
    DeletePaymentMethod {
        user_id: String,
        id: String,
    },
}

impl Command {
    /// The user whose shard owns this command, if it is a user-owned command.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Command::CreateBasket { user_id }
            | Command::DeleteBasket { user_id }
            | Command::AddItem { user_id, .. }
            | Command::UpdateItem { user_id, .. }
            | Command::RemoveItem { user_id, .. }
            | Command::ClearBasket { user_id }
            | Command::MarkAllNotificationsRead { user_id }
            | Command::SetDefaultPaymentMethod { user_id, .. }
            | Command::DeletePaymentMethod { user_id, .. } => Some(user_id),
            Command::AddPaymentMethod(input) => Some(&input.user_id),
            Command::CreatePayment(input) => Some(&input.user_id),
            Command::CreateNotification(input) | Command::ScheduleNotification { input, .. } => Some(&input.user_id),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateProduct(_) => "create_product",
            Command::CreateProductWithId { .. } => "create_product_with_id",
            Command::UpdateProduct { .. } => "update_product",
            Command::DeleteProduct { .. } => "delete_product",
            Command::CreateBasket { .. } => "create_basket",
            Command::DeleteBasket { .. } => "delete_basket",
            Command::AddItem { .. } => "add_item",
            Command::UpdateItem { .. } => "update_item",
            Command::RemoveItem { .. } => "remove_item",
            Command::ClearBasket { .. } => "clear_basket",
            Command::CreatePayment(_) => "create_payment",
            Command::ProcessPayment { .. } => "process_payment",
            Command::CancelPayment { .. } => "cancel_payment",
            Command::RefundPayment { .. } => "refund_payment",
            Command::RetryPayment { .. } => "retry_payment",
            Command::UpdatePayment { .. } => "update_payment",
            Command::ChargeOutcome { .. } => "charge_outcome",
            Command::RefundOutcome { .. } => "refund_outcome",
            Command::CreateNotification(_) => "create_notification",
            Command::ScheduleNotification { .. } => "schedule_notification",
            Command::UpdateNotification { .. } => "update_notification",
            Command::DeleteNotification { .. } => "delete_notification",
            Command::SendNotification { .. } => "send_notification",
            Command::MarkNotificationRead { .. } => "mark_notification_read",
            Command::MarkAllNotificationsRead { .. } => "mark_all_notifications_read",
            Command::RetryNotification { .. } => "retry_notification",
            Command::DeliveryOutcome { .. } => "delivery_outcome",
            Command::CleanupNotifications => "cleanup_notifications",
            Command::AddPaymentMethod(_) => "add_payment_method",
            Command::SetDefaultPaymentMethod { .. } => "set_default_payment_method",
            Command::DeletePaymentMethod { .. } => "delete_payment_method",
        }
    }
}

/// An idempotency key as the client sent it, scoped to the acting user, with a fingerprint of the request
/// so that a different request reusing the key is refused instead of answered with the wrong outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: u64,
}

/// A command plus its optional idempotency key.
#[derive(Clone, Debug)]
pub struct Request {
    pub command: Command,
    pub idempotency: Option<IdempotencyKey>,
}

impl From<Command> for Request {
    fn from(command: Command) -> Self {
        Request { command, idempotency: None }
    }
}

/// A successful answer.
// Built once and moved into the caller's oneshot; boxing the payment would add an allocation per answer.
#[allow(clippy::large_enum_variant)]
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Product(Product),
    Basket(Basket),
    Payment(Payment),
    Notification(Notification),
    Notifications(Vec<Notification>),
    PaymentMethod(PaymentMethod),
    /// A delete that found something, or found nothing (`existed` false).
    Deleted {
        existed: bool,
    },
    /// How many entities a bulk command touched.
    Count(u64),
}

/// What kind of failure, which decides the status code at the API.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or breaks a rule.
    Invalid,
    /// 404.
    NotFound,
    /// 409: the state does not allow it (wrong payment status, key reused with another request, …).
    Conflict,
    /// 409: not enough stock.
    InsufficientStock,
    /// 410: the payment or basket has expired.
    Expired,
    /// 503: the engine cannot take writes right now (shutting down, a shard is gone).
    Unavailable,
    /// 500: an I/O or storage failure. Never caused by input.
    Internal,
    /// 503 with `Retry-After`: the owning shard's mailbox or in-flight table is full; nothing was done.
    /// Never stored as an idempotent outcome, so a retry runs the command.
    Overloaded,
    /// 402: the payment provider declined the charge (appended last: archived tags stay as they were).
    Declined,
}

/// What exactly was refused, for callers that act on it rather than show the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not enough units for sale: `requested` is the whole quantity asked for (a basket's line after the
    /// add, a checkout's line), `available` what was for sale at that moment.
    InsufficientStock {
        product_id: u64,
        requested: i64,
        available: i64,
    },
    ProductNotFound {
        product_id: u64,
    },
    BasketNotFound {
        user_id: String,
    },
    BasketLineNotFound {
        user_id: String,
        product_id: u64,
    },
    PaymentNotFound {
        payment_id: String,
    },
    NotificationNotFound {
        notification_id: String,
    },
}

/// A failure: its kind decides the status code, the message is for people, and `refusal` says what
/// exactly was refused where that is known. An outcome kept for an idempotent retry keeps kind and
/// message; the refusal is not stored (the retry's answer has the same status and text).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    pub kind: ErrorKind,
    pub message: String,
    #[rkyv(with = rkyv::with::Skip)]
    pub refusal: Option<Refusal>,
}

impl EngineError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        EngineError { kind, message: message.into(), refusal: None }
    }
    /// The same failure, saying what exactly was refused.
    pub fn because(mut self, refusal: Refusal) -> Self {
        self.refusal = Some(refusal);
        self
    }
    pub fn insufficient_stock(message: impl Into<String>, product_id: u64, requested: i64, available: i64) -> Self {
        Self::new(ErrorKind::InsufficientStock, message).because(Refusal::InsufficientStock { product_id, requested, available })
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Overloaded, message)
    }
    /// Failures that say nothing about the request: a retry should run it again.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Overloaded)
    }
}

/// The outcome of one command, as kept for idempotent retries.
// Outcomes are built once and stored; boxing the reply would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Reply),
    Err(EngineError),
}

impl From<Result<Reply, EngineError>> for Outcome {
    fn from(r: Result<Reply, EngineError>) -> Self {
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Err(e),
        }
    }
}

impl From<Outcome> for Result<Reply, EngineError> {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok(v) => Ok(v),
            Outcome::Err(e) => Err(e),
        }
    }
}
