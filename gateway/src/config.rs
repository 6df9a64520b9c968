//! The `[gateway]` section of Kassa's configuration: every knob of the front door, with defaults that are
//! safe to run with (authentication on, rate limits on, CORS without credentials).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::GatewayError;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// `false` turns every layer off (the routers are served bare); only for measuring the gateway's cost.
    pub layers_enabled: bool,
    /// Where `users.redb` and a generated `jwt.secret` live. Embedded mode defaults to the engine's data dir.
    pub data_dir: Option<PathBuf>,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub cors: CorsConfig,
    pub tls: Option<TlsConfig>,
    /// Standalone mode only: the Kassa nodes to proxy to.
    pub upstreams: Vec<UpstreamConfig>,
    pub strategy: Strategy,
    pub breaker: BreakerConfig,
    pub health_check: HealthCheckConfig,
    pub retry: RetryConfig,
    pub timeouts: TimeoutConfig,
    /// Largest request body accepted, in bytes (413 above it).
    pub body_limit_bytes: usize,
    /// `/metrics` without a token (Prometheus scrapers rarely carry one); `false` makes it admin-only.
    pub metrics_public: bool,
    pub access_log: AccessLogConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            layers_enabled: true,
            data_dir: None,
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            cors: CorsConfig::default(),
            tls: None,
            upstreams: Vec::new(),
            strategy: Strategy::RoundRobin,
            breaker: BreakerConfig::default(),
            health_check: HealthCheckConfig::default(),
            retry: RetryConfig::default(),
            timeouts: TimeoutConfig::default(),
            body_limit_bytes: 4 << 20,
            metrics_public: true,
            access_log: AccessLogConfig::default(),
        }
    }
}

impl GatewayConfig {
    /// Overlays the secrets that should not sit in a config file: `KASSA_JWT_SECRET`, `KASSA_ADMIN_USER`,
    /// `KASSA_ADMIN_PASSWORD`. Empty variables count as unset.
    pub fn apply_env(&mut self) {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(secret) = var("KASSA_JWT_SECRET") {
            self.auth.jwt_secret = Some(secret);
        }
        if let Some(user) = var("KASSA_ADMIN_USER") {
            self.auth.admin_user = user;
        }
        if let Some(password) = var("KASSA_ADMIN_PASSWORD") {
            self.auth.admin_password = Some(password);
        }
    }

    /// Rejects combinations that would be insecure or cannot work.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let bad = |msg: String| Err(GatewayError::Config(msg));
        if self.cors.allow_credentials && self.cors.allowed_origins.iter().any(|o| o == "*") {
            return bad("cors: allowed_origins \"*\" cannot be combined with allow_credentials".into());
        }
        if let Some(secret) = &self.auth.jwt_secret
            && secret.len() < 16
        {
            return bad("auth.jwt_secret must be at least 16 bytes".into());
        }
        for (name, class) in self.rate_limit.classes() {
            if class.limit == 0 || class.window_ms == 0 || class.burst == 0 {
                return bad(format!("rate_limit.{name}: limit, window_ms and burst must be positive"));
            }
        }
        if self.rate_limit.max_clients == 0 {
            return bad("rate_limit.max_clients must be positive".into());
        }
        if self.body_limit_bytes == 0 || self.timeouts.request_ms == 0 {
            return bad("body_limit_bytes and timeouts.request_ms must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.breaker.failure_ratio) || self.breaker.max_requests == 0 {
            return bad("breaker: failure_ratio must be within 0..=1 and max_requests positive".into());
        }
        if self.upstreams.iter().filter(|u| u.primary).count() > 1 {
            return bad("at most one upstream can be marked primary".into());
        }
        for u in &self.upstreams {
            if u.weight == 0 {
                return bad(format!("upstream {}: weight must be positive", u.http));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Secure by default: every non-public route needs a valid token.
    pub enabled: bool,
    /// HS256 secret (≥ 16 bytes). When neither this, `jwt_secret_file` nor an Ed25519 key pair is set, a
    /// random secret is generated once into `<data_dir>/jwt.secret`. Never printed by `kassa config`.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<String>,
    pub jwt_secret_file: Option<PathBuf>,
    /// EdDSA instead of HS256: PKCS#8 private key PEM (to sign) and SPKI public key PEM (to verify).
    pub ed25519_private_key_file: Option<PathBuf>,
    pub ed25519_public_key_file: Option<PathBuf>,
    pub token_ttl_secs: u64,
    pub issuer: String,
    /// The first admin, created at start-up if no user of that name exists (only when a password is given).
    pub admin_user: String,
    #[serde(skip_serializing)]
    pub admin_password: Option<String>,
    pub password_min_len: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            jwt_secret: None,
            jwt_secret_file: None,
            ed25519_private_key_file: None,
            ed25519_public_key_file: None,
            token_ttl_secs: 24 * 3600,
            issuer: "kassa".into(),
            admin_user: "admin".into(),
            admin_password: None,
            password_min_len: 8,
        }
    }
}

/// One GCRA limit: `limit` requests per `window_ms`, of which up to `burst` may arrive at once.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitClass {
    pub limit: u32,
    pub window_ms: u64,
    pub burst: u32,
}

impl LimitClass {
    pub const fn per_minute(limit: u32) -> LimitClass {
        LimitClass { limit, window_ms: 60_000, burst: limit }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Paths under `/api` (and the services' own paths).
    pub api: LimitClass,
    pub admin: LimitClass,
    pub health: LimitClass,
    /// Everything else (`/auth/...`, `/metrics`, gRPC).
    pub default: LimitClass,
    /// Bound on remembered clients per class; beyond it idle entries, then the closest to expiry, go.
    pub max_clients: usize,
    /// A client presenting this header is limited by (a hash of) its value when it carries no valid token.
    pub api_key_header: String,
    /// Peers whose `X-Forwarded-For` is believed (e.g. the Kassa gateway in front of this node, so that
    /// its clients are limited one by one rather than all as the gateway's address).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            api: LimitClass::per_minute(100),
            admin: LimitClass::per_minute(50),
            health: LimitClass::per_minute(200),
            default: LimitClass::per_minute(100),
            max_clients: 1_000_000,
            api_key_header: "x-api-key".into(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl RateLimitConfig {
    pub fn classes(&self) -> [(&'static str, LimitClass); 4] {
        [("api", self.api), ("admin", self.admin), ("health", self.health), ("default", self.default)]
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://shop.example`) or `*`. Empty = no CORS headers at all.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        CorsConfig {
            allowed_origins: strings(&["*"]),
            allowed_methods: strings(&["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
            allowed_headers: strings(&[
                "origin",
                "content-type",
                "accept",
                "authorization",
                "x-request-id",
                "idempotency-key",
                "traceparent",
                "tracestate",
                "x-api-key",
            ]),
            exposed_headers: strings(&[
                "x-request-id",
                "traceparent",
                "retry-after",
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ]),
            allow_credentials: false,
            max_age_secs: 600,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl GatewayConfig {
    /// The listeners' TLS configuration, loaded from the configured PEM files (`None` = plain TCP).
    pub fn load_tls(&self) -> Result<Option<crate::listen::Tls>, crate::listen::ListenError> {
        self.tls.as_ref().map(|t| crate::listen::load_tls(&t.cert_file, &t.key_file)).transpose()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the node's HTTP listener, e.g. `http://10.0.0.5:8080`.
    pub http: String,
    /// Base URL of the node's gRPC listener (h2c); gRPC requests fail over to HTTP's address when unset.
    #[serde(default)]
    pub grpc: Option<String>,
    #[serde(default = "one")]
    pub weight: u32,
    /// Receives every write. Without a marked primary the first upstream is the primary.
    #[serde(default)]
    pub primary: bool,
}

fn one() -> u32 {
    1
}

impl UpstreamConfig {
    /// Parses the command-line form `HTTP_URL[,grpc=URL][,weight=N][,primary]`.
    pub fn parse(text: &str) -> Result<UpstreamConfig, GatewayError> {
        let mut parts = text.split(',').map(str::trim);
        let http = parts.next().filter(|s| !s.is_empty()).ok_or_else(|| GatewayError::Config("empty upstream".into()))?;
        let mut up = UpstreamConfig { http: http.to_string(), grpc: None, weight: 1, primary: false };
        for part in parts {
            match part.split_once('=') {
                Some(("grpc", url)) => up.grpc = Some(url.to_string()),
                Some(("weight", w)) => {
                    up.weight = w.parse().map_err(|_| GatewayError::Config(format!("upstream {text}: bad weight {w}")))?
                }
                None if part == "primary" => up.primary = true,
                _ => {
                    return Err(GatewayError::Config(format!("upstream {text}: unknown option {part}")));
                }
            }
        }
        Ok(up)
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    RoundRobin,
    LeastConnections,
    WeightedRoundRobin,
}

impl std::str::FromStr for Strategy {
    type Err = GatewayError;

    fn from_str(text: &str) -> Result<Strategy, GatewayError> {
        match text {
            "round_robin" => Ok(Strategy::RoundRobin),
            "least_connections" => Ok(Strategy::LeastConnections),
            "weighted_round_robin" => Ok(Strategy::WeightedRoundRobin),
            _ => Err(GatewayError::Config(format!("unknown strategy {text}: round_robin, least_connections or weighted_round_robin"))),
        }
    }
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastConnections => "least_connections",
            Strategy::WeightedRoundRobin => "weighted_round_robin",
        }
    }
}

/// Per-upstream circuit breaker; defaults are the old gateway's (sony/gobreaker) plus a consecutive-failure trip.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    pub enabled: bool,
    /// Requests admitted while half-open, and consecutive successes that close it.
    pub max_requests: u32,
    /// Closed-state counting window.
    pub interval_ms: u64,
    /// Time spent open before probing (half-open). Doubles on each re-trip from half-open, up to 8×.
    pub timeout_ms: u64,
    pub failure_ratio: f64,
    pub min_requests: u32,
    pub consecutive_failures: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            max_requests: 10,
            interval_ms: 60_000,
            timeout_ms: 30_000,
            failure_ratio: 0.6,
            min_requests: 3,
            consecutive_failures: 5,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    pub enabled: bool,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub path: String,
    /// Consecutive failed probes that mark an upstream unhealthy.
    pub unhealthy_threshold: u32,
    /// Consecutive good probes that mark it healthy again.
    pub healthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            enabled: true,
            interval_ms: 5_000,
            timeout_ms: 2_000,
            path: "/health/ready".into(),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Total tries of an idempotent request (1 = no retries).
    pub attempts: u32,
    /// Retries may add at most this fraction of the requests of the current second...
    pub budget_ratio: f64,
    /// ...but at least this many per second.
    pub budget_min_per_sec: u32,
    pub backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { attempts: 3, budget_ratio: 0.2, budget_min_per_sec: 10, backoff_ms: 20 }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// Whole-request deadline (504 when exceeded).
    pub request_ms: u64,
    /// Per path prefix overrides, longest prefix wins: `{ "/api/payments" = 60000 }`.
    pub routes: BTreeMap<String, u64>,
    pub upstream_connect_ms: u64,
}

/// `verify` reads every mirror back in full: it takes as long as the data is large, far past 30 s on a
/// big catalog, and an operator waiting for its answer wants the answer.
const VERIFY_PATH: &str = "/admin/adapters/verify";
const VERIFY_MS: u64 = 900_000;
/// A backup is taken in full before its first byte is sent.
const BACKUP_MS: u64 = 3_600_000;

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            request_ms: 30_000,
            routes: BTreeMap::from([(VERIFY_PATH.to_owned(), VERIFY_MS), (crate::backup::BACKUP_PATH.to_owned(), BACKUP_MS)]),
            upstream_connect_ms: 2_000,
        }
    }
}

impl TimeoutConfig {
    pub fn for_path(&self, path: &str) -> std::time::Duration {
        let ms = self
            .routes
            .iter()
            .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.request_ms, |(_, ms)| *ms);
        std::time::Duration::from_millis(ms)
    }
}

/// Which requests get an access-log line. Every request is counted and timed in `/metrics` regardless;
/// the log is for looking at particular requests, and formatting a line for every one of them cost a
/// seventh of a point read's CPU (BENCHMARKS.md).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogConfig {
    /// One line for every `sample_every`-th ordinary request (1 = every request, 0 = none of them).
    pub sample_every: u64,
    /// Requests answered with a status of 400 or above, and requests slower than this, always get a line.
    pub slow_ms: u64,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig { sample_every: 100, slow_ms: 500 }
    }
}
