//! The user directory: sign-up, login, profiles and admin management, stored in the gateway's own
//! `users.redb` (every commit durable before the answer). All users are also held in memory, so the
//! per-request check "is this subject still active, with which role" costs one map lookup.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::GatewayError;
use crate::auth::{Principal, Role};
use crate::front::Shared;
use crate::respond::error;

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// Names of deleted users: a token for them must not come back to life as a "service token".
const DELETED: TableDefinition<&str, u64> = TableDefinition::new("deleted");

const USERNAME_LEN_MAX: usize = 64;
const PASSWORD_LEN_MAX: usize = 1024;
const PAGE_LIMIT_MAX: usize = 100;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub password_hash: String,
    pub role: Role,
    pub active: bool,
    pub created_at_micros: i64,
    pub updated_at_micros: i64,
    /// Tokens issued before this (Unix seconds) are refused: set on creation and on password change.
    pub tokens_valid_after_secs: u64,
}

/// How a token's subject stands in the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Active { role: Role, tokens_valid_after_secs: u64 },
    Inactive,
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Invalid(String),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("user not found")]
    NotFound,
    #[error("invalid credentials")]
    BadCredentials,
    #[error("user is deactivated")]
    Inactive,
}

impl IntoResponse for UserError {
    fn into_response(self) -> Response {
        let status = match &self {
            UserError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            UserError::Invalid(_) => StatusCode::BAD_REQUEST,
            UserError::Exists(_) => StatusCode::CONFLICT,
            UserError::NotFound => StatusCode::NOT_FOUND,
            UserError::BadCredentials => StatusCode::UNAUTHORIZED,
            UserError::Inactive => StatusCode::FORBIDDEN,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "user store failed");
        }
        error(status, &self.to_string())
    }
}

fn storage(e: impl std::fmt::Display) -> UserError {
    UserError::Storage(e.to_string())
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn hash_password(password: &str) -> Result<String, UserError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(storage)?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(storage)
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

fn check_username(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty() && name.len() <= USERNAME_LEN_MAX && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c));
    if ok { Ok(()) } else { Err(UserError::Invalid(format!("username must be 1-{USERNAME_LEN_MAX} of A-Z a-z 0-9 _ . - @"))) }
}

pub struct UserStore {
    db: Database,
    users: RwLock<BTreeMap<String, UserRecord>>,
    deleted: RwLock<HashSet<String>>,
    password_min_len: usize,
}

impl UserStore {
    /// Opens (or creates) `<data_dir>/users.redb`.
    pub fn open(data_dir: &Path, password_min_len: usize) -> Result<UserStore, GatewayError> {
        std::fs::create_dir_all(data_dir).map_err(|e| GatewayError::Io(data_dir.display().to_string(), e))?;
        let path = data_dir.join("users.redb");
        let db = Database::create(&path).map_err(|e| GatewayError::Users(format!("{}: {e}", path.display())))?;
        let load = || -> Result<_, UserError> {
            let txn = db.begin_write().map_err(storage)?;
            txn.open_table(USERS).map_err(storage)?;
            txn.open_table(DELETED).map_err(storage)?;
            txn.commit().map_err(storage)?;
            let read = db.begin_read().map_err(storage)?;
            let mut users = BTreeMap::new();
            for row in read.open_table(USERS).map_err(storage)?.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let record: UserRecord = serde_json::from_slice(v.value()).map_err(storage)?;
                users.insert(k.value().to_string(), record);
            }
            let mut deleted = HashSet::new();
            for row in read.open_table(DELETED).map_err(storage)?.iter().map_err(storage)? {
                deleted.insert(row.map_err(storage)?.0.value().to_string());
            }
            Ok((users, deleted))
        };
        let (users, deleted) = load().map_err(|e| GatewayError::Users(e.to_string()))?;
        Ok(UserStore { db, users: RwLock::new(users), deleted: RwLock::new(deleted), password_min_len })
    }

    pub fn standing(&self, subject: &str) -> Standing {
        if let Some(u) = self.users.read().get(subject) {
            return if u.active {
                Standing::Active { role: u.role, tokens_valid_after_secs: u.tokens_valid_after_secs }
            } else {
                Standing::Inactive
            };
        }
        if self.deleted.read().contains(subject) { Standing::Inactive } else { Standing::Unknown }
    }

    pub fn get(&self, username: &str) -> Option<UserRecord> {
        self.users.read().get(username).cloned()
    }

    pub fn count(&self) -> usize {
        self.users.read().len()
    }

    /// Writes a record durably, then publishes it in memory. The map's write lock is held across the commit so
    /// two writers of the same user cannot publish out of order.
    fn put(&self, record: UserRecord) -> Result<(), UserError> {
        let mut users = self.users.write();
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(USERS).map_err(storage)?;
            let bytes = serde_json::to_vec(&record).map_err(storage)?;
            table.insert(record.username.as_str(), bytes.as_slice()).map_err(storage)?;
            txn.open_table(DELETED).map_err(storage)?.remove(record.username.as_str()).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        self.deleted.write().remove(&record.username);
        users.insert(record.username.clone(), record);
        Ok(())
    }

    fn check_password(&self, password: &str) -> Result<(), UserError> {
        if password.len() < self.password_min_len || password.len() > PASSWORD_LEN_MAX {
            return Err(UserError::Invalid(format!("password must be {}-{PASSWORD_LEN_MAX} characters", self.password_min_len)));
        }
        Ok(())
    }

    /// Creates a user (argon2id hash; blocking for tens of milliseconds: call from a blocking thread).
    pub fn create(&self, username: &str, password: &str, email: &str, full_name: &str, role: Role) -> Result<UserRecord, UserError> {
        check_username(username)?;
        self.check_password(password)?;
        if email.len() > 254 || full_name.len() > 200 {
            return Err(UserError::Invalid("email or full_name too long".into()));
        }
        if self.users.read().contains_key(username) {
            return Err(UserError::Exists(username.into()));
        }
        let now = now_micros();
        let record = UserRecord {
            username: username.into(),
            email: email.into(),
            full_name: full_name.into(),
            password_hash: hash_password(password)?,
            role,
            active: true,
            created_at_micros: now,
            updated_at_micros: now,
            tokens_valid_after_secs: (now / 1_000_000) as u64,
        };
        // Re-check under the write: two concurrent sign-ups of one name must not both win.
        let users = self.users.read();
        if users.contains_key(username) {
            return Err(UserError::Exists(username.into()));
        }
        drop(users);
        self.put(record.clone())?;
        Ok(record)
    }

    pub fn login(&self, username: &str, password: &str) -> Result<UserRecord, UserError> {
        let user = self.get(username);
        // Verify against a fixed hash for unknown users too, so timing does not reveal which names exist.
        let Some(user) = user else {
            let _ = verify_password(password, DUMMY_HASH);
            return Err(UserError::BadCredentials);
        };
        if !verify_password(password, &user.password_hash) {
            return Err(UserError::BadCredentials);
        }
        if !user.active {
            return Err(UserError::Inactive);
        }
        Ok(user)
    }

    pub fn change_password(&self, username: &str, current: &str, new: &str) -> Result<(), UserError> {
        self.check_password(new)?;
        let mut user = self.get(username).ok_or(UserError::NotFound)?;
        if !verify_password(current, &user.password_hash) {
            return Err(UserError::BadCredentials);
        }
        user.password_hash = hash_password(new)?;
        user.updated_at_micros = now_micros();
        user.tokens_valid_after_secs = (user.updated_at_micros / 1_000_000) as u64;
        self.put(user)
    }

    pub fn update(&self, username: &str, change: &UserUpdate, as_admin: bool) -> Result<UserRecord, UserError> {
        let mut user = self.get(username).ok_or(UserError::NotFound)?;
        if let Some(email) = &change.email {
            if email.len() > 254 {
                return Err(UserError::Invalid("email too long".into()));
            }
            user.email = email.clone();
        }
        if let Some(name) = &change.full_name {
            if name.len() > 200 {
                return Err(UserError::Invalid("full_name too long".into()));
            }
            user.full_name = name.clone();
        }
        if change.role.is_some() || change.is_active.is_some() {
            if !as_admin {
                return Err(UserError::Invalid("role and is_active can only be changed by an admin".into()));
            }
            if let Some(role) = &change.role {
                user.role = Role::parse(role).ok_or_else(|| UserError::Invalid("role must be user or admin".into()))?;
            }
            if let Some(active) = change.is_active {
                user.active = active;
            }
        }
        user.updated_at_micros = now_micros();
        self.put(user.clone())?;
        Ok(user)
    }

    pub fn delete(&self, username: &str) -> Result<(), UserError> {
        let mut users = self.users.write();
        if !users.contains_key(username) {
            return Err(UserError::NotFound);
        }
        let txn = self.db.begin_write().map_err(storage)?;
        {
            txn.open_table(USERS).map_err(storage)?.remove(username).map_err(storage)?;
            txn.open_table(DELETED).map_err(storage)?.insert(username, now_micros() as u64).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        users.remove(username);
        self.deleted.write().insert(username.to_string());
        Ok(())
    }

    pub fn page(&self, offset: usize, limit: usize) -> (Vec<UserRecord>, usize) {
        let users = self.users.read();
        (users.values().skip(offset).take(limit).cloned().collect(), users.len())
    }

    /// Creates the configured first admin if no user of that name exists yet.
    pub fn bootstrap_admin(&self, username: &str, password: &str) -> Result<bool, UserError> {
        if self.get(username).is_some() {
            return Ok(false);
        }
        self.create(username, password, "", "Administrator", Role::Admin)?;
        tracing::info!(user = username, "bootstrapped the first admin");
        Ok(true)
    }
}

/// An argon2id hash of a random string, verified against for unknown users (constant-ish login time).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3e4I1k9vZ3ZUq4v5a0l8o5qkqJ9u1n3o8D0Nq3hUuWQ";

#[derive(Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub is_active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        UserView {
            id: u.username.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            role: u.role,
            is_active: u.active,
            created_at: u.created_at_micros,
            updated_at: u.updated_at_micros,
        }
    }
}

#[derive(Deserialize)]
pub struct Register {
    username: String,
    password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    full_name: String,
}

#[derive(Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

#[derive(Deserialize, Default)]
pub struct Refresh {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub role: Option<String>,
    pub is_active: Option<bool>,
}

#[derive(Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
}

type Ctx = State<Arc<Shared>>;

fn store(shared: &Shared) -> Result<Arc<UserStore>, UserError> {
    shared.users.clone().ok_or(UserError::Invalid("authentication is disabled".into()))
}

/// Password hashing is deliberately slow: keep it off the per-core runtimes' event loops.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, UserError> + Send + 'static) -> Result<T, UserError> {
    tokio::task::spawn_blocking(f).await.map_err(storage)?
}

fn token_reply(shared: &Shared, user: &UserRecord) -> Result<serde_json::Value, UserError> {
    let keys = shared.tokens.as_ref().ok_or(UserError::Invalid("authentication is disabled".into()))?;
    let token = keys.issue(user.role, &user.username).map_err(storage)?;
    Ok(json!({"token": token, "token_type": "Bearer", "expires_in": keys.ttl().as_secs()}))
}

async fn register(State(shared): Ctx, Json(body): Json<Register>) -> Result<Response, UserError> {
    let users = store(&shared)?;
    let user = blocking(move || users.create(&body.username, &body.password, &body.email, &body.full_name, Role::User)).await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))).into_response())
}

async fn login(State(shared): Ctx, Json(body): Json<Login>) -> Result<Response, UserError> {
    let users = store(&shared)?;
    let user = blocking(move || users.login(&body.username, &body.password)).await?;
    let mut reply = token_reply(&shared, &user)?;
    reply["user"] = serde_json::to_value(UserView::from(&user)).map_err(storage)?;
    Ok(Json(reply).into_response())
}

/// A new token for a still-valid one (from `Authorization: Bearer` or the body's `token`).
async fn refresh(State(shared): Ctx, headers: HeaderMap, body: Option<Json<Refresh>>) -> Result<Response, UserError> {
    let from_header =
        headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_string);
    let token = from_header.or_else(|| body.and_then(|Json(b)| b.token)).ok_or(UserError::BadCredentials)?;
    let principal = crate::auth::principal_of(&shared, &token).map_err(|f| match f {
        crate::auth::AuthFailure::Inactive => UserError::Inactive,
        _ => UserError::BadCredentials,
    })?;
    let keys = shared.tokens.as_ref().ok_or(UserError::BadCredentials)?;
    let token = keys.issue(principal.role, &principal.subject).map_err(storage)?;
    Ok(Json(json!({"token": token, "token_type": "Bearer", "expires_in": keys.ttl().as_secs()})).into_response())
}

async fn me(State(shared): Ctx, Extension(p): Extension<Principal>) -> Result<Response, UserError> {
    let user = store(&shared)?.get(&p.subject).ok_or(UserError::NotFound)?;
    Ok(Json(UserView::from(&user)).into_response())
}

async fn update_me(State(shared): Ctx, Extension(p): Extension<Principal>, Json(body): Json<UserUpdate>) -> Result<Response, UserError> {
    let user = store(&shared)?.update(&p.subject, &body, false)?;
    Ok(Json(UserView::from(&user)).into_response())
}

async fn change_password(
    State(shared): Ctx,
    Extension(p): Extension<Principal>,
    Json(body): Json<ChangePassword>,
) -> Result<Response, UserError> {
    let users = store(&shared)?;
    let subject = p.subject.clone();
    blocking(move || users.change_password(&subject, &body.current_password, &body.new_password)).await?;
    let user = store(&shared)?.get(&p.subject).ok_or(UserError::NotFound)?;
    let mut reply = token_reply(&shared, &user)?;
    reply["message"] = json!("password changed; tokens issued before now are no longer valid");
    Ok(Json(reply).into_response())
}

async fn list(State(shared): Ctx, Query(q): Query<PageQuery>) -> Result<Response, UserError> {
    let limit = q.limit.unwrap_or(50).clamp(1, PAGE_LIMIT_MAX);
    let (page, total) = store(&shared)?.page(q.offset, limit);
    let users: Vec<UserView> = page.iter().map(UserView::from).collect();
    Ok(Json(json!({"users": users, "total": total, "offset": q.offset, "limit": limit})).into_response())
}

async fn get_user(State(shared): Ctx, UrlPath(name): UrlPath<String>) -> Result<Response, UserError> {
    let user = store(&shared)?.get(&name).ok_or(UserError::NotFound)?;
    Ok(Json(UserView::from(&user)).into_response())
}

async fn update_user(State(shared): Ctx, UrlPath(name): UrlPath<String>, Json(body): Json<UserUpdate>) -> Result<Response, UserError> {
    let user = store(&shared)?.update(&name, &body, true)?;
    Ok(Json(UserView::from(&user)).into_response())
}

async fn delete_user(State(shared): Ctx, UrlPath(name): UrlPath<String>) -> Result<Response, UserError> {
    store(&shared)?.delete(&name)?;
    Ok(Json(json!({"message": "user deleted"})).into_response())
}

/// `/auth/*` (and the older `/api/v1/users/*` spellings) plus `/admin/users*`. Who may call what is
/// declared in `auth::GATEWAY_ROUTES`.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/me", get(me).put(update_me))
        .route("/auth/change-password", post(change_password))
        .route("/api/v1/users/register", post(register))
        .route("/api/v1/users/login", post(login))
        .route("/api/v1/users/refresh-token", post(refresh))
        .route("/api/v1/users/profile", get(me).put(update_me))
        .route("/api/v1/users/change-password", post(change_password))
        .route("/admin/users", get(list))
        .route("/admin/users/{username}", get(get_user).put(update_user).delete(delete_user))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_survive_reopen_and_deletions_stick() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = UserStore::open(dir.path(), 8).unwrap();
            store.create("alice", "correct horse", "a@x", "Alice", Role::User).unwrap();
            store.create("bob", "battery staple", "", "", Role::User).unwrap();
            assert!(matches!(store.create("alice", "whatever12", "", "", Role::User), Err(UserError::Exists(_))));
            assert!(matches!(store.create("al ice", "whatever12", "", "", Role::User), Err(UserError::Invalid(_))));
            assert!(matches!(store.create("carol", "short", "", "", Role::User), Err(UserError::Invalid(_))));
            store.delete("bob").unwrap();
            assert!(store.bootstrap_admin("root", "rootpassword").unwrap());
        }
        let store = UserStore::open(dir.path(), 8).unwrap();
        assert!(store.login("alice", "correct horse").is_ok());
        assert!(matches!(store.login("alice", "wrong password"), Err(UserError::BadCredentials)));
        assert!(matches!(store.login("nobody", "whatever"), Err(UserError::BadCredentials)));
        assert_eq!(store.standing("bob"), Standing::Inactive, "deleted users stay refused after a restart");
        assert_eq!(store.standing("svc"), Standing::Unknown);
        assert!(matches!(store.standing("root"), Standing::Active { role: Role::Admin, .. }));
        assert!(!store.bootstrap_admin("root", "rootpassword").unwrap());
        let off = UserUpdate { is_active: Some(false), ..Default::default() };
        assert!(store.update("alice", &off, false).is_err(), "users cannot deactivate or promote themselves");
        store.update("alice", &off, true).unwrap();
        assert!(matches!(store.login("alice", "correct horse"), Err(UserError::Inactive)));
        assert_eq!(store.standing("alice"), Standing::Inactive);
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
