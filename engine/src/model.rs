//! The records the engine keeps: products, baskets, payments, notifications, reservations and
//! idempotency entries. Stored as rkyv archives; every record carries a `version` that grows by one with
//! each change so that followers (replication, adapters) apply each change once.

use rkyv::{Archive, Deserialize, Serialize};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

pub fn now_micros() -> Micros {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(now.as_micros()).expect("time fits i64")
}

pub const MICROS_PER_SECOND: Micros = 1_000_000;
pub const MICROS_PER_MINUTE: Micros = 60 * MICROS_PER_SECOND;
pub const MICROS_PER_HOUR: Micros = 60 * MICROS_PER_MINUTE;

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub description: String,
    /// Minor units of the shop currency.
    pub price: i64,
    pub category: String,
    pub image_url: String,
    /// Units that can still be bought. The old API's `stock`.
    pub available: i64,
    /// Units held for pending payments.
    pub reserved: i64,
    /// Units sold (committed reservations).
    pub sold: i64,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub version: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BasketLine {
    pub product_id: u64,
    /// Name, price and category captured when the product was first added (as the old system did).
    pub name: String,
    pub price: i64,
    pub category: String,
    pub quantity: i64,
}

impl BasketLine {
    pub fn subtotal(&self) -> i64 {
        self.price * self.quantity
    }
}

/// A payment method a user keeps: a provider's token for it and what may be shown of the card, never
/// its number.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PaymentMethod {
    pub id: String,
    pub user_id: String,
    /// One of [`PAYMENT_METHODS`] (`type` at the API).
    pub kind: String,
    pub provider: String,
    /// The provider's token (`tok_…`, `pm_…`); never answered by the API.
    pub token: String,
    /// The card's last four digits, or empty.
    pub last_four: String,
    /// 1–12, or 0 when not given.
    pub expiry_month: u8,
    /// Or 0 when not given.
    pub expiry_year: u16,
    pub is_default: bool,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// Every stored payment method of one user, oldest first, in one record: changing the default is one
/// write, so there is never a moment with two defaults or none.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Wallet {
    pub user_id: String,
    pub methods: Vec<PaymentMethod>,
    /// LSN of the last change.
    pub version: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Basket {
    pub id: String,
    pub user_id: String,
    pub lines: Vec<BasketLine>,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub expires_at: Micros,
    pub version: u64,
}

impl Basket {
    pub fn total(&self) -> i64 {
        self.lines.iter().map(BasketLine::subtotal).sum()
    }

    pub fn item_count(&self) -> i64 {
        self.lines.iter().map(|l| l.quantity).sum()
    }
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        PaymentStatus::Pending,
        PaymentStatus::Processing,
        PaymentStatus::Completed,
        PaymentStatus::Failed,
        PaymentStatus::Cancelled,
        PaymentStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Processing => "processing",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Cancelled => "cancelled",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<PaymentStatus> {
        PaymentStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Where a payment's stock reservations stand. Every non-terminal stage is re-driven after a crash.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// Asked the product shards to reserve; waiting for all answers.
    Reserving,
    /// Every line is reserved.
    Reserved,
    /// Asked the product shards to turn the reservation into a sale.
    Committing,
    /// Sold.
    Committed,
    /// Asked the product shards to give the reserved units back.
    Releasing,
    /// Nothing is held (released, or never reserved).
    Released,
    /// A refund asked the product shards to put sold units back on sale.
    Restocking,
    /// Sold units were put back on sale after a refund.
    Restocked,
    /// Every line is reserved and the provider is being asked to charge (the payment is `processing`);
    /// appended last, so that the archived tags of the other stages stay as they were.
    Charging,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PaymentItem {
    pub id: String,
    pub product_id: u64,
    pub name: String,
    pub quantity: i64,
    pub price: i64,
    pub category: String,
    pub created_at: Micros,
}

impl PaymentItem {
    pub fn subtotal(&self) -> i64 {
        self.price * self.quantity
    }
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: String,
    pub user_id: String,
    pub basket_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub method: String,
    pub provider: String,
    /// The provider's id of the charge: set by Kassa when it charges through the provider, otherwise
    /// whatever the client said when processing (as the old system did).
    pub provider_id: String,
    /// The provider's token the payment is charged with (`tok_…`, `pm_…`); never a card number.
    pub token: String,
    /// The stored payment method the token came from, if the payment named one.
    pub payment_method_id: String,
    pub description: String,
    pub metadata: Vec<(String, String)>,
    pub items: Vec<PaymentItem>,
    pub holding: Holding,
    /// Product shards whose answer for the current holding step is still outstanding.
    pub waiting_on: Vec<u32>,
    /// Why the payment failed, if it did.
    pub failure_reason: String,
    /// A stable code for the failure (`insufficient_stock`, `payment_expired`, …): the Kafka
    /// `payment.failed` event's `error_code`.
    pub error_code: String,
    pub refunded_amount: i64,
    pub refund_reason: String,
    /// Id of the latest refund, set when the payment is refunded (the `payment.refunded` event's
    /// `refund_id`); `refunded_amount` and `refund_reason` are the sum and the latest reason.
    pub refund_id: String,
    /// Every refund asked for, oldest first: partial ones add up to at most the amount.
    pub refunds: Vec<Refund>,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub processed_at: Option<Micros>,
    pub expires_at: Option<Micros>,
    /// Reservation attempt: a retry of a failed payment reserves again under a new attempt number.
    pub attempt: u32,
    /// A retry reserves and then processes in one go.
    pub process_after_reserve: bool,
    /// The idempotency key of the command still in flight on this payment, recorded when it finishes.
    pub pending_idempotency: Option<IdemRef>,
    pub version: u64,
}

impl Payment {
    /// Waiting for other shards or for the provider: re-driven on ticks and after recovery.
    pub fn is_in_flight(&self) -> bool {
        !self.waiting_on.is_empty() || self.holding == Holding::Charging || self.pending_refund().is_some()
    }

    /// Waiting for the provider (a charge or a refund): re-driven after the longer provider delay.
    pub fn waits_on_provider(&self) -> bool {
        self.holding == Holding::Charging || self.pending_refund().is_some()
    }

    /// The refund the provider has not answered yet, if any (there is at most one).
    pub fn pending_refund(&self) -> Option<&Refund> {
        self.refunds.iter().find(|r| r.status == RefundStatus::Pending)
    }

    /// What can still be refunded.
    pub fn refundable(&self) -> i64 {
        self.amount - self.refunded_amount
    }
}

/// Money given back on a payment: its own record with its own id and status.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    /// Minor units of the payment's currency.
    pub amount: i64,
    pub reason: String,
    pub status: RefundStatus,
    /// The provider's id of the refund, when Kassa refunded through the provider.
    pub provider_refund_id: String,
    /// Why the provider refused or failed it, if it did.
    pub failure_reason: String,
    pub created_at: Micros,
    pub updated_at: Micros,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    /// Asked of the provider, not answered yet.
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IdemRef {
    pub scope: String,
    pub key: String,
    pub fingerprint: u64,
}

/// A product shard's record of units held for one payment: all lines of that payment on this shard.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub payment_id: String,
    /// The payment's reservation attempt (a retried payment reserves anew).
    pub attempt: u32,
    /// Shard of the payment's user, where answers go.
    pub user_shard: u32,
    pub lines: Vec<(u64, i64)>,
    pub state: ReservationState,
    /// After this the product shard releases the units by itself.
    pub deadline: Micros,
    pub updated_at: Micros,
    pub version: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationState {
    Held,
    Committed,
    Released,
    /// The reservation was refused (a line was short); nothing was held.
    Refused,
    Restocked,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub message: String,
    pub kind: String,
    pub status: String,
    pub priority: String,
    pub channel: String,
    pub template_id: String,
    pub data: Vec<(String, String)>,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub sent_at: Option<Micros>,
    pub read_at: Option<Micros>,
    pub expires_at: Option<Micros>,
    /// When a scheduled notification is due to be sent.
    pub send_at: Option<Micros>,
    /// How many times it was sent (each send through a delivering channel is one delivery).
    pub attempts: u32,
    /// The current delivery through the channel's sender: the id receivers see (`X-Kassa-Delivery`), the
    /// same for every attempt of it. Empty while the notification was never handed to a sender.
    pub delivery_id: String,
    /// Attempts at delivering it, oldest first (at most `limits::DELIVERY_ATTEMPTS_KEPT`).
    pub deliveries: Vec<DeliveryAttempt>,
    /// When the next attempt of the current delivery is due; None when none is.
    pub next_attempt_at: Option<Micros>,
    /// When a receiver accepted it.
    pub delivered_at: Option<Micros>,
    pub version: u64,
}

impl Notification {
    /// Attempts made so far at the current delivery.
    pub fn attempts_of_delivery(&self) -> u32 {
        self.deliveries.iter().filter(|d| d.delivery_id == self.delivery_id).count() as u32
    }
}

/// One attempt at handing a notification to its channel's receiver.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub delivery_id: String,
    /// 1 for the first attempt of its delivery.
    pub attempt: u32,
    /// When its outcome was recorded.
    pub at: Micros,
    pub delivered: bool,
    /// Why it failed (empty when delivered).
    pub error: String,
}

/// Notification enumerations of the old system (lower-case on the wire).
/// The payment methods a checkout may name (the old system's list).
pub const PAYMENT_METHODS: [&str; 6] = ["credit_card", "debit_card", "paypal", "stripe", "bank_transfer", "crypto"];

pub mod notify {
    pub const TYPES: [&str; 8] = ["info", "warning", "error", "success", "payment", "order", "system", "marketing"];
    pub const STATUSES: [&str; 6] = ["pending", "sent", "delivered", "read", "failed", "expired"];
    pub const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
    pub const CHANNELS: [&str; 5] = ["email", "sms", "push", "in_app", "webhook"];

    /// The old system's default priority per type.
    pub fn default_priority(kind: &str) -> &'static str {
        match kind {
            "error" | "payment" | "order" => "high",
            "marketing" => "low",
            _ => "normal",
        }
    }
}

/// The first outcome of a command that carried an idempotency key, kept for retries.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub scope: String,
    pub key: String,
    /// Hash of the request that first used the key; a different request with the same key is refused.
    pub fingerprint: u64,
    pub outcome: crate::command::Outcome,
    pub expires_at: Micros,
}
