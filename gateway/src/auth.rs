//! Authentication (JWT, HS256 or EdDSA) and authorisation (which routes need a user, which an admin).
//! Two steps: `identify` only finds out who calls (so the rate limiter can key on the user), `admit`
//! then applies the route policy and hands the API its `Actor`. The policy is declared, not inferred:
//! the API's route table and gRPC table (`kassa_api::access`) plus the gateway's own routes
//! ([`GATEWAY_ROUTES`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::GatewayError;
use crate::config::GatewayConfig;
use crate::front::Shared;
use crate::respond;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// The verified caller of a request (a request extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Why a presented token was not accepted (a request extension; the policy decides whether it matters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    Malformed,
    Invalid,
    Inactive,
}

impl AuthFailure {
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Malformed => "authorization header must be 'Bearer <token>'",
            AuthFailure::Invalid => "invalid or expired token",
            AuthFailure::Inactive => "user is deactivated",
        }
    }
}

const LEEWAY_SECS: u64 = 5;
const TOKEN_CACHE_SHARDS: usize = 16;
/// 16 × 4096 remembered tokens at most (a few MiB).
const TOKEN_CACHE_SHARD_CAPACITY: usize = 4096;

type TokenCacheShard = Mutex<HashMap<String, Arc<Claims>>>;

/// Signing and verification keys, resolved once from configuration.
pub struct TokenKeys {
    cache: Box<[TokenCacheShard]>,
    cache_hasher: RandomState,
    encoding: EncodingKey,
    decoding: DecodingKey,
    algorithm: Algorithm,
    /// Built once: only the configured algorithm, exp/nbf/iat/sub/iss required, issuer checked.
    validation: Validation,
    ttl: Duration,
    issuer: String,
}

fn unix_now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn read(path: &Path) -> Result<Vec<u8>, GatewayError> {
    std::fs::read(path).map_err(|e| GatewayError::Config(format!("cannot read {}: {e}", path.display())))
}

/// The HS256 secret: configured, read from a file, or generated once into `<data_dir>/jwt.secret` (mode
/// 0600) so that `kassa token` and the server agree without anyone choosing a secret.
fn hs256_secret(cfg: &GatewayConfig, data_dir: &Path) -> Result<Vec<u8>, GatewayError> {
    if let Some(secret) = &cfg.auth.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    if let Some(file) = &cfg.auth.jwt_secret_file {
        let bytes = read(file)?;
        let trimmed = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
        if trimmed.len() < 16 {
            return Err(GatewayError::Config(format!("{}: secret shorter than 16 bytes", file.display())));
        }
        return Ok(trimmed);
    }
    let file = data_dir.join("jwt.secret");
    match std::fs::read(&file) {
        Ok(bytes) if bytes.len() >= 16 => Ok(bytes),
        Ok(_) => Err(GatewayError::Config(format!("{}: secret shorter than 16 bytes", file.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|e| GatewayError::Io(data_dir.display().to_string(), e))?;
            let secret: String = (0..64).map(|_| format!("{:x}", rand::random::<u8>() & 0xf)).collect();
            write_private(&file, secret.as_bytes())?;
            tracing::info!(file = %file.display(), "generated a JWT secret");
            Ok(secret.into_bytes())
        }
        Err(e) => Err(GatewayError::Io(file.display().to_string(), e)),
    }
}

fn write_private(file: &Path, bytes: &[u8]) -> Result<(), GatewayError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let io = |e| GatewayError::Io(file.display().to_string(), e);
    let mut f = options.open(file).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

impl TokenKeys {
    pub fn from_config(cfg: &GatewayConfig, data_dir: &Path) -> Result<TokenKeys, GatewayError> {
        let auth = &cfg.auth;
        let (encoding, decoding, algorithm) = match (&auth.ed25519_private_key_file, &auth.ed25519_public_key_file) {
            (Some(private), Some(public)) => {
                let bad = |e: jsonwebtoken::errors::Error| GatewayError::Config(format!("ed25519 key: {e}"));
                let enc = EncodingKey::from_ed_pem(&read(private)?).map_err(bad)?;
                let dec = DecodingKey::from_ed_pem(&read(public)?).map_err(bad)?;
                (enc, dec, Algorithm::EdDSA)
            }
            (None, None) => {
                let secret = hs256_secret(cfg, data_dir)?;
                (EncodingKey::from_secret(&secret), DecodingKey::from_secret(&secret), Algorithm::HS256)
            }
            _ => {
                return Err(GatewayError::Config("set both ed25519_private_key_file and ed25519_public_key_file".into()));
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "iss"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[auth.issuer.as_str()]);
        Ok(TokenKeys {
            cache: (0..TOKEN_CACHE_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            cache_hasher: RandomState::new(),
            encoding,
            decoding,
            algorithm,
            validation,
            ttl: Duration::from_secs(auth.token_ttl_secs),
            issuer: auth.issuer.clone(),
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, role: Role, subject: &str) -> Result<String, GatewayError> {
        let now = unix_now_secs();
        let claims = Claims { sub: subject.to_string(), role, iss: self.issuer.clone(), iat: now, nbf: now, exp: now + self.ttl.as_secs() };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding).map_err(|e| GatewayError::Token(e.to_string()))
    }

    /// Only the configured algorithm is accepted (no "any HMAC" or `none`), with exp/nbf/iss checked.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok().map(|data| data.claims)
    }

    /// `verify` with a bounded cache of tokens already verified: a client sends the same token on every
    /// request, and checking a signature (base64, JSON, HMAC) costs more than the rest of the gateway.
    /// A hit still checks the time claims; the token string itself is the key, so a hit is exactly a
    /// token whose signature was verified.
    pub fn verify_cached(&self, token: &str) -> Option<Arc<Claims>> {
        let now = unix_now_secs();
        let fresh = |c: &Claims| c.exp + LEEWAY_SECS > now && c.nbf <= now + LEEWAY_SECS;
        let shard = &self.cache[(self.cache_hasher.hash_one(token) as usize) % self.cache.len()];
        if let Some(claims) = shard.lock().get(token) {
            return fresh(claims).then(|| claims.clone());
        }
        let claims = Arc::new(self.verify(token)?);
        let mut map = shard.lock();
        if map.len() >= TOKEN_CACHE_SHARD_CAPACITY {
            map.retain(|_, c| fresh(c));
            if map.len() >= TOKEN_CACHE_SHARD_CAPACITY {
                map.clear();
            }
        }
        map.insert(token.to_string(), claims.clone());
        Some(claims)
    }
}

/// Issues a token as `kassa token --role admin --subject NAME` does: same keys as the server (reads or
/// creates `<data_dir>/jwt.secret` when no secret is configured).
pub fn issue_token(cfg: &GatewayConfig, role: Role, subject: &str) -> Result<String, GatewayError> {
    let data_dir = cfg.data_dir.clone().unwrap_or_else(|| std::path::PathBuf::from("data"));
    TokenKeys::from_config(cfg, &data_dir)?.issue(role, subject)
}

/// What a route needs: the API's own type, so that the gateway and the API share one policy.
pub use kassa_api::access::Access;
use kassa_api::access::{Caller, HttpPolicy, Verdict};

/// The gateway's own routes (`health::routes`, `users::routes`) and who may call them. `/metrics` is
/// listed as administrative; `GatewayConfig::metrics_public` opens it (see [`http_policy`]).
pub const GATEWAY_ROUTES: &[(Method, &str, Access)] = &[
    (Method::GET, "/health", Access::Public),
    (Method::GET, "/health/", Access::Public),
    (Method::GET, "/health/live", Access::Public),
    (Method::GET, "/health/ready", Access::Public),
    (Method::GET, "/health/detailed", Access::Public),
    (Method::GET, METRICS, Access::Admin),
    (Method::GET, "/admin/health", Access::Admin),
    (Method::GET, "/admin/status", Access::Admin),
    (Method::GET, "/admin/services", Access::Admin),
    (Method::GET, "/admin/loadbalancer/{service}", Access::Admin),
    (Method::GET, "/admin/circuitbreaker/{service}", Access::Admin),
    (Method::GET, "/admin/rate-limit/status", Access::Admin),
    (Method::GET, "/admin/adapters", Access::Admin),
    (Method::GET, "/admin/adapters/dead-letters", Access::Admin),
    (Method::POST, "/admin/adapters/verify", Access::Admin),
    (Method::POST, "/admin/backup", Access::Admin),
    (Method::POST, "/auth/register", Access::Public),
    (Method::POST, "/auth/login", Access::Public),
    (Method::POST, "/auth/refresh", Access::Public),
    (Method::GET, "/auth/me", Access::User),
    (Method::PUT, "/auth/me", Access::User),
    (Method::POST, "/auth/change-password", Access::User),
    (Method::POST, "/api/v1/users/register", Access::Public),
    (Method::POST, "/api/v1/users/login", Access::Public),
    (Method::POST, "/api/v1/users/refresh-token", Access::Public),
    (Method::GET, "/api/v1/users/profile", Access::User),
    (Method::PUT, "/api/v1/users/profile", Access::User),
    (Method::POST, "/api/v1/users/change-password", Access::User),
    (Method::GET, "/admin/users", Access::Admin),
    (Method::GET, "/admin/users/{username}", Access::Admin),
    (Method::PUT, "/admin/users/{username}", Access::Admin),
    (Method::DELETE, "/admin/users/{username}", Access::Admin),
];

const METRICS: &str = "/metrics";

/// Every HTTP route the gateway serves or forwards — the API's route table and [`GATEWAY_ROUTES`] — with
/// its declared access (`/metrics` public when `metrics_public`).
pub fn http_routes(metrics_public: bool) -> Vec<(Method, String, Access)> {
    let own = GATEWAY_ROUTES.iter().map(|(m, p, a)| {
        let access = if *p == METRICS && metrics_public { Access::Public } else { *a };
        (m.clone(), p.to_string(), access)
    });
    kassa_api::access::http_routes().into_iter().chain(own).collect()
}

/// The HTTP policy, built once per process for each `metrics_public` setting.
pub fn http_policy(metrics_public: bool) -> &'static HttpPolicy {
    static OPEN: std::sync::OnceLock<HttpPolicy> = std::sync::OnceLock::new();
    static CLOSED: std::sync::OnceLock<HttpPolicy> = std::sync::OnceLock::new();
    let cell = if metrics_public { &OPEN } else { &CLOSED };
    cell.get_or_init(|| HttpPolicy::new(http_routes(metrics_public)).expect("the gateway's and the API's routes agree"))
}

/// The HTTP route policy: the declared access of the route a request matches; a request that matches
/// no declared route needs an administrator (`access::UNDECLARED`).
pub fn http_access(method: &Method, path: &str, metrics_public: bool) -> Access {
    http_policy(metrics_public).lookup(method, path).unwrap_or(kassa_api::access::UNDECLARED)
}

/// The gRPC policy, by `/package.Service/Method` (`access::GRPC_ACCESS`); undeclared methods need an
/// administrator.
pub fn grpc_access(path: &str) -> Access {
    kassa_api::access::grpc_access(path).unwrap_or(kassa_api::access::UNDECLARED)
}

/// The gateway's decision for a request with auth on: `Ok` to pass it on, else the refusal's status
/// and message. `principal` is the verified caller, if any; `failure` why a presented token was refused.
pub fn decide(
    grpc: bool,
    method: &Method,
    path: &str,
    principal: Option<&Principal>,
    failure: Option<AuthFailure>,
    metrics_public: bool,
) -> Result<(), (StatusCode, &'static str)> {
    let access = if grpc { grpc_access(path) } else { http_access(method, path, metrics_public) };
    let caller = match principal {
        None => Caller::Anonymous,
        Some(p) if p.is_admin() => Caller::Admin,
        Some(_) => Caller::User,
    };
    match access.decide(caller) {
        Verdict::Allowed => Ok(()),
        Verdict::Unauthenticated => Err((StatusCode::UNAUTHORIZED, failure.map_or("authentication required", AuthFailure::message))),
        Verdict::Forbidden => Err((StatusCode::FORBIDDEN, "admin role required")),
    }
}

pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The bearer token of a request, from `Authorization` (HTTP header or gRPC metadata, which is the same).
fn bearer(headers: &HeaderMap) -> Option<Result<&str, AuthFailure>> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    let text = value.to_str().ok();
    Some(match text.and_then(|t| t.strip_prefix("Bearer ").or_else(|| t.strip_prefix("bearer "))) {
        Some(token) if !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(AuthFailure::Malformed),
    })
}

/// Verifies a token against the keys and the user directory; the stored role wins over the token's, so
/// a demoted or deactivated user loses access at once. Subjects unknown to the directory (service
/// tokens from `kassa token`) keep the role they were signed with.
pub fn principal_of(shared: &Shared, token: &str) -> Result<Principal, AuthFailure> {
    let keys = shared.tokens.as_ref().ok_or(AuthFailure::Invalid)?;
    let claims = keys.verify_cached(token).ok_or(AuthFailure::Invalid)?;
    let role = match shared.users.as_ref().map(|u| u.standing(&claims.sub)) {
        Some(crate::users::Standing::Active { role, tokens_valid_after_secs }) => {
            if claims.iat < tokens_valid_after_secs {
                return Err(AuthFailure::Invalid);
            }
            role
        }
        Some(crate::users::Standing::Inactive) => return Err(AuthFailure::Inactive),
        Some(crate::users::Standing::Unknown) | None => claims.role,
    };
    Ok(Principal { subject: claims.sub.clone(), role })
}

/// Identifies the caller from its bearer token; never rejects (the route policy decides). A failure is
/// left in the extensions so that a 401 can say why.
pub fn identify(shared: &Shared, req: &mut Request) -> Option<Principal> {
    req.extensions_mut().remove::<Principal>();
    match bearer(req.headers())?.and_then(|token| principal_of(shared, token)) {
        Ok(principal) => {
            req.extensions_mut().insert(principal.clone());
            Some(principal)
        }
        Err(failure) => {
            req.extensions_mut().insert(failure);
            None
        }
    }
}

/// Applies the route policy ([`decide`]): 401 without a valid identity, 403 with too little of one (the
/// refusal is returned); else hands the API its `Actor` so it can enforce ownership.
pub fn admit(shared: &Shared, req: &mut Request, grpc: bool) -> Option<Response> {
    let principal = req.extensions().get::<Principal>().cloned();
    let failure = req.extensions().get::<AuthFailure>().copied();
    let verdict = decide(grpc, req.method(), req.uri().path(), principal.as_ref(), failure, shared.cfg.metrics_public);
    if let Err((status, message)) = verdict {
        let mut response = respond::error_for(grpc, status, message);
        if status == StatusCode::UNAUTHORIZED && !grpc {
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        return Some(response);
    }
    if let Some(p) = principal {
        crate::actor::attach(req, &p);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        let mut cfg = GatewayConfig::default();
        cfg.auth.jwt_secret = Some("0123456789abcdef0123".into());
        TokenKeys::from_config(&cfg, Path::new("/nonexistent")).unwrap()
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let k = keys();
        let token = k.issue(Role::Admin, "alice").unwrap();
        let claims = k.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("alice", Role::Admin));
        assert!(claims.exp > claims.iat && claims.nbf == claims.iat);
        let mut other = GatewayConfig::default();
        other.auth.jwt_secret = Some("another-secret-of-enough-length".into());
        let foreign = TokenKeys::from_config(&other, Path::new("/nonexistent")).unwrap().issue(Role::Admin, "eve").unwrap();
        assert!(k.verify(&foreign).is_none());
        assert!(k.verify("not.a.token").is_none());
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(k.verify(&parts.join(".")).is_none());
    }

    #[test]
    fn cached_verification_agrees_and_still_expires() {
        let k = keys();
        let token = k.issue(Role::User, "carol").unwrap();
        assert_eq!(k.verify_cached(&token).unwrap().sub, "carol");
        assert_eq!(k.verify_cached(&token).unwrap().sub, "carol", "from the cache");
        assert!(k.verify_cached("garbage").is_none());
        // A cached entry whose exp has passed (beyond the leeway) is refused like any expired token.
        let now = unix_now_secs();
        let stale = Claims { sub: "old".into(), role: Role::User, iss: "kassa".into(), iat: now - 100, nbf: now - 100, exp: now - 10 };
        let shard = (k.cache_hasher.hash_one("stale-token") as usize) % k.cache.len();
        k.cache[shard].lock().insert("stale-token".into(), Arc::new(stale));
        assert!(k.verify_cached("stale-token").is_none(), "a cached token expires like any other");
    }

    #[test]
    fn expired_tokens_are_refused() {
        let k = keys();
        let now = unix_now_secs();
        let claims = Claims { sub: "bob".into(), role: Role::User, iss: "kassa".into(), iat: now - 100, nbf: now - 100, exp: now - 60 };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap();
        assert!(k.verify(&token).is_none());
        let future = Claims { nbf: now + 600, exp: now + 900, ..claims };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &future, &k.encoding).unwrap();
        assert!(k.verify(&token).is_none(), "not valid before nbf");
    }

    #[test]
    fn generated_secret_is_stable_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GatewayConfig::default();
        let a = TokenKeys::from_config(&cfg, dir.path()).unwrap();
        let b = TokenKeys::from_config(&cfg, dir.path()).unwrap();
        assert!(b.verify(&a.issue(Role::User, "u").unwrap()).is_some());
    }

    #[test]
    fn eddsa_keys_from_files() {
        // The example key pair of RFC 8410 §10.3.
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("ed.pem");
        let public = dir.path().join("ed.pub.pem");
        std::fs::write(
            &private,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::write(
            &public,
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let mut cfg = GatewayConfig::default();
        cfg.auth.ed25519_private_key_file = Some(private);
        cfg.auth.ed25519_public_key_file = Some(public);
        let k = TokenKeys::from_config(&cfg, dir.path()).unwrap();
        let token = k.issue(Role::User, "ed").unwrap();
        assert_eq!(jsonwebtoken::decode_header(&token).unwrap().alg, Algorithm::EdDSA);
        assert_eq!(k.verify(&token).unwrap().sub, "ed");
        // An HS256 token is not accepted by an EdDSA verifier (no algorithm confusion).
        assert!(k.verify(&keys().issue(Role::Admin, "x").unwrap()).is_none());
        assert!(!dir.path().join("jwt.secret").exists(), "no HS256 secret generated in EdDSA mode");
    }

    #[test]
    fn route_policy() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(http_access(&get, "/api/products/1", true), Access::Public);
        assert_eq!(http_access(&Method::HEAD, "/api/products/1", true), Access::Public);
        assert_eq!(http_access(&post, "/api/products", true), Access::Admin);
        assert_eq!(http_access(&Method::DELETE, "/products/3", true), Access::Admin);
        assert_eq!(http_access(&get, "/api/baskets/u1", true), Access::User);
        assert_eq!(http_access(&get, "/api/productsX", true), Access::Admin, "undeclared: deny by default");
        assert_eq!(http_access(&get, "/payments/analytics", true), Access::Admin);
        assert_eq!(http_access(&post, "/api/notifications/bulk", true), Access::Admin);
        assert_eq!(http_access(&get, "/admin/status", true), Access::Admin);
        assert_eq!(http_access(&get, "/admin/users/alice", true), Access::Admin);
        assert_eq!(http_access(&get, "/health/ready", true), Access::Public);
        assert_eq!(http_access(&get, "/health", true), Access::Public);
        assert_eq!(http_access(&get, "/metrics", false), Access::Admin);
        assert_eq!(http_access(&get, "/metrics", true), Access::Public);
        assert_eq!(http_access(&post, "/auth/login", true), Access::Public);
        assert_eq!(http_access(&get, "/auth/me", true), Access::User);
        assert_eq!(http_access(&post, "/auth/me", true), Access::Admin, "a method the route does not serve");
        assert_eq!(grpc_access("/product.ProductService/GetProduct"), Access::Public);
        assert_eq!(grpc_access("/product.ProductService/CreateProduct"), Access::Admin);
        assert_eq!(grpc_access("/basket.BasketService/AddItem"), Access::User);
        assert_eq!(grpc_access("/payment.PaymentService/RefundPayment"), Access::Admin);
        assert_eq!(grpc_access("/grpc.health.v1.Health/Check"), Access::Public);
        assert_eq!(grpc_access("/other.Service/Call"), Access::Admin);
    }

    /// A concrete request path for a route template (`{x}` → a value that is no static segment).
    fn concrete(template: &str) -> String {
        template.split('/').map(|s| if s.starts_with('{') { "v1" } else { s }).collect::<Vec<_>>().join("/")
    }

    fn callers() -> [(&'static str, Option<Principal>); 3] {
        [
            ("no token", None),
            ("user token", Some(Principal { subject: "u1".into(), role: Role::User })),
            ("admin token", Some(Principal { subject: "root".into(), role: Role::Admin })),
        ]
    }

    /// What the declared access means for each caller: the gateway must decide exactly this.
    fn expected(access: Access, caller: Option<&Principal>) -> Result<(), StatusCode> {
        match (access, caller) {
            (Access::Public, _) => Ok(()),
            (_, None) => Err(StatusCode::UNAUTHORIZED),
            (Access::Admin, Some(p)) if p.role != Role::Admin => Err(StatusCode::FORBIDDEN),
            _ => Ok(()),
        }
    }

    #[test]
    fn every_declared_route_is_decided_as_declared_for_every_caller() {
        for metrics_public in [false, true] {
            let routes = http_routes(metrics_public);
            let api = kassa_api::http::all_routes();
            assert!(api.len() > 120, "the API's routes and their aliases");
            for (method, path, _) in &api {
                assert!(routes.iter().any(|(m, p, _)| m == method && p == path), "{method} {path} has an entry");
            }
            // `/health` is both the API's and (standalone) the gateway's, public in both.
            let distinct: std::collections::BTreeSet<(String, &String)> = routes.iter().map(|(m, p, _)| (m.to_string(), p)).collect();
            assert_eq!(http_policy(metrics_public).len(), distinct.len(), "one entry per (method, path)");
            for (method, template, access) in &routes {
                let path = concrete(template);
                assert_eq!(http_access(method, &path, metrics_public), *access, "{method} {path} resolves to {template}");
                for (who, caller) in callers() {
                    let got = decide(false, method, &path, caller.as_ref(), None, metrics_public).map_err(|(s, _)| s);
                    assert_eq!(got, expected(*access, caller.as_ref()), "{method} {template} with {who}");
                    if *method == Method::GET {
                        let head = decide(false, &Method::HEAD, &path, caller.as_ref(), None, metrics_public).map_err(|(s, _)| s);
                        assert_eq!(head, got, "HEAD {template} with {who}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_rpc_is_decided_as_declared_for_every_caller() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(kassa_api::pb::FILE_DESCRIPTOR_SET).expect("descriptor set");
        let mut rpcs: Vec<String> = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for m in &service.method {
                    rpcs.push(format!("/{}.{}/{}", file.package(), service.name(), m.name()));
                }
            }
        }
        rpcs.extend(["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"].map(String::from));
        rpcs.push("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into());
        assert_eq!(rpcs.len(), 24 + 3);
        for path in &rpcs {
            let declared = kassa_api::access::grpc_access(path).unwrap_or_else(|| panic!("{path} has an entry"));
            for (who, caller) in callers() {
                let got = decide(true, &Method::POST, path, caller.as_ref(), None, false).map_err(|(s, _)| s);
                assert_eq!(got, expected(declared, caller.as_ref()), "{path} with {who}");
            }
        }
    }

    #[test]
    fn refusals_say_why() {
        let path = "/api/baskets/u1";
        assert_eq!(decide(false, &Method::GET, path, None, None, false), Err((StatusCode::UNAUTHORIZED, "authentication required")));
        let expired = decide(false, &Method::GET, path, None, Some(AuthFailure::Invalid), false);
        assert_eq!(expired, Err((StatusCode::UNAUTHORIZED, "invalid or expired token")));
        let user = Principal { subject: "u1".into(), role: Role::User };
        assert_eq!(decide(false, &Method::GET, "/payments", Some(&user), None, false), Err((StatusCode::FORBIDDEN, "admin role required")));
    }
}
