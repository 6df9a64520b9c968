//! Per-client rate limiting with GCRA (generic cell rate algorithm): one timestamp per client (its
//! "theoretical arrival time"), so memory is 16 bytes a client, kept in sharded maps with a hard cap.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};

use crate::auth::Principal;
use crate::front::Shared;

use crate::config::{LimitClass, RateLimitConfig};

const SHARDS: usize = 64;

/// Nanoseconds on a monotonic clock shared by the whole process (0 = first use).
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The outcome of one check, with everything the response headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the client's allowance is full again.
    pub reset: Duration,
    /// Until the next request would be allowed (zero when allowed).
    pub retry_after: Duration,
}

pub struct RateLimiter {
    class: LimitClass,
    emission_ns: u64,
    tolerance_ns: u64,
    shards: Box<[Mutex<HashMap<u64, u64>>]>,
    shard_capacity: usize,
    hasher: RandomState,
    evictions: AtomicU64,
    /// `RateLimit-Policy` header value, e.g. `100;w=60;burst=100`.
    policy: HeaderValue,
    /// `RateLimit-Limit`, the same on every response of the class: built once.
    limit_header: HeaderValue,
}

impl RateLimiter {
    /// `max_clients` bounds memory: at most that many clients are remembered at once.
    pub fn new(class: LimitClass, max_clients: usize) -> RateLimiter {
        assert!(class.limit > 0 && class.burst > 0 && class.window_ms > 0, "validated by GatewayConfig");
        let emission_ns = (class.window_ms.saturating_mul(1_000_000) / u64::from(class.limit)).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        RateLimiter {
            class,
            emission_ns,
            tolerance_ns: emission_ns.saturating_mul(u64::from(class.burst)),
            shards,
            shard_capacity: (max_clients / SHARDS).max(1),
            hasher: RandomState::new(),
            evictions: AtomicU64::new(0),
            policy: static_text(format!("{};w={};burst={}", class.limit, class.window_ms.div_ceil(1000), class.burst)),
            limit_header: static_text(class.limit.to_string()),
        }
    }

    pub fn class(&self) -> LimitClass {
        self.class
    }

    pub fn check<C: std::hash::Hash + ?Sized>(&self, client: &C) -> Decision {
        self.check_at(client, now_ns())
    }

    /// GCRA: a request at `now` is allowed when the client's TAT, advanced by one emission interval, is
    /// at most `burst` intervals ahead of `now`.
    pub fn check_at<C: std::hash::Hash + ?Sized>(&self, client: &C, now: u64) -> Decision {
        let key = self.hasher.hash_one(client);
        let shard = &self.shards[(key as usize) % SHARDS];
        let mut map = shard.lock();
        let tat = map.get(&key).map_or(now, |&t| t.max(now));
        let new_tat = tat.saturating_add(self.emission_ns);
        let ahead = new_tat - now;
        if ahead > self.tolerance_ns {
            return Decision {
                allowed: false,
                limit: self.class.limit,
                remaining: 0,
                reset: Duration::from_nanos(tat - now),
                retry_after: Duration::from_nanos(ahead - self.tolerance_ns),
            };
        }
        if !map.contains_key(&key) && map.len() >= self.shard_capacity {
            self.make_room(&mut map, now);
        }
        map.insert(key, new_tat);
        debug_assert!(map.len() <= self.shard_capacity);
        let remaining = ((self.tolerance_ns - ahead) / self.emission_ns).min(u64::from(self.class.limit)) as u32;
        Decision { allowed: true, limit: self.class.limit, remaining, reset: Duration::from_nanos(ahead), retry_after: Duration::ZERO }
    }

    /// Entries whose TAT has passed behave exactly like absent ones, so dropping them loses nothing. If
    /// every entry is still active, the one closest to expiry goes (that client gets a fresh allowance:
    /// the price of a hard memory bound).
    fn make_room(&self, map: &mut HashMap<u64, u64>, now: u64) {
        map.retain(|_, tat| *tat > now);
        if map.len() >= self.shard_capacity
            && let Some((&victim, _)) = map.iter().min_by_key(|(_, tat)| **tat)
        {
            map.remove(&victim);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Clients currently remembered.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.shard_capacity * SHARDS
    }

    /// Active clients dropped to respect the bound.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

/// The limit class of a path: the old gateway's prefixes, checked safely (the old code panicked on short paths).
pub fn class_of(path: &str) -> &'static str {
    if path == "/admin" || path.starts_with("/admin/") {
        "admin"
    } else if path == "/health" || path.starts_with("/health/") {
        "health"
    } else if path.starts_with("/api/")
        || path == "/api"
        || ["/products", "/baskets", "/payments", "/payment-methods"].iter().any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        "api"
    } else {
        "default"
    }
}

/// The four limiters of the configured classes.
pub struct Limiters {
    pub api: RateLimiter,
    pub admin: RateLimiter,
    pub health: RateLimiter,
    pub default: RateLimiter,
}

impl Limiters {
    pub fn new(cfg: &crate::config::RateLimitConfig) -> Limiters {
        Limiters {
            api: RateLimiter::new(cfg.api, cfg.max_clients),
            admin: RateLimiter::new(cfg.admin, cfg.max_clients),
            health: RateLimiter::new(cfg.health, cfg.max_clients),
            default: RateLimiter::new(cfg.default, cfg.max_clients),
        }
    }

    pub fn for_class(&self, class: &str) -> &RateLimiter {
        match class {
            "api" => &self.api,
            "admin" => &self.admin,
            "health" => &self.health,
            _ => &self.default,
        }
    }

    pub fn iter(&self) -> [(&'static str, &RateLimiter); 4] {
        [("api", &self.api), ("admin", &self.admin), ("health", &self.health), ("default", &self.default)]
    }
}

/// Who a request counts against: the verified user, else a hash of its API key, else its peer address.
/// Never a client-chosen header such as `X-User-ID`.
/// `X-Forwarded-For` is believed only from `trusted_proxies` (e.g. a Kassa gateway in front of this
/// node), and then only up to the first address that is not itself a trusted proxy.
/// Who a request counts against: hashed as it is (formatting it into a string per request was a
/// tenth of the gateway's cost on a point read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Client<'a> {
    User(&'a str),
    ApiKey(&'a [u8]),
    Ip(IpAddr),
    Unknown,
}

impl std::fmt::Display for Client<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::User(subject) => write!(f, "u:{subject}"),
            Client::ApiKey(key) => write!(f, "k:{}", String::from_utf8_lossy(key)),
            Client::Ip(ip) => write!(f, "ip:{ip}"),
            Client::Unknown => f.write_str("ip:unknown"),
        }
    }
}

pub fn client_of<'a>(req: &'a Request, cfg: &RateLimitConfig) -> Client<'a> {
    if let Some(p) = req.extensions().get::<Principal>() {
        return Client::User(&p.subject);
    }
    if let Some(key) = req.headers().get(cfg.api_key_header.as_str()).filter(|v| !v.is_empty()) {
        // The limiter stores only a keyed 64-bit hash of this, never the key itself.
        return Client::ApiKey(key.as_bytes());
    }
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return Client::Unknown;
    };
    let mut ip = peer.ip();
    if cfg.trusted_proxies.contains(&ip) {
        let forwarded = req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        let hops: Vec<IpAddr> = forwarded.flat_map(|v| v.split(',')).filter_map(|a| a.trim().parse().ok()).collect();
        // Walk from the nearest hop back; the first untrusted address is the client.
        for hop in hops.iter().rev().take(FORWARDED_HOPS_MAX) {
            ip = *hop;
            if !cfg.trusted_proxies.contains(hop) {
                break;
            }
        }
    }
    Client::Ip(ip)
}

/// Hops of `X-Forwarded-For` looked at, at most.
const FORWARDED_HOPS_MAX: usize = 16;

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

fn set(headers: &mut HeaderMap, name: HeaderName, value: u64) {
    headers.insert(name, number(value));
}

/// Text made once into a header value whose clones copy a pointer (a shared value's clone bumps a
/// reference count that every core's responses would touch). Digits, letters, `;` and `=`: always valid.
fn static_text(text: String) -> HeaderValue {
    HeaderValue::from_static(Box::leak(text.into_boxed_str()))
}

/// Counts and seconds below this are header values made once (`HeaderValue::from(u64)` allocates).
const SMALL_NUMBERS: u64 = 4096;

/// `value` as a header value: small ones from a table made once, the unix-time reset from a per-thread
/// copy of the last one (it changes once a second), the rest formatted.
fn number(value: u64) -> HeaderValue {
    static SMALL: OnceLock<Box<[HeaderValue]>> = OnceLock::new();
    thread_local! {
        static LAST: std::cell::RefCell<(u64, HeaderValue)> = const { std::cell::RefCell::new((0, HeaderValue::from_static("0"))) };
    }
    if value < SMALL_NUMBERS {
        let table = SMALL.get_or_init(|| (0..SMALL_NUMBERS).map(|n| static_text(n.to_string())).collect());
        return table[value as usize].clone();
    }
    LAST.with_borrow_mut(|(last, header)| {
        if *last != value {
            *last = value;
            *header = HeaderValue::from(value);
        }
        header.clone()
    })
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

/// One request's check against its class.
pub struct Checked<'a> {
    pub class: &'static str,
    pub limiter: &'a RateLimiter,
    pub decision: Decision,
}

/// Checks a request against the limit of its class.
pub fn check<'a>(shared: &'a Shared, req: &Request) -> Checked<'a> {
    let class = class_of(req.uri().path());
    let limiter = shared.limiters.for_class(class);
    let decision = limiter.check(&client_of(req, &shared.cfg.rate_limit));
    Checked { class, limiter, decision }
}

impl Checked<'_> {
    /// The 429 for a refused request, with `Retry-After` (whole seconds, at least 1).
    pub fn rejection(&self, grpc: bool) -> Response {
        let mut r = if grpc {
            crate::respond::grpc_error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
        } else {
            let wait = ceil_secs(self.decision.retry_after).max(1);
            let message = format!("rate limit exceeded; retry after {wait} s");
            let body = serde_json::json!({"error": "Rate limit exceeded", "message": message, "retry_after": self.decision.retry_after.as_secs_f64()});
            (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
        };
        set(r.headers_mut(), http::header::RETRY_AFTER, ceil_secs(self.decision.retry_after).max(1));
        r
    }

    /// `RateLimit-*` (IETF draft) and the old `X-RateLimit-*` headers, on every checked response.
    pub fn stamp(&self, response: &mut Response) {
        let d = &self.decision;
        let reset_secs = ceil_secs(d.reset.max(d.retry_after));
        let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.as_secs());
        let h = response.headers_mut();
        let remaining = number(u64::from(d.remaining));
        h.insert(RATELIMIT_LIMIT, self.limiter.limit_header.clone());
        h.insert(RATELIMIT_REMAINING, remaining.clone());
        set(h, RATELIMIT_RESET, reset_secs);
        h.insert(RATELIMIT_POLICY, self.limiter.policy.clone());
        h.insert(X_RATELIMIT_LIMIT, self.limiter.limit_header.clone());
        h.insert(X_RATELIMIT_REMAINING, remaining);
        set(h, X_RATELIMIT_RESET, unix_now + reset_secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn burst_then_one_per_interval() {
        let rl = RateLimiter::new(LimitClass { limit: 10, window_ms: 1000, burst: 3 }, 1000);
        let t0 = 5 * 1000 * MS;
        let d: Vec<Decision> = (0..4).map(|_| rl.check_at("a", t0)).collect();
        assert_eq!(d.iter().map(|d| d.allowed).collect::<Vec<_>>(), [true, true, true, false]);
        assert_eq!(d.iter().map(|d| d.remaining).collect::<Vec<_>>(), [2, 1, 0, 0]);
        assert_eq!(d[3].retry_after, Duration::from_millis(100));
        // Another client is unaffected.
        assert!(rl.check_at("b", t0).allowed);
        // After one interval exactly one more request fits.
        assert!(rl.check_at("a", t0 + 100 * MS).allowed);
        assert!(!rl.check_at("a", t0 + 100 * MS).allowed);
        // After a full window the allowance is whole again.
        let later = t0 + 2000 * MS;
        assert!((0..3).all(|_| rl.check_at("a", later).allowed));
    }

    #[test]
    fn denied_requests_do_not_extend_the_wait() {
        let rl = RateLimiter::new(LimitClass { limit: 1, window_ms: 1000, burst: 1 }, 10);
        assert!(rl.check_at("a", 0).allowed);
        for i in 0..100 {
            assert!(!rl.check_at("a", i * MS).allowed);
        }
        assert!(rl.check_at("a", 1000 * MS).allowed);
    }

    #[test]
    fn memory_is_bounded_for_many_clients() {
        let rl = RateLimiter::new(LimitClass { limit: 100, window_ms: 60_000, burst: 100 }, 6_400);
        for i in 0..200_000u64 {
            rl.check_at(&format!("ip:{i}"), i);
        }
        assert!(rl.len() <= rl.capacity(), "{} > {}", rl.len(), rl.capacity());
        assert!(rl.capacity() <= 6_400);
        assert!(rl.evictions() > 0, "active clients had to be evicted");
        // Once everyone's TAT is in the past, new clients evict expired entries, not active ones.
        let before = rl.evictions();
        let later = 10 * 60_000 * MS;
        for i in 0..200_000u64 {
            rl.check_at(&format!("later:{i}"), later + i);
        }
        assert!(rl.len() <= rl.capacity());
        // Entries inserted in this second pass are all active, so evictions happen again, but every old
        // (expired) entry was removed without counting as an eviction.
        assert!(rl.evictions() - before < 200_000);
    }

    #[test]
    fn client_identity_trusts_forwarding_only_from_trusted_proxies() {
        let req = |peer: &str, xff: Option<&str>| {
            let mut r = Request::new(axum::body::Body::empty());
            r.extensions_mut().insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 1234)));
            if let Some(x) = xff {
                r.headers_mut().insert("x-forwarded-for", HeaderValue::from_str(x).unwrap());
            }
            r
        };
        let mut cfg = RateLimitConfig::default();
        assert_eq!(
            client_of(&req("10.0.0.9", Some("1.2.3.4")), &cfg).to_string(),
            "ip:10.0.0.9",
            "untrusted peers cannot choose an identity"
        );
        cfg.trusted_proxies = vec!["10.0.0.9".parse().unwrap(), "10.0.0.8".parse().unwrap()];
        assert_eq!(client_of(&req("10.0.0.9", Some("1.2.3.4")), &cfg).to_string(), "ip:1.2.3.4");
        assert_eq!(
            client_of(&req("10.0.0.9", Some("6.6.6.6, 1.2.3.4, 10.0.0.8")), &cfg).to_string(),
            "ip:1.2.3.4",
            "spoofed left hops ignored"
        );
        assert_eq!(client_of(&req("10.0.0.9", None), &cfg).to_string(), "ip:10.0.0.9");
        let mut with_user = req("10.0.0.9", None);
        with_user.extensions_mut().insert(Principal { subject: "ann".into(), role: crate::auth::Role::User });
        assert_eq!(client_of(&with_user, &cfg).to_string(), "u:ann");
        let mut with_key = req("10.0.0.9", None);
        with_key.headers_mut().insert("x-api-key", HeaderValue::from_static("k1"));
        assert_eq!(client_of(&with_key, &cfg).to_string(), "k:k1");
    }

    #[test]
    fn classes_by_prefix_without_panics() {
        for (path, class) in [
            ("/", "default"),
            ("", "default"),
            ("/a", "default"),
            ("/admin", "admin"),
            ("/admin/status", "admin"),
            ("/administrator", "default"),
            ("/api", "api"),
            ("/api/products/1", "api"),
            ("/apiary", "default"),
            ("/health/ready", "health"),
            ("/products/7", "api"),
            ("/metrics", "default"),
        ] {
            assert_eq!(class_of(path), class, "{path}");
        }
    }
}
