//! Typed commands: each constructor names one command and the type of its answer, so that a caller
//! gets a `Product`, a `Basket`, a `Payment`, ... back from [`Engine::run`](crate::Engine::run) instead
//! of a reply to match. Which reply each command produces is checked here, in one place.

use std::marker::PhantomData;

use crate::command::{Command, EngineError, IdempotencyKey, NotificationInput, PaymentInput, ProductInput, Reply, Request};
use crate::model::{Basket, Micros, Notification, Payment, PaymentMethod, PaymentStatus, Product};

/// A command whose successful answer is a `T`, with its optional idempotency key.
#[must_use = "a command does nothing until it is run"]
pub struct Cmd<T> {
    request: Request,
    answer: PhantomData<fn() -> T>,
}

// By hand: a derive would ask `T: Clone` / `T: Debug`, which the command itself does not need.
impl<T> Clone for Cmd<T> {
    fn clone(&self) -> Self {
        Cmd { request: self.request.clone(), answer: PhantomData }
    }
}

impl<T> std::fmt::Debug for Cmd<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmd").field("request", &self.request).field("answer", &std::any::type_name::<T>()).finish()
    }
}

impl<T: Answer> Cmd<T> {
    fn new(command: Command) -> Cmd<T> {
        Cmd { request: Request { command, idempotency: None }, answer: PhantomData }
    }

    /// The same command, answered once per key: a retry with the key gets the first outcome.
    pub fn idempotent(mut self, key: Option<IdempotencyKey>) -> Cmd<T> {
        self.request.idempotency = key;
        self
    }

    pub fn command(&self) -> &Command {
        &self.request.command
    }

    pub(crate) fn into_request(self) -> Request {
        self.request
    }
}

/// Whether a delete found something to delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub existed: bool,
}

/// How many entities a bulk command touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count(pub u64);

/// The answer types of commands. Sealed: only the engine's own records answer commands.
pub trait Answer: Sized + sealed::FromReply {}

mod sealed {
    use super::*;

    pub trait FromReply: Sized {
        fn from_reply(reply: Reply) -> Option<Self>;
    }

    impl FromReply for Product {
        fn from_reply(reply: Reply) -> Option<Self> {
            if let Reply::Product(p) = reply { Some(p) } else { None }
        }
    }
    impl FromReply for Basket {
        fn from_reply(reply: Reply) -> Option<Self> {
            if let Reply::Basket(b) = reply { Some(b) } else { None }
        }
    }
    impl FromReply for Payment {
        fn from_reply(reply: Reply) -> Option<Self> {
            if let Reply::Payment(p) = reply { Some(p) } else { None }
        }
    }
    impl FromReply for Notification {
        fn from_reply(reply: Reply) -> Option<Self> {
            if let Reply::Notification(n) = reply { Some(n) } else { None }
        }
    }
    impl FromReply for PaymentMethod {
        fn from_reply(reply: Reply) -> Option<Self> {
            if let Reply::PaymentMethod(m) = reply { Some(m) } else { None }
        }
    }
    impl FromReply for Deleted {
        fn from_reply(reply: Reply) -> Option<Self> {
            if let Reply::Deleted { existed } = reply { Some(Deleted { existed }) } else { None }
        }
    }
    impl FromReply for Count {
        fn from_reply(reply: Reply) -> Option<Self> {
            if let Reply::Count(n) = reply { Some(Count(n)) } else { None }
        }
    }
}

impl Answer for Product {}
impl Answer for Basket {}
impl Answer for Payment {}
impl Answer for Notification {}
impl Answer for PaymentMethod {}
impl Answer for Deleted {}
impl Answer for Count {}

/// The typed answer of `reply`, or an internal error naming the command that answered out of type
/// (an engine bug, never caused by input).
pub(crate) fn typed<T: Answer>(command: &'static str, reply: Reply) -> Result<T, EngineError> {
    let kind = reply_kind(&reply);
    T::from_reply(reply).ok_or_else(|| EngineError::internal(format!("{command} answered {kind}, not {}", std::any::type_name::<T>())))
}

fn reply_kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Product(_) => "a product",
        Reply::Basket(_) => "a basket",
        Reply::Payment(_) => "a payment",
        Reply::Notification(_) => "a notification",
        Reply::Notifications(_) => "notifications",
        Reply::PaymentMethod(_) => "a payment method",
        Reply::Deleted { .. } => "a delete",
        Reply::Count(_) => "a count",
    }
}

pub fn create_product(input: ProductInput) -> Cmd<Product> {
    Cmd::new(Command::CreateProduct(input))
}
/// Create with a given id (seeding, imports); refused if the id exists.
pub fn create_product_with_id(id: u64, input: ProductInput) -> Cmd<Product> {
    Cmd::new(Command::CreateProductWithId { id, input })
}
pub fn update_product(id: u64, input: ProductInput) -> Cmd<Product> {
    Cmd::new(Command::UpdateProduct { id, input })
}
pub fn delete_product(id: u64) -> Cmd<Deleted> {
    Cmd::new(Command::DeleteProduct { id })
}

pub fn create_basket(user_id: impl Into<String>) -> Cmd<Basket> {
    Cmd::new(Command::CreateBasket { user_id: user_id.into() })
}
pub fn delete_basket(user_id: impl Into<String>) -> Cmd<Deleted> {
    Cmd::new(Command::DeleteBasket { user_id: user_id.into() })
}
pub fn add_item(user_id: impl Into<String>, product_id: u64, quantity: i64) -> Cmd<Basket> {
    Cmd::new(Command::AddItem { user_id: user_id.into(), product_id, quantity })
}
/// Sets a line's quantity; 0 removes the line.
pub fn update_item(user_id: impl Into<String>, product_id: u64, quantity: i64) -> Cmd<Basket> {
    Cmd::new(Command::UpdateItem { user_id: user_id.into(), product_id, quantity })
}
pub fn remove_item(user_id: impl Into<String>, product_id: u64) -> Cmd<Basket> {
    Cmd::new(Command::RemoveItem { user_id: user_id.into(), product_id })
}
pub fn clear_basket(user_id: impl Into<String>) -> Cmd<Basket> {
    Cmd::new(Command::ClearBasket { user_id: user_id.into() })
}

/// Checkout: prices the user's basket, reserves every line, answers with a pending payment.
pub fn create_payment(input: PaymentInput) -> Cmd<Payment> {
    Cmd::new(Command::CreatePayment(input))
}
pub fn process_payment(payment_id: impl Into<String>, provider_id: impl Into<String>) -> Cmd<Payment> {
    Cmd::new(Command::ProcessPayment { payment_id: payment_id.into(), provider_id: provider_id.into() })
}

/// What the provider answered to the charge of `payment_id`'s `attempt` (the provider runner's command).
pub fn charge_outcome(payment_id: impl Into<String>, attempt: u32, result: crate::provider_call::CallOutcome) -> Cmd<Payment> {
    Cmd::new(Command::ChargeOutcome { payment_id: payment_id.into(), attempt, result })
}

/// What became of attempt `attempt` of delivery `delivery_id` of notification `id` (the delivery
/// runner's command).
pub fn delivery_outcome(
    id: impl Into<String>,
    delivery_id: impl Into<String>,
    attempt: u32,
    result: crate::delivery::DeliveryResult,
) -> Cmd<Notification> {
    Cmd::new(Command::DeliveryOutcome { id: id.into(), delivery_id: delivery_id.into(), attempt, result })
}

/// Stores a payment method for its user.
pub fn add_payment_method(input: crate::command::PaymentMethodInput) -> Cmd<PaymentMethod> {
    Cmd::new(Command::AddPaymentMethod(input))
}

/// Makes stored method `id` the user's default (and no other).
pub fn set_default_payment_method(user_id: impl Into<String>, id: impl Into<String>) -> Cmd<PaymentMethod> {
    Cmd::new(Command::SetDefaultPaymentMethod { user_id: user_id.into(), id: id.into() })
}

/// Forgets stored method `id` of the user (not found: an error).
pub fn delete_payment_method(user_id: impl Into<String>, id: impl Into<String>) -> Cmd<Deleted> {
    Cmd::new(Command::DeletePaymentMethod { user_id: user_id.into(), id: id.into() })
}

/// What the provider answered to the refund `refund_id` of `payment_id` (the provider runner's command).
pub fn refund_outcome(
    payment_id: impl Into<String>,
    refund_id: impl Into<String>,
    result: crate::provider_call::CallOutcome,
) -> Cmd<Payment> {
    Cmd::new(Command::RefundOutcome { payment_id: payment_id.into(), refund_id: refund_id.into(), result })
}

pub fn cancel_payment(payment_id: impl Into<String>) -> Cmd<Payment> {
    Cmd::new(Command::CancelPayment { payment_id: payment_id.into() })
}
/// `amount` None = the full amount.
pub fn refund_payment(payment_id: impl Into<String>, amount: Option<i64>, reason: impl Into<String>) -> Cmd<Payment> {
    Cmd::new(Command::RefundPayment { payment_id: payment_id.into(), amount, reason: reason.into() })
}
pub fn retry_payment(payment_id: impl Into<String>) -> Cmd<Payment> {
    Cmd::new(Command::RetryPayment { payment_id: payment_id.into() })
}
/// Administrative status change, limited to legal transitions.
pub fn update_payment(payment_id: impl Into<String>, status: PaymentStatus, metadata: Option<Vec<(String, String)>>) -> Cmd<Payment> {
    Cmd::new(Command::UpdatePayment { payment_id: payment_id.into(), status, metadata })
}

pub fn create_notification(input: NotificationInput) -> Cmd<Notification> {
    Cmd::new(Command::CreateNotification(input))
}
pub fn schedule_notification(input: NotificationInput, send_at: Micros) -> Cmd<Notification> {
    Cmd::new(Command::ScheduleNotification { input, send_at })
}
pub fn update_notification(
    id: impl Into<String>,
    status: impl Into<String>,
    title: impl Into<String>,
    message: impl Into<String>,
) -> Cmd<Notification> {
    Cmd::new(Command::UpdateNotification { id: id.into(), status: status.into(), title: title.into(), message: message.into() })
}
pub fn delete_notification(id: impl Into<String>) -> Cmd<Deleted> {
    Cmd::new(Command::DeleteNotification { id: id.into() })
}
pub fn send_notification(id: impl Into<String>) -> Cmd<Notification> {
    Cmd::new(Command::SendNotification { id: id.into() })
}
pub fn mark_notification_read(id: impl Into<String>) -> Cmd<Notification> {
    Cmd::new(Command::MarkNotificationRead { id: id.into() })
}
pub fn mark_all_notifications_read(user_id: impl Into<String>) -> Cmd<Count> {
    Cmd::new(Command::MarkAllNotificationsRead { user_id: user_id.into() })
}
pub fn retry_notification(id: impl Into<String>) -> Cmd<Notification> {
    Cmd::new(Command::RetryNotification { id: id.into() })
}
/// Deletes expired notifications on every shard.
pub fn cleanup_notifications() -> Cmd<Count> {
    Cmd::new(Command::CleanupNotifications)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ErrorKind;

    #[test]
    fn a_reply_of_another_type_is_an_internal_error_not_a_panic() {
        let count: Result<Count, _> = typed("cleanup_notifications", Reply::Count(3));
        assert_eq!(count.unwrap(), Count(3));
        let wrong: Result<Product, _> = typed("create_product", Reply::Deleted { existed: true });
        let e = wrong.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message.starts_with("create_product answered a delete"), "{}", e.message);
    }

    #[test]
    fn constructors_name_their_command() {
        assert_eq!(add_item("u", 1, 2).command().name(), "add_item");
        assert_eq!(remove_item("u", 1).command().name(), "remove_item");
        assert_eq!(cleanup_notifications().command().name(), "cleanup_notifications");
        let key = IdempotencyKey { scope: "s".into(), key: "k".into(), fingerprint: 1 };
        assert_eq!(cancel_payment("p").idempotent(Some(key.clone())).into_request().idempotency, Some(key));
    }
}
