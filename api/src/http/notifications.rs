//! Notification service endpoints (contract §5.2), under `/api/v1/notifications`. Errors carry their text
//! in `error`, where this service's old clients read it, and in `message` (a layer in `http`), with real
//! statuses.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use kassa_engine::{Answer, Cmd, Count, Deleted, Engine, EngineError, NotificationFilter, NotificationInput, Page, cmd};
use kassa_engine::{Notification, notify};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spec::{Field, Kind, LONG, LimitDefault, OFFSET, Param, SHORT, USER_ID};
use super::{ApiResult, AppState, Caller, ID_MAX, P, PageParams, Pairs, Q, RouteDef, Write, def, json_response, ok, pairs_from, segment};
use crate::access::Access;
use crate::auth::authorize;
use crate::error::ApiError;
use crate::scan::{all_pages, blocking};
use crate::wire;

#[derive(Serialize, ToSchema)]
pub struct NotificationJson<'a> {
    id: &'a str,
    user_id: &'a str,
    title: &'a str,
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    status: &'a str,
    priority: &'a str,
    channel: &'a str,
    template_id: &'a str,
    #[schema(value_type = Object)]
    data: Pairs<'a>,
    created_at: String,
    updated_at: String,
    sent_at: Option<String>,
    read_at: Option<String>,
    expires_at: Option<String>,
    /// When a scheduled notification is due.
    send_at: Option<String>,
    /// Times it was sent (a retry sends it again).
    attempts: u32,
    /// The current delivery on a channel Kassa delivers (`X-Kassa-Delivery`), else empty.
    delivery_id: &'a str,
    /// Every delivery attempt, oldest first (the last 64).
    deliveries: Vec<DeliveryJson<'a>>,
    delivered_at: Option<String>,
    /// When the next attempt of the current delivery is due.
    next_attempt_at: Option<String>,
}

/// One delivery attempt of a notification.
#[derive(Serialize, ToSchema)]
pub struct DeliveryJson<'a> {
    delivery_id: &'a str,
    attempt: u32,
    at: String,
    /// `delivered` or `failed`.
    outcome: &'static str,
    /// Why it failed; empty when delivered.
    error: &'a str,
}

impl<'a> NotificationJson<'a> {
    fn new(n: &'a Notification) -> NotificationJson<'a> {
        NotificationJson {
            id: &n.id,
            user_id: &n.user_id,
            title: &n.title,
            message: &n.message,
            kind: &n.kind,
            status: &n.status,
            priority: &n.priority,
            channel: &n.channel,
            template_id: &n.template_id,
            data: Pairs(&n.data),
            created_at: wire::rfc3339(n.created_at),
            updated_at: wire::rfc3339(n.updated_at),
            sent_at: n.sent_at.map(wire::rfc3339),
            read_at: n.read_at.map(wire::rfc3339),
            expires_at: n.expires_at.map(wire::rfc3339),
            send_at: n.send_at.map(wire::rfc3339),
            attempts: n.attempts,
            delivery_id: &n.delivery_id,
            deliveries: n
                .deliveries
                .iter()
                .map(|d| DeliveryJson {
                    delivery_id: &d.delivery_id,
                    attempt: d.attempt,
                    at: wire::rfc3339(d.at),
                    outcome: if d.delivered { "delivered" } else { "failed" },
                    error: &d.error,
                })
                .collect(),
            delivered_at: n.delivered_at.map(wire::rfc3339),
            next_attempt_at: n.next_attempt_at.map(wire::rfc3339),
        }
    }
}

/// The notification's JSON as `GET /api/v1/notifications/{id}` answers it inside its envelope: the body
/// of a webhook delivery.
pub fn notification_json(n: &Notification) -> Vec<u8> {
    serde_json::to_vec(&NotificationJson::new(n)).expect("a notification always serialises")
}

#[derive(Serialize, ToSchema)]
pub struct SingleEnvelope<'a> {
    success: bool,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<NotificationJson<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct ListEnvelope<'a> {
    success: bool,
    message: String,
    notifications: Vec<NotificationJson<'a>>,
    total: u64,
    unread_count: u64,
}

#[derive(Serialize, ToSchema)]
pub struct StatsEnvelope {
    success: bool,
    message: &'static str,
    stats: NotificationStats,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationStats {
    total_notifications: u64,
    unread_notifications: u64,
    sent_notifications: u64,
    failed_notifications: u64,
    pending_notifications: u64,
    by_type: BTreeMap<String, u64>,
    by_channel: BTreeMap<String, u64>,
    by_status: BTreeMap<String, u64>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateNotificationBody {
    user_id: Option<String>,
    title: Option<String>,
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    channel: Option<String>,
    priority: Option<String>,
    template_id: Option<String>,
    #[schema(value_type = Object)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
    /// RFC 3339.
    expires_at: Option<String>,
    /// RFC 3339; required for `/schedule`.
    send_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct BulkNotificationBody {
    user_ids: Option<Vec<String>>,
    title: Option<String>,
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    channel: Option<String>,
    priority: Option<String>,
    template_id: Option<String>,
    #[schema(value_type = Object)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
    expires_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateNotificationBody {
    status: Option<String>,
    title: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ReadAllBody {
    user_id: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ListParams {
    user_id: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The most notifications one bulk call creates.
pub const BULK_USERS_MAX: usize = 1000;

fn types() -> Vec<&'static str> {
    notify::TYPES.to_vec()
}
fn channels() -> Vec<&'static str> {
    notify::CHANNELS.to_vec()
}
fn statuses() -> Vec<&'static str> {
    notify::STATUSES.to_vec()
}
/// An empty priority means the type's default.
fn priorities() -> Vec<&'static str> {
    std::iter::once("").chain(notify::PRIORITIES).collect()
}
/// An empty status leaves it unchanged.
fn statuses_or_empty() -> Vec<&'static str> {
    std::iter::once("").chain(notify::STATUSES).collect()
}

const ID: Param = Param::path("id", Kind::Key(ID_MAX));
const USER: Param = Param::query("user_id", Kind::Key(ID_MAX)).required();
const LIMIT: Param = Param::query("limit", Kind::Limit(LimitDefault::Notification));

const COMMON: [Field; 7] = [
    Field::required("title", SHORT),
    Field::required("message", LONG),
    Field::required("type", Kind::OneOf(types)),
    Field::required("channel", Kind::OneOf(channels)),
    Field::optional("priority", Kind::OneOf(priorities)).note("Empty or absent: the type's default priority."),
    Field::optional("template_id", SHORT),
    Field::optional("data", Kind::StringMap),
];

impl CreateNotificationBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::required("user_id", USER_ID),
        COMMON[0],
        COMMON[1],
        COMMON[2],
        COMMON[3],
        COMMON[4],
        COMMON[5],
        COMMON[6],
        Field::optional("expires_at", Kind::Time),
        Field::optional("send_at", Kind::Ignored).note("See `/schedule`."),
    ];
    /// The same body for `/schedule`, where `send_at` is required (and must be in the future).
    pub(crate) const SCHEDULE_FIELDS: &[Field] = &[
        Field::required("user_id", USER_ID),
        COMMON[0],
        COMMON[1],
        COMMON[2],
        COMMON[3],
        COMMON[4],
        COMMON[5],
        COMMON[6],
        Field::optional("expires_at", Kind::Time),
        Field::required("send_at", Kind::Time).note("When to send it; must be in the future."),
    ];
}

impl BulkNotificationBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::required("user_ids", Kind::Keys { max: BULK_USERS_MAX, key_max: ID_MAX })
            .note("An empty list creates nothing; the rest of the body is then not checked."),
        COMMON[0],
        COMMON[1],
        COMMON[2],
        COMMON[3],
        COMMON[4],
        COMMON[5],
        COMMON[6],
        Field::optional("expires_at", Kind::Time),
    ];
}

impl UpdateNotificationBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::optional("status", Kind::OneOf(statuses_or_empty)).note("Empty or absent: unchanged."),
        Field::optional("title", SHORT).note("Empty or absent: unchanged."),
        Field::optional("message", LONG).note("Empty or absent: unchanged."),
    ];
}

impl ReadAllBody {
    pub(crate) const FIELDS: &[Field] = &[Field::required("user_id", USER_ID)];
}

pub fn routes() -> Vec<RouteDef> {
    use Access::{Admin, User};
    const LIST: &[Param] = &[
        USER,
        LIMIT,
        OFFSET,
        Param::query("status", Kind::Filter(statuses)).note("Only notifications with this status; wins over `type`."),
        Param::query("type", Kind::Filter(types)).note("Only notifications of this type."),
    ];
    let t = "notifications";
    vec![
        def(Method::POST, "/api/v1/notifications", User, t, "Create a notification", create)
            .body("CreateNotificationBody")
            .returns(201, "SingleEnvelope"),
        def(Method::GET, "/api/v1/notifications", User, t, "A user's notifications, newest first", list)
            .returns(200, "ListEnvelope")
            .params(LIST),
        def(Method::GET, "/api/v1/notifications/unread", User, t, "A user's unread notifications", unread)
            .returns(200, "ListEnvelope")
            .params(&[USER, LIMIT, OFFSET]),
        def(Method::GET, "/api/v1/notifications/stats", User, t, "A user's notification statistics", stats)
            .returns(200, "StatsEnvelope")
            .params(&[USER]),
        def(Method::POST, "/api/v1/notifications/read-all", User, t, "Mark all of a user's notifications read", read_all)
            .body("ReadAllBody")
            .returns(200, "SingleEnvelope"),
        def(Method::POST, "/api/v1/notifications/bulk", Admin, t, "Create one notification per user", bulk)
            .body("BulkNotificationBody")
            .returns(201, "ListEnvelope")
            .without_idempotency(),
        def(Method::POST, "/api/v1/notifications/schedule", User, t, "Create a notification to be sent at send_at", schedule)
            .body("ScheduleNotificationBody")
            .returns(201, "SingleEnvelope"),
        def(Method::POST, "/api/v1/notifications/cleanup", Admin, t, "Delete expired notifications", cleanup)
            .returns(200, "SingleEnvelope"),
        def(Method::GET, "/api/v1/notifications/{id}", User, t, "Get a notification", get)
            .returns(200, "SingleEnvelope")
            .params(&[ID])
            .errors(&[404]),
        def(Method::PUT, "/api/v1/notifications/{id}", User, t, "Update status, title or message", update)
            .body("UpdateNotificationBody")
            .returns(200, "SingleEnvelope")
            .params(&[ID])
            .errors(&[404]),
        def(Method::DELETE, "/api/v1/notifications/{id}", User, t, "Delete a notification", delete)
            .returns(200, "SingleEnvelope")
            .params(&[ID])
            .errors(&[404]),
        def(Method::POST, "/api/v1/notifications/{id}/send", User, t, "Send a notification", send)
            .returns(200, "SingleEnvelope")
            .params(&[ID])
            .errors(&[404, 410]),
        def(Method::POST, "/api/v1/notifications/{id}/read", User, t, "Mark a notification read", read)
            .returns(200, "SingleEnvelope")
            .params(&[ID])
            .errors(&[404]),
        def(Method::POST, "/api/v1/notifications/{id}/retry", User, t, "Retry a failed notification", retry)
            .returns(200, "SingleEnvelope")
            .params(&[ID])
            .errors(&[404, 409, 410]),
    ]
}

fn single(status: StatusCode, message: &str, n: &Notification) -> axum::response::Response {
    json_response(status, &SingleEnvelope { success: true, message, notification: Some(NotificationJson::new(n)) })
}

fn plain(message: &str) -> axum::response::Response {
    ok(&SingleEnvelope { success: true, message, notification: None })
}

/// What a per-notification action answers with: the notification it left, or the message alone
/// when it left none (a delete).
trait Acted: Answer {
    fn answer(self, done: &str) -> axum::response::Response;
}

impl Acted for Notification {
    fn answer(self, done: &str) -> axum::response::Response {
        single(StatusCode::OK, done, &self)
    }
}

impl Acted for Deleted {
    fn answer(self, done: &str) -> axum::response::Response {
        plain(done)
    }
}

fn required(value: Option<String>, field: &str) -> Result<String, ApiError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ApiError::invalid_body(format!("{field} is required"))),
    }
}

fn time_field(value: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => wire::parse_time(v).map(Some).map_err(|e| ApiError::invalid_body(format!("{field}: {e}"))),
    }
}

fn input_from(body: CreateNotificationBody) -> Result<(NotificationInput, Option<String>), ApiError> {
    let input = NotificationInput {
        user_id: required(body.user_id, "user_id")?,
        title: required(body.title, "title")?,
        message: required(body.message, "message")?,
        kind: required(body.kind, "type")?,
        channel: required(body.channel, "channel")?,
        priority: body.priority.unwrap_or_default(),
        template_id: body.template_id.unwrap_or_default(),
        data: pairs_from(body.data)?.unwrap_or_default(),
        expires_at: time_field(body.expires_at.as_deref(), "expires_at")?,
    };
    Ok((input, body.send_at))
}

/// Loads a notification and checks the caller owns it.
fn owned(s: &AppState, caller: &Caller, id: &str) -> Result<Notification, ApiError> {
    let id = segment(id, "notification id", ID_MAX)?;
    let n = s.engine.notification(id)?.ok_or_else(|| ApiError::not_found(format!("notification not found: {id}")))?;
    authorize(caller.actor(), &n.user_id)?;
    Ok(n)
}

fn query_user<'a>(caller: &Caller, user_id: &'a Option<String>) -> Result<&'a str, ApiError> {
    let user_id = user_id.as_deref().filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("User ID is required"))?;
    super::baskets::user(caller, user_id)
}

async fn create(State(s): State<AppState>, caller: Caller, w: Write) -> ApiResult {
    let (input, _) = input_from(w.json()?)?;
    segment(&input.user_id, "user_id", ID_MAX)?;
    authorize(caller.actor(), &input.user_id)?;
    let n = s.engine.run(w.keyed(cmd::create_notification(input))).await?;
    Ok(single(StatusCode::CREATED, "Notification created successfully", &n))
}

async fn schedule(State(s): State<AppState>, caller: Caller, w: Write) -> ApiResult {
    let (input, send_at) = input_from(w.json()?)?;
    segment(&input.user_id, "user_id", ID_MAX)?;
    authorize(caller.actor(), &input.user_id)?;
    let send_at = time_field(send_at.as_deref(), "send_at")?.ok_or_else(|| ApiError::invalid_body("send_at is required"))?;
    let n = s.engine.run(w.keyed(cmd::schedule_notification(input, send_at))).await?;
    Ok(single(StatusCode::CREATED, "Notification scheduled successfully", &n))
}

async fn bulk(State(s): State<AppState>, w: Write) -> ApiResult {
    // A template the engine refuses is its Invalid error (a 400); single users it refuses are skipped.
    let body: BulkNotificationBody = w.json()?;
    let users = body.user_ids.ok_or_else(|| ApiError::invalid_body("user_ids is required"))?;
    if users.len() > BULK_USERS_MAX {
        return Err(ApiError::invalid_body(format!("at most {BULK_USERS_MAX} user_ids per call")));
    }
    for u in &users {
        segment(u, "user_id", ID_MAX)?;
    }
    let template = CreateNotificationBody {
        user_id: Some("bulk".into()),
        title: body.title,
        message: body.message,
        kind: body.kind,
        channel: body.channel,
        priority: body.priority,
        template_id: body.template_id,
        data: body.data,
        expires_at: body.expires_at,
        send_at: None,
    };
    let (template, _) = input_from(template)?;
    let created = s.engine.bulk_notifications(&users, template).await?;
    let notifications: Vec<NotificationJson> = created.iter().map(NotificationJson::new).collect();
    let n = notifications.len() as u64;
    Ok(json_response(
        StatusCode::CREATED,
        &ListEnvelope { success: true, message: format!("Created {n} notifications"), notifications, total: n, unread_count: 0 },
    ))
}

async fn cleanup(State(s): State<AppState>, w: Write) -> ApiResult {
    let Count(n) = s.engine.run(w.keyed(cmd::cleanup_notifications())).await?;
    Ok(plain(&format!("Cleaned up {n} expired notifications")))
}

async fn read_all(State(s): State<AppState>, caller: Caller, w: Write) -> ApiResult {
    let body: ReadAllBody = w.json()?;
    let user_id = body.user_id.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::invalid_body("user_id is required"))?;
    let user_id = super::baskets::user(&caller, &user_id)?.to_string();
    let Count(n) = s.engine.run(w.keyed(cmd::mark_all_notifications_read(user_id))).await?;
    Ok(plain(&format!("Marked {n} notifications as read")))
}

async fn list(State(s): State<AppState>, caller: Caller, Q(q): Q<ListParams>) -> ApiResult {
    let user_id = query_user(&caller, &q.user_id)?;
    let page = PageParams { limit: q.limit.clone(), offset: q.offset.clone(), after: None }.page(&s.cfg, LimitDefault::Notification)?;
    let filter = NotificationFilter {
        status: q.status.clone().filter(|v| !v.is_empty()),
        kind: q.kind.clone().filter(|v| !v.is_empty()),
        unread_only: false,
    };
    let result = s.engine.notifications_for_user(user_id, &filter, page)?;
    // `total` counts all of the user's notifications, as the old service did.
    let total = if filter.status.is_some() || filter.kind.is_some() {
        s.engine.notifications_for_user(user_id, &NotificationFilter::default(), Page::first(0))?.total
    } else {
        result.total
    };
    Ok(ok(&ListEnvelope {
        success: true,
        message: "Notifications retrieved successfully".into(),
        notifications: result.items.iter().map(NotificationJson::new).collect(),
        total,
        unread_count: result.unread,
    }))
}

async fn unread(State(s): State<AppState>, caller: Caller, Q(q): Q<ListParams>) -> ApiResult {
    let user_id = query_user(&caller, &q.user_id)?;
    let page = PageParams { limit: q.limit.clone(), offset: q.offset.clone(), after: None }.page(&s.cfg, LimitDefault::Notification)?;
    let filter = NotificationFilter { unread_only: true, ..Default::default() };
    let result = s.engine.notifications_for_user(user_id, &filter, page)?;
    Ok(ok(&ListEnvelope {
        success: true,
        message: "Unread notifications retrieved successfully".into(),
        notifications: result.items.iter().map(NotificationJson::new).collect(),
        total: result.total,
        unread_count: result.unread,
    }))
}

async fn stats(State(s): State<AppState>, caller: Caller, Q(q): Q<ListParams>) -> ApiResult {
    let user_id = query_user(&caller, &q.user_id)?.to_string();
    let stats = blocking(&s.engine, move |e| stats_of(e, &user_id)).await??;
    Ok(ok(&StatsEnvelope { success: true, message: "Notification statistics retrieved successfully", stats }))
}

/// Counts over every notification of a user: reads all of them, page by page (run it with `blocking`).
fn stats_of(engine: &Engine, user_id: &str) -> Result<NotificationStats, EngineError> {
    let mut st = NotificationStats {
        total_notifications: 0,
        unread_notifications: 0,
        sent_notifications: 0,
        failed_notifications: 0,
        pending_notifications: 0,
        by_type: BTreeMap::new(),
        by_channel: BTreeMap::new(),
        by_status: BTreeMap::new(),
    };
    let all = all_pages(usize::MAX, |page| engine.notifications_for_user(user_id, &NotificationFilter::default(), page).map(|p| p.items))?;
    for n in &all {
        st.total_notifications += 1;
        if n.read_at.is_none() {
            st.unread_notifications += 1;
        }
        match n.status.as_str() {
            "sent" => st.sent_notifications += 1,
            "failed" => st.failed_notifications += 1,
            "pending" => st.pending_notifications += 1,
            _ => {}
        }
        *st.by_type.entry(n.kind.clone()).or_default() += 1;
        *st.by_channel.entry(n.channel.clone()).or_default() += 1;
        *st.by_status.entry(n.status.clone()).or_default() += 1;
    }
    Ok(st)
}

async fn get(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> ApiResult {
    let n = owned(&s, &caller, &id)?;
    Ok(single(StatusCode::OK, "Notification retrieved successfully", &n))
}

/// The shape of the per-notification actions: load the caller's notification (404, or 403 when it is
/// another user's), make the command of its id (which may read the body), run it, and answer `done`
/// with the notification it left (`done` alone when it left none: a delete).
async fn act<T: Acted>(
    s: &AppState,
    caller: &Caller,
    id: &str,
    w: &Write,
    done: &str,
    command: impl FnOnce(String) -> Result<Cmd<T>, ApiError>,
) -> ApiResult {
    let n = owned(s, caller, id)?;
    Ok(s.engine.run(w.keyed(command(n.id)?)).await?.answer(done))
}

async fn update(State(s): State<AppState>, caller: Caller, P(id): P<String>, w: Write) -> ApiResult {
    act(&s, &caller, &id, &w, "Notification updated successfully", |id| {
        let body: UpdateNotificationBody = w.json()?;
        Ok(cmd::update_notification(id, body.status.unwrap_or_default(), body.title.unwrap_or_default(), body.message.unwrap_or_default()))
    })
    .await
}

async fn delete(State(s): State<AppState>, caller: Caller, P(id): P<String>, w: Write) -> ApiResult {
    act(&s, &caller, &id, &w, "Notification deleted successfully", |id| Ok(cmd::delete_notification(id))).await
}

async fn send(State(s): State<AppState>, caller: Caller, P(id): P<String>, w: Write) -> ApiResult {
    act(&s, &caller, &id, &w, "Notification sent successfully", |id| Ok(cmd::send_notification(id))).await
}

async fn read(State(s): State<AppState>, caller: Caller, P(id): P<String>, w: Write) -> ApiResult {
    act(&s, &caller, &id, &w, "Notification marked as read", |id| Ok(cmd::mark_notification_read(id))).await
}

async fn retry(State(s): State<AppState>, caller: Caller, P(id): P<String>, w: Write) -> ApiResult {
    act(&s, &caller, &id, &w, "Notification retried successfully", |id| Ok(cmd::retry_notification(id))).await
}
