use super::*;
use crate::command::PaymentInput;
use crate::delivery::{DeliveryCall, DeliveryPolicy, DeliveryResult};
use crate::provider_call::{CallOutcome, ProviderCall};

struct Catalog(Vec<Arc<Product>>);
impl CatalogView for Catalog {
    fn product(&self, id: u64) -> Option<Arc<Product>> {
        self.0.iter().find(|p| p.id == id).cloned()
    }
}

const T0: Micros = 1_700_000_000_000_000;

fn input(name: &str, stock: i64) -> ProductInput {
    ProductInput { name: name.into(), description: String::new(), price: 500, stock, category: "c".into(), image_url: String::new() }
}

/// A one-shard core with one product, driven synchronously: peer messages are delivered at once.
fn run(core: &mut Core, request: Request, now: Micros) -> Result<Reply, EngineError> {
    let catalog = Catalog(core.products.values().cloned().collect());
    let mut fx = Effects::default();
    core.step(Input::Client { token: 1, request }, now, &catalog, &mut fx);
    let mut replies = std::mem::take(&mut fx.replies);
    while let Some((_, msg)) = fx.sends.pop() {
        let mut next = Effects::default();
        core.step(Input::Peer(msg), now, &catalog, &mut next);
        fx.sends.extend(next.sends);
        replies.extend(next.replies);
    }
    core.check_invariants().unwrap();
    replies.pop().map(|(_, r)| r).expect("a reply")
}

fn with_product(stock: i64) -> Core {
    let mut core = Core::new(0, CoreConfig::new(1), 1, 1);
    run(&mut core, Command::CreateProductWithId { id: 1, input: input("p", stock) }.into(), T0).unwrap();
    core
}

fn pay(user: &str) -> Command {
    Command::CreatePayment(PaymentInput::new(user, "paypal", "paypal"))
}

#[test]
fn idempotent_retry_returns_the_first_outcome() {
    let mut core = with_product(10);
    let key = |fp| Some(IdempotencyKey { scope: "ana".into(), key: "k1".into(), fingerprint: fp });
    let add = |fp| Request { command: Command::AddItem { user_id: "ana".into(), product_id: 1, quantity: 2 }, idempotency: key(fp) };
    let first = run(&mut core, add(7), T0).unwrap();
    let again = run(&mut core, add(7), T0 + 1).unwrap();
    assert_eq!(first, again, "same outcome");
    assert_eq!(core.baskets["ana"].lines[0].quantity, 2, "applied once");
    let other = run(&mut core, add(8), T0 + 2).unwrap_err();
    assert_eq!(other.kind, ErrorKind::Conflict, "a different request may not reuse the key");
    // After 24 h the key is forgotten.
    let mut fx = Effects::default();
    core.tick(T0 + 25 * MICROS_PER_HOUR, &mut fx);
    assert!(core.idempotency.is_empty());
}

#[test]
fn idempotent_checkout_reserves_once() {
    let mut core = with_product(10);
    run(&mut core, Command::AddItem { user_id: "bo".into(), product_id: 1, quantity: 3 }.into(), T0).unwrap();
    let req =
        || Request { command: pay("bo"), idempotency: Some(IdempotencyKey { scope: "bo".into(), key: "pay-1".into(), fingerprint: 1 }) };
    let Reply::Payment(a) = run(&mut core, req(), T0).unwrap() else { panic!() };
    let Reply::Payment(b) = run(&mut core, req(), T0 + 5).unwrap() else { panic!() };
    assert_eq!(a.id, b.id);
    assert_eq!(core.payments.len(), 1);
    assert_eq!(core.products[&1].reserved, 3);
}

#[test]
fn pending_payment_expires_and_releases_its_stock() {
    let mut core = with_product(5);
    run(&mut core, Command::AddItem { user_id: "cy".into(), product_id: 1, quantity: 5 }.into(), T0).unwrap();
    let Reply::Payment(p) = run(&mut core, pay("cy").into(), T0).unwrap() else { panic!() };
    assert_eq!(core.products[&1].available, 0);
    let later = T0 + 31 * MICROS_PER_MINUTE;
    let err = run(&mut core, Command::ProcessPayment { payment_id: p.id.clone(), provider_id: String::new() }.into(), later).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Expired);
    assert_eq!(core.payments[&p.id].status, PaymentStatus::Failed);
    assert_eq!((core.products[&1].available, core.products[&1].reserved), (5, 0), "released");
    assert!(core.notifications.values().any(|n| n.title == "Payment Failed" && n.user_id == "cy"));
}

#[test]
fn product_shard_releases_expired_reservations_by_itself() {
    let mut core = with_product(4);
    run(&mut core, Command::AddItem { user_id: "di".into(), product_id: 1, quantity: 4 }.into(), T0).unwrap();
    run(&mut core, pay("di").into(), T0).unwrap();
    // The user's shard never expires it (say it is down); the product shard's own deadline does.
    core.payment_expiry.clear();
    let mut fx = Effects::default();
    core.tick(T0 + 36 * MICROS_PER_MINUTE, &mut fx);
    assert_eq!((core.products[&1].available, core.products[&1].reserved), (4, 0));
}

#[test]
fn baskets_are_abandoned_after_a_day() {
    let mut core = with_product(5);
    run(&mut core, Command::AddItem { user_id: "ed".into(), product_id: 1, quantity: 1 }.into(), T0).unwrap();
    let mut fx = Effects::default();
    core.tick(T0 + 23 * MICROS_PER_HOUR, &mut fx);
    assert!(core.baskets.contains_key("ed"));
    core.tick(T0 + 24 * MICROS_PER_HOUR, &mut fx);
    assert!(!core.baskets.contains_key("ed"));
    assert!(fx.events.iter().any(|(_, e)| matches!(e, Event::BasketDeleted { why: BasketGone::Abandoned, .. })));
    assert!(core.notifications.values().any(|n| n.user_id == "ed" && n.title == "Basket Abandoned"));
}

#[test]
fn scheduled_notifications_go_out_when_due() {
    let mut core = Core::new(0, CoreConfig::new(1), 1, 1);
    let n = NotificationInput {
        user_id: "fa".into(),
        title: "Hello".into(),
        message: "Later".into(),
        kind: "info".into(),
        channel: "email".into(),
        priority: String::new(),
        template_id: String::new(),
        data: vec![],
        expires_at: None,
    };
    let Reply::Notification(created) =
        run(&mut core, Command::ScheduleNotification { input: n, send_at: T0 + MICROS_PER_MINUTE }.into(), T0).unwrap()
    else {
        panic!()
    };
    assert_eq!(created.status, "pending");
    assert_eq!(created.priority, "normal", "default priority by type");
    let mut fx = Effects::default();
    core.tick(T0 + MICROS_PER_MINUTE, &mut fx);
    assert_eq!(core.notifications[&created.id].status, "sent");
    assert_eq!(core.notifications[&created.id].sent_at, Some(T0 + MICROS_PER_MINUTE));
}

#[test]
fn product_ids_are_owned_by_their_shard() {
    let mut core = Core::new(1, CoreConfig::new(3), 1, 1);
    let mut ids = Vec::new();
    for i in 0..4 {
        let Reply::Product(p) = run(&mut core, Command::CreateProduct(input(&format!("p{i}"), 1)).into(), T0).unwrap() else { panic!() };
        ids.push(p.id);
    }
    assert_eq!(ids, vec![1, 4, 7, 10]);
    assert!(ids.iter().all(|id| shard_of_product(*id, 3) == 1));
}

#[test]
fn a_refused_status_change_keeps_the_metadata() {
    let mut core = with_product(5);
    run(&mut core, Command::AddItem { user_id: "ho".into(), product_id: 1, quantity: 1 }.into(), T0).unwrap();
    let Reply::Payment(p) = run(&mut core, pay("ho").into(), T0).unwrap() else { panic!() };
    let update = |status| Command::UpdatePayment { payment_id: p.id.clone(), status, metadata: Some(vec![("k".into(), "v".into())]) };
    let err = run(&mut core, update(PaymentStatus::Refunded).into(), T0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "a pending payment cannot be refunded");
    assert!(core.payments[&p.id].metadata.is_empty(), "nothing changed");
    let Reply::Payment(done) = run(&mut core, update(PaymentStatus::Completed).into(), T0).unwrap() else { panic!() };
    assert_eq!((done.status, done.metadata.clone()), (PaymentStatus::Completed, vec![("k".to_string(), "v".to_string())]));
}

#[test]
fn bad_input_changes_nothing() {
    let mut core = with_product(5);
    let before = core.next_lsn();
    for cmd in [
        Command::AddItem { user_id: "gi".into(), product_id: 1, quantity: 0 },
        Command::AddItem { user_id: "gi".into(), product_id: 1, quantity: -3 },
        Command::AddItem { user_id: "gi".into(), product_id: 1, quantity: 1_000_000 },
        Command::AddItem { user_id: String::new(), product_id: 1, quantity: 1 },
        Command::AddItem { user_id: "gi".into(), product_id: 99, quantity: 1 },
        Command::AddItem { user_id: "gi".into(), product_id: 1, quantity: 6 },
        Command::UpdateProduct { id: 1, input: ProductInput { price: -1, ..input("p", 1) } },
        Command::UpdateProduct { id: 1, input: ProductInput { stock: -1, ..input("p", 1) } },
        Command::CreateProduct(ProductInput { name: " ".into(), ..input("p", 1) }),
        Command::RefundPayment { payment_id: "nope".into(), amount: None, reason: String::new() },
    ] {
        assert!(run(&mut core, cmd.clone().into(), T0).is_err(), "{cmd:?} must be refused");
    }
    assert_eq!(core.next_lsn(), before, "no event was written");
}

fn notice(user: &str, expires_at: Option<Micros>) -> Command {
    Command::CreateNotification(NotificationInput {
        user_id: user.into(),
        title: "Hello".into(),
        message: "Text".into(),
        kind: "info".into(),
        channel: "in_app".into(),
        priority: "low".into(),
        template_id: String::new(),
        data: vec![],
        expires_at,
    })
}

#[test]
fn read_all_and_cleanup_do_a_bounded_step_per_command_and_tick() {
    let mut core = Core::new(0, CoreConfig::new(1), 1, 1);
    let many = 1100;
    for _ in 0..many {
        run(&mut core, notice("gus", Some(T0 + MICROS_PER_MINUTE)).into(), T0).unwrap();
    }
    run(&mut core, notice("other", None).into(), T0).unwrap();
    let unread = |core: &Core, user: &str| core.notifications.values().filter(|n| n.user_id == user && n.read_at.is_none()).count();

    let mut fx = Effects::default();
    core.step(
        Input::Client { token: 1, request: Command::MarkAllNotificationsRead { user_id: "gus".into() }.into() },
        T0,
        &Catalog(vec![]),
        &mut fx,
    );
    assert_eq!(fx.replies.pop().map(|(_, r)| r), Some(Ok(Reply::Count(many as u64))), "answers the whole count");
    assert_eq!(fx.events.len(), 1024, "one bounded step in the command");
    assert_eq!(unread(&core, "gus"), many - 1024);
    core.tick(T0, &mut Effects::default());
    assert_eq!(unread(&core, "gus"), 0, "the rest on the next tick");
    assert_eq!(unread(&core, "other"), 1, "other users untouched");

    let later = T0 + 2 * MICROS_PER_MINUTE;
    let mut fx = Effects::default();
    core.step(Input::Client { token: 2, request: Command::CleanupNotifications.into() }, later, &Catalog(vec![]), &mut fx);
    assert_eq!(fx.replies.pop().map(|(_, r)| r), Some(Ok(Reply::Count(many as u64))));
    assert_eq!(core.notifications.len(), many - 1024 + 1);
    core.tick(later, &mut Effects::default());
    assert_eq!(core.notifications.len(), 1, "only the one without an expiry is left");
    core.check_invariants().unwrap();
}

/// Steps `request` on a one-shard core, delivering peer messages at once; returns every reply and every
/// provider call it led to.
fn drive(core: &mut Core, request: Request, now: Micros) -> (Vec<Result<Reply, EngineError>>, Vec<ProviderCall>) {
    let catalog = Catalog(core.products.values().cloned().collect());
    let mut fx = Effects::default();
    core.step(Input::Client { token: 1, request }, now, &catalog, &mut fx);
    let mut replies: Vec<_> = std::mem::take(&mut fx.replies).into_iter().map(|(_, r)| r).collect();
    let mut charges = std::mem::take(&mut fx.calls);
    while let Some((_, msg)) = fx.sends.pop() {
        let mut next = Effects::default();
        core.step(Input::Peer(msg), now, &catalog, &mut next);
        fx.sends.extend(next.sends);
        replies.extend(next.replies.into_iter().map(|(_, r)| r));
        charges.extend(next.calls);
    }
    core.check_invariants().unwrap();
    (replies, charges)
}

/// A core that charges through `simulated`, with a reserved payment of 2 units (of 5) for "di".
fn charging_checkout() -> (Core, Payment) {
    let mut cfg = CoreConfig::new(1);
    cfg.charged_providers = vec!["simulated".into()];
    let mut core = Core::new(0, cfg, 1, 1);
    run(&mut core, Command::CreateProductWithId { id: 1, input: input("p", 5) }.into(), T0).unwrap();
    run(&mut core, Command::AddItem { user_id: "di".into(), product_id: 1, quantity: 2 }.into(), T0).unwrap();
    let checkout = PaymentInput::new("di", "credit_card", "simulated").with_token("tok_visa");
    let Reply::Payment(p) = run(&mut core, Command::CreatePayment(checkout).into(), T0).unwrap() else { panic!() };
    (core, p)
}

fn process(p: &Payment) -> Request {
    Command::ProcessPayment { payment_id: p.id.clone(), provider_id: "client-says".into() }.into()
}

fn outcome(p: &Payment, result: CallOutcome) -> Request {
    Command::ChargeOutcome { payment_id: p.id.clone(), attempt: p.attempt, result }.into()
}

#[test]
fn a_charged_provider_is_asked_once_per_attempt_and_its_charge_id_is_kept() {
    let (mut core, p) = charging_checkout();
    let (replies, charges) = drive(&mut core, process(&p), T0 + 1);
    assert!(replies.is_empty(), "the caller waits for the provider");
    let [ProviderCall::Charge(call)] = &charges[..] else { panic!("one charge call: {charges:?}") };
    assert_eq!((call.amount, call.token.as_str(), call.provider.as_str()), (1000, "tok_visa", "simulated"));
    assert_eq!(call.idempotency_key, crate::provider_call::charge_key(&p.id, 1));
    assert_eq!(core.payments[&p.id].holding, Holding::Charging);
    assert_eq!(core.products[&1].reserved, 2, "the stock stays held while the provider decides");

    // Unanswered for a while (or after a crash): asked again with the same key.
    let mut fx = Effects::default();
    core.redrive(T0 + 1 + core.cfg.charge_redrive_after, &mut fx);
    assert_eq!(fx.calls, charges);

    let (_, more) = drive(&mut core, outcome(&p, CallOutcome::Succeeded { provider_id: "pi_sim_1".into() }), T0 + 2);
    assert!(more.is_empty());
    let done = &core.payments[&p.id];
    assert_eq!((done.status, done.provider_id.as_str()), (PaymentStatus::Completed, "pi_sim_1"), "the provider names the charge");
    assert_eq!((core.products[&1].sold, core.products[&1].available), (2, 3));

    // A late duplicate changes nothing.
    let (replies, _) = drive(&mut core, outcome(&p, CallOutcome::Declined { code: "card_declined".into(), reason: "no".into() }), T0 + 3);
    assert!(matches!(&replies[..], [Ok(Reply::Payment(q))] if q.status == PaymentStatus::Completed));
    assert_eq!(core.payments[&p.id].status, PaymentStatus::Completed);
}

#[test]
fn a_declined_charge_fails_the_payment_with_its_code_and_gives_the_stock_back() {
    let (mut core, p) = charging_checkout();
    let catalog = Catalog(core.products.values().cloned().collect());
    let mut fx = Effects::default();
    core.step(Input::Client { token: 7, request: process(&p) }, T0 + 1, &catalog, &mut fx);
    assert!(fx.replies.is_empty());
    let (replies, _) = drive(
        &mut core,
        outcome(&p, CallOutcome::Declined { code: "card_declined".into(), reason: "Your card was declined.".into() }),
        T0 + 2,
    );
    let failed = &core.payments[&p.id];
    assert_eq!((failed.status, failed.error_code.as_str()), (PaymentStatus::Failed, "card_declined"));
    assert_eq!(failed.failure_reason, "Your card was declined.");
    assert_eq!((core.products[&1].available, core.products[&1].reserved), (5, 0), "released");
    let declined = replies.iter().find(|r| r.is_err()).expect("the waiting caller is answered").clone().unwrap_err();
    assert_eq!(declined.kind, ErrorKind::Declined);
    assert!(core.notifications.values().any(|n| n.title == "Payment Failed"));
}

#[test]
fn an_unknown_charge_outcome_answers_processing_and_keeps_charging() {
    let (mut core, p) = charging_checkout();
    drive(&mut core, process(&p), T0 + 1);
    let catalog = Catalog(core.products.values().cloned().collect());
    let mut fx = Effects::default();
    core.step(Input::Client { token: 9, request: process(&p) }, T0 + 2, &catalog, &mut fx);
    assert!(fx.replies.is_empty(), "a second process joins the first instead of charging twice");
    let (replies, _) = drive(&mut core, outcome(&p, CallOutcome::Unknown { reason: "timed out".into() }), T0 + 3);
    assert!(replies.iter().all(|r| matches!(r, Ok(Reply::Payment(q)) if q.status == PaymentStatus::Processing)));
    assert_eq!(core.payments[&p.id].holding, Holding::Charging);
    assert_eq!(core.products[&1].reserved, 2);
}

#[test]
fn a_charged_provider_needs_a_token_and_never_takes_a_card_number() {
    let mut cfg = CoreConfig::new(1);
    cfg.charged_providers = vec!["simulated".into()];
    let mut core = Core::new(0, cfg, 1, 1);
    run(&mut core, Command::CreateProductWithId { id: 1, input: input("p", 5) }.into(), T0).unwrap();
    run(&mut core, Command::AddItem { user_id: "ed".into(), product_id: 1, quantity: 1 }.into(), T0).unwrap();
    let checkout = |token: &str| Command::CreatePayment(PaymentInput::new("ed", "credit_card", "simulated").with_token(token));
    let missing = run(&mut core, checkout("").into(), T0).unwrap_err();
    assert!(missing.message.contains("token is required"), "{missing:?}");
    let card = run(&mut core, checkout("4242 4242 4242 4242").into(), T0).unwrap_err();
    assert!(card.message.contains("never a card number"), "{card:?}");
    assert!(core.payments.is_empty(), "refused checkouts change nothing");
    // A provider Kassa does not charge through keeps the old behaviour: no token needed.
    let old = Command::CreatePayment(PaymentInput::new("ed", "credit_card", "stripe"));
    assert!(run(&mut core, old.into(), T0).is_ok());
}

fn refund(p: &Payment, amount: Option<i64>) -> Request {
    Command::RefundPayment { payment_id: p.id.clone(), amount, reason: "damaged".into() }.into()
}

#[test]
fn partial_refunds_add_up_to_the_amount_and_the_last_one_restocks() {
    let mut core = with_product(5);
    run(&mut core, Command::AddItem { user_id: "fe".into(), product_id: 1, quantity: 2 }.into(), T0).unwrap();
    let Reply::Payment(p) = run(&mut core, pay("fe").into(), T0).unwrap() else { panic!() };
    run(&mut core, Command::ProcessPayment { payment_id: p.id.clone(), provider_id: "x".into() }.into(), T0).unwrap();
    let Reply::Payment(once) = run(&mut core, refund(&p, Some(300)), T0 + 1).unwrap() else { panic!() };
    assert_eq!((once.status, once.refunded_amount, once.refunds.len()), (PaymentStatus::Refunded, 300, 1));
    assert_eq!(core.products[&1].sold, 2, "a partial refund restocks nothing");
    let over = run(&mut core, refund(&p, Some(701)), T0 + 2).unwrap_err();
    assert!(over.message.contains("what is left"), "{over:?}");
    let Reply::Payment(all) = run(&mut core, refund(&p, None), T0 + 3).unwrap() else { panic!() };
    assert_eq!((all.refunded_amount, all.refunds[1].amount, all.refund_id.as_str()), (1000, 700, all.refunds[1].id.as_str()));
    assert!(all.refunds.iter().all(|r| r.status == RefundStatus::Succeeded));
    assert_eq!((core.products[&1].sold, core.products[&1].available), (0, 5), "everything back: back on sale");
    let done = run(&mut core, refund(&p, None), T0 + 4).unwrap_err();
    assert_eq!(done.kind, ErrorKind::Conflict);
}

#[test]
fn a_refund_through_the_provider_waits_for_its_answer() {
    let (mut core, p) = charging_checkout();
    drive(&mut core, process(&p), T0 + 1);
    drive(&mut core, outcome(&p, CallOutcome::Succeeded { provider_id: "pi_sim_1".into() }), T0 + 2);
    let (replies, calls) = drive(&mut core, refund(&p, Some(400)), T0 + 3);
    assert!(replies.is_empty(), "the caller waits for the provider");
    let [ProviderCall::Refund(call)] = &calls[..] else { panic!("one refund call: {calls:?}") };
    assert_eq!((call.amount, call.charge_id.as_str()), (400, "pi_sim_1"));
    let refund_id = call.refund_id.clone();
    assert_eq!(call.idempotency_key, format!("kassa-{}-refund-{refund_id}", p.id));
    assert_eq!(core.payments[&p.id].status, PaymentStatus::Completed, "nothing is refunded before the provider says so");
    let again = drive(&mut core, refund(&p, Some(100)), T0 + 4).0.pop().unwrap().unwrap_err();
    assert!(again.message.contains("still with the provider"), "{again:?}");

    let answer = |result| Command::RefundOutcome { payment_id: p.id.clone(), refund_id: refund_id.clone(), result }.into();
    drive(&mut core, answer(CallOutcome::Succeeded { provider_id: "re_sim_1".into() }), T0 + 5);
    let done = &core.payments[&p.id];
    assert_eq!((done.status, done.refunded_amount), (PaymentStatus::Refunded, 400));
    assert_eq!((done.refunds[0].status, done.refunds[0].provider_refund_id.as_str()), (RefundStatus::Succeeded, "re_sim_1"));

    // A refused refund is recorded as failed and changes no money.
    let (_, calls) = drive(&mut core, refund(&p, None), T0 + 6);
    let [ProviderCall::Refund(call)] = &calls[..] else { panic!() };
    let refused = Command::RefundOutcome {
        payment_id: p.id.clone(),
        refund_id: call.refund_id.clone(),
        result: CallOutcome::Declined { code: "charge_disputed".into(), reason: "disputed".into() },
    };
    drive(&mut core, refused.into(), T0 + 7);
    let after = &core.payments[&p.id];
    assert_eq!((after.refunded_amount, after.refunds[1].status), (400, RefundStatus::Failed));
    assert_eq!(core.products[&1].sold, 2);
}

/// A core that delivers `webhook` notifications: 3 attempts, 1 s first backoff.
fn delivering_core() -> Core {
    let mut cfg = CoreConfig::new(1);
    cfg.delivered_channels =
        vec![DeliveryPolicy { channel: "webhook".into(), max_attempts: 3, backoff: std::time::Duration::from_secs(1) }];
    Core::new(0, cfg, 1, 1)
}

/// Sends a new urgent `channel` notification for "ha" (it goes out at once); answers it and the delivery
/// attempts the step handed out.
fn send_urgent(core: &mut Core, channel: &str, now: Micros) -> (Notification, Vec<DeliveryCall>) {
    let input = NotificationInput {
        user_id: "ha".into(),
        title: "Shipped".into(),
        message: "On its way".into(),
        kind: "order".into(),
        channel: channel.into(),
        priority: "high".into(),
        template_id: String::new(),
        data: vec![],
        expires_at: None,
    };
    let mut fx = Effects::default();
    core.step(Input::Client { token: 1, request: Command::CreateNotification(input).into() }, now, &Catalog(vec![]), &mut fx);
    let Some((_, Ok(Reply::Notification(n)))) = fx.replies.pop() else { panic!("a notification") };
    (n, fx.deliveries)
}

/// Steps a delivery outcome; answers the notification after it and the attempts handed out.
fn answer(core: &mut Core, call: &DeliveryCall, result: DeliveryResult, now: Micros) -> (Notification, Vec<DeliveryCall>) {
    let id = call.notification.id.clone();
    let request = Command::DeliveryOutcome { id: id.clone(), delivery_id: call.delivery_id.clone(), attempt: call.attempt, result };
    let mut fx = Effects::default();
    core.step(Input::Client { token: 1, request: request.into() }, now, &Catalog(vec![]), &mut fx);
    assert!(matches!(fx.replies[..], [(_, Ok(Reply::Notification(_)))]), "{:?}", fx.replies);
    core.check_invariants().unwrap();
    (core.notifications[&id].clone(), fx.deliveries)
}

fn tick_deliveries(core: &mut Core, now: Micros) -> Vec<DeliveryCall> {
    let mut fx = Effects::default();
    core.tick(now, &mut fx);
    fx.deliveries
}

fn failure() -> DeliveryResult {
    DeliveryResult::Failed { error: "HTTP 500".into(), retryable: true }
}

#[test]
fn a_delivery_is_retried_with_doubling_backoff_and_left_failed_after_its_last_attempt() {
    let mut core = delivering_core();
    let (n, calls) = send_urgent(&mut core, "webhook", T0);
    assert_eq!((n.status.as_str(), n.attempts, n.delivery_id.as_str()), ("sent", 1, format!("{}-1", n.id).as_str()));
    let [first] = &calls[..] else { panic!("one attempt handed out: {calls:?}") };
    assert_eq!((first.attempt, first.delivery_id.as_str()), (1, n.delivery_id.as_str()));

    let mut now = T0 + 10;
    let mut call = first.clone();
    for (attempt, base) in [(1u32, MICROS_PER_SECOND), (2, 2 * MICROS_PER_SECOND)] {
        let (after, more) = answer(&mut core, &call, failure(), now);
        assert!(more.is_empty(), "the next attempt waits for its backoff");
        assert_eq!(after.status, "sent");
        assert_eq!(after.deliveries.len(), attempt as usize);
        let last = after.deliveries.last().unwrap();
        assert_eq!((last.attempt, last.at, last.delivered, last.error.as_str()), (attempt, now, false, "HTTP 500"));
        let due = after.next_attempt_at.expect("due again");
        assert!((now + base..=now + base + base / 4).contains(&due), "backoff {base} plus at most a quarter: {}", due - now);
        assert!(tick_deliveries(&mut core, due - 1).is_empty(), "not before it is due");
        let again = tick_deliveries(&mut core, due);
        let [next] = &again[..] else { panic!("the next attempt at its time: {again:?}") };
        assert_eq!((next.attempt, next.delivery_id.as_str()), (attempt + 1, n.delivery_id.as_str()), "same delivery, next attempt");
        call = next.clone();
        now = due + 10;
    }
    let (dead, more) = answer(&mut core, &call, failure(), now);
    assert!(more.is_empty());
    assert_eq!((dead.status.as_str(), dead.deliveries.len(), dead.next_attempt_at), ("failed", 3, None), "dead letter after 3 attempts");
    assert!(tick_deliveries(&mut core, now + MICROS_PER_HOUR).is_empty(), "a failed one is not tried again by itself");

    // A late answer to an earlier attempt changes nothing.
    let (still, _) = answer(&mut core, first, DeliveryResult::Delivered, now + 1);
    assert_eq!((still.status.as_str(), still.deliveries.len()), ("failed", 3));

    // Retry starts a new delivery, under a new id, from attempt 1; its success ends it.
    let mut fx = Effects::default();
    core.step(
        Input::Client { token: 1, request: Command::RetryNotification { id: n.id.clone() }.into() },
        now + 2,
        &Catalog(vec![]),
        &mut fx,
    );
    let [retried] = &fx.deliveries[..] else { panic!("retry hands out an attempt: {:?}", fx.deliveries) };
    assert_eq!((retried.attempt, retried.delivery_id.as_str()), (1, format!("{}-2", n.id).as_str()));
    let (done, _) = answer(&mut core, retried, DeliveryResult::Delivered, now + 3);
    assert_eq!((done.status.as_str(), done.delivered_at, done.deliveries.len()), ("delivered", Some(now + 3), 4));
    assert!(done.deliveries.last().unwrap().delivered);
}

#[test]
fn a_refused_delivery_fails_at_once_and_other_channels_are_only_recorded_sent() {
    let mut core = delivering_core();
    let (_, calls) = send_urgent(&mut core, "webhook", T0);
    let refused = DeliveryResult::Failed { error: "HTTP 410".into(), retryable: false };
    let (n, more) = answer(&mut core, &calls[0], refused, T0 + 1);
    assert!(more.is_empty());
    assert_eq!((n.status.as_str(), n.deliveries.len()), ("failed", 1));

    let (in_app, calls) = send_urgent(&mut core, "in_app", T0);
    assert!(calls.is_empty(), "in_app is not delivered by a sender");
    assert_eq!((in_app.status.as_str(), in_app.delivery_id.as_str(), in_app.next_attempt_at), ("sent", "", None));
}

#[test]
fn an_unanswered_attempt_is_made_again_after_the_redrive_delay_and_after_recovery() {
    let mut core = delivering_core();
    let mut events = Vec::new();
    let input = NotificationInput {
        user_id: "ha".into(),
        title: "t".into(),
        message: "m".into(),
        kind: "order".into(),
        channel: "webhook".into(),
        priority: String::new(),
        template_id: String::new(),
        data: vec![],
        expires_at: None,
    };
    let mut fx = Effects::default();
    core.step(Input::Client { token: 1, request: Command::CreateNotification(input).into() }, T0, &Catalog(vec![]), &mut fx);
    events.append(&mut fx.events);
    let [call] = &fx.deliveries[..] else { panic!() };

    let redrive = core.cfg.delivery_redrive_after;
    assert!(tick_deliveries(&mut core, T0 + redrive - 1).is_empty(), "in flight");
    let again = tick_deliveries(&mut core, T0 + redrive);
    assert_eq!(again, vec![call.clone()], "the same attempt, made again");

    // A crash before any answer: the recovered core makes the attempt again at its first tick.
    let mut recovered = delivering_core();
    let mut writes = crate::views::Writes::default();
    for (lsn, event) in &events {
        recovered.apply(*lsn, event, &mut writes);
    }
    recovered.set_next_lsn(core.next_lsn());
    let after_crash = tick_deliveries(&mut recovered, T0 + 1);
    assert_eq!(after_crash, vec![call.clone()]);
    let (done, _) = answer(&mut recovered, call, DeliveryResult::Delivered, T0 + 2);
    assert_eq!(done.status, "delivered");
    let (twice, _) = answer(&mut recovered, call, DeliveryResult::Delivered, T0 + 3);
    assert_eq!(twice.deliveries.len(), 1, "a second answer to the re-made attempt is not recorded");
}

fn card(user: &str, token: &str, is_default: bool) -> Command {
    Command::AddPaymentMethod(crate::command::PaymentMethodInput {
        user_id: user.into(),
        kind: "credit_card".into(),
        provider: "simulated".into(),
        token: token.into(),
        last_four: "4242".into(),
        expiry_month: 12,
        expiry_year: 2099,
        is_default,
    })
}

fn defaults(core: &Core, user: &str) -> Vec<(String, bool)> {
    core.wallets[user].methods.iter().map(|m| (m.token.clone(), m.is_default)).collect()
}

#[test]
fn a_wallet_has_exactly_one_default_through_every_change() {
    let mut core = Core::new(0, CoreConfig::new(1), 1, 1);
    let Reply::PaymentMethod(visa) = run(&mut core, card("jo", "tok_visa", false).into(), T0).unwrap() else { panic!() };
    assert!(visa.is_default, "the first method is the default");
    let Reply::PaymentMethod(mc) = run(&mut core, card("jo", "tok_mastercard", true).into(), T0 + 1).unwrap() else { panic!() };
    assert_eq!(defaults(&core, "jo"), vec![("tok_visa".into(), false), ("tok_mastercard".into(), true)]);
    run(&mut core, card("jo", "tok_amex", false).into(), T0 + 2).unwrap();

    let set = Command::SetDefaultPaymentMethod { user_id: "jo".into(), id: visa.id.clone() };
    let Reply::PaymentMethod(now_default) = run(&mut core, set.into(), T0 + 3).unwrap() else { panic!() };
    assert!(now_default.is_default);
    assert_eq!(defaults(&core, "jo"), vec![("tok_visa".into(), true), ("tok_mastercard".into(), false), ("tok_amex".into(), false)]);

    // Deleting the default makes the oldest one left the default.
    run(&mut core, Command::DeletePaymentMethod { user_id: "jo".into(), id: visa.id.clone() }.into(), T0 + 4).unwrap();
    assert_eq!(defaults(&core, "jo"), vec![("tok_mastercard".into(), true), ("tok_amex".into(), false)]);
    assert_eq!(core.wallets["jo"].methods[0].id, mc.id);

    // Only the owner's methods are found; the same token twice is refused; nothing changes on refusal.
    let other = Command::SetDefaultPaymentMethod { user_id: "al".into(), id: mc.id.clone() };
    assert_eq!(run(&mut core, other.into(), T0 + 5).unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(run(&mut core, card("jo", "tok_amex", false).into(), T0 + 5).unwrap_err().kind, ErrorKind::Conflict);
    let gone = Command::DeletePaymentMethod { user_id: "jo".into(), id: visa.id.clone() };
    assert_eq!(run(&mut core, gone.into(), T0 + 5).unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(core.wallets["jo"].methods.len(), 2);
}

#[test]
fn a_stored_method_is_checked_and_never_a_card_number() {
    let mut core = Core::new(0, CoreConfig::new(1), 1, 1);
    let refused = |core: &mut Core, c: Command| run(core, c.into(), T0).unwrap_err().message;
    assert!(refused(&mut core, card("jo", "4242 4242 4242 4242", false)).contains("never a card number"));
    let Command::AddPaymentMethod(mut input) = card("jo", "tok_visa", false) else { panic!() };
    input.expiry_year = 2020;
    assert!(refused(&mut core, Command::AddPaymentMethod(input.clone())).contains("expired"));
    input.expiry_year = 2099;
    input.expiry_month = 13;
    assert!(refused(&mut core, Command::AddPaymentMethod(input.clone())).contains("expiry_month"));
    input.expiry_month = 1;
    input.last_four = "42".into();
    assert!(refused(&mut core, Command::AddPaymentMethod(input.clone())).contains("last_four_digits"));
    input.last_four = String::new();
    input.kind = "cash".into();
    assert!(refused(&mut core, Command::AddPaymentMethod(input)).contains("type must be one of"));
    assert!(core.wallets.is_empty(), "nothing stored");
}

#[test]
fn a_payment_naming_a_stored_method_is_charged_with_its_token() {
    let mut cfg = CoreConfig::new(1);
    cfg.charged_providers = vec!["simulated".into()];
    let mut core = Core::new(0, cfg, 1, 1);
    run(&mut core, Command::CreateProductWithId { id: 1, input: input("p", 5) }.into(), T0).unwrap();
    run(&mut core, Command::AddItem { user_id: "di".into(), product_id: 1, quantity: 1 }.into(), T0).unwrap();
    let Reply::PaymentMethod(m) = run(&mut core, card("di", "tok_chargeDeclined", false).into(), T0).unwrap() else { panic!() };

    let mut named = PaymentInput::new("di", "", "");
    named.payment_method_id = m.id.clone();
    let mut both = named.clone().with_token("tok_visa");
    assert!(run(&mut core, Command::CreatePayment(both.clone()).into(), T0).unwrap_err().message.contains("not both"));
    both.token.clear();
    both.provider = "stripe".into();
    assert!(run(&mut core, Command::CreatePayment(both).into(), T0).unwrap_err().message.contains("not the stored method's"));
    let mut unknown = named.clone();
    unknown.payment_method_id = "nope".into();
    assert_eq!(run(&mut core, Command::CreatePayment(unknown).into(), T0).unwrap_err().kind, ErrorKind::NotFound);

    let Reply::Payment(p) = run(&mut core, Command::CreatePayment(named).into(), T0).unwrap() else { panic!() };
    assert_eq!((p.token.as_str(), p.provider.as_str(), p.method.as_str()), ("tok_chargeDeclined", "simulated", "credit_card"));
    assert_eq!(p.payment_method_id, m.id);
    let (_, charges) = drive(&mut core, process(&p), T0 + 1);
    let [ProviderCall::Charge(call)] = &charges[..] else { panic!("one charge call: {charges:?}") };
    assert_eq!(call.token, "tok_chargeDeclined", "charged with the stored token");
}

#[test]
fn a_refund_taken_back_is_not_a_second_completion() {
    let (_, p) = charging_checkout();
    let mut refunded = p.clone();
    (refunded.status, refunded.refunded_amount) = (PaymentStatus::Refunded, p.amount);
    let mut back = refunded.clone();
    (back.status, back.refunded_amount) = (PaymentStatus::Completed, 0);
    assert_eq!(PaymentCause::of(Some(&refunded), &back), PaymentCause::Bookkeeping, "no second payment.completed");
    let mut processing = p.clone();
    processing.status = PaymentStatus::Processing;
    assert_eq!(PaymentCause::of(Some(&processing), &back), PaymentCause::Completed);
}
