//! The one typed configuration of the `kassa` binary: defaults, then the TOML file (`--config`), then the
//! environment (`PORT`, `GRPC_PORT`, `LOG_LEVEL`, `LOG_FORMAT`), then command-line flags. Loaded once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kassa_adapters::AdaptersConfig;
use kassa_api::ApiConfig;
use kassa_delivery::NotificationsConfig;
use kassa_engine::{Currency, Durability, EngineConfig, IoMode, StoreChoice};
use kassa_gateway::GatewayConfig;
use kassa_providers::PaymentsConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// gRPC listen address.
    pub grpc: SocketAddr,
    /// Whether requests must authenticate (the gateway's auth layer reads this).
    pub auth: AuthMode,
    /// Insert the old system's 10 products (ids 1..10) when the catalog is empty at start.
    pub seed_catalog: bool,
    /// Listener threads per protocol; 0 = one per available core.
    pub listener_threads: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
    pub log: LogConfig,
    pub engine: EngineSettings,
    pub api: ApiConfig,
    /// The built-in gateway (rate limits, users and JWT, CORS, upstreams for `kassa gateway`).
    pub gateway: GatewayConfig,
    /// Mirrors into the old estate's databases, cache and broker; each off unless configured.
    pub adapters: AdaptersConfig,
    /// Payment providers Kassa charges through, and how it calls them.
    pub payments: PaymentsConfig,
    /// Notification channels Kassa delivers (webhook, SMTP, SMS and push endpoints); none unless configured.
    pub notifications: NotificationsConfig,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `kassa=debug,info`, ...
    pub level: String,
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Answer writes once they are on disk.
    Sync,
    /// Answer once applied in memory; the journal syncs continuously behind.
    Async,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreMode {
    Auto,
    Fjall,
    Redb,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum JournalIo {
    Auto,
    Uring,
    Portable,
    Inline,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// 0 = automatic: one per two cores for a new data directory, an existing one keeps its count.
    pub shards: usize,
    pub durability: DurabilityMode,
    pub store: StoreMode,
    pub journal_io: JournalIo,
    pub cache_bytes: u64,
    pub checkpoint_interval_ms: u64,
    pub pin_threads: bool,
    /// ISO 4217 code of the shop currency.
    pub currency: String,
    pub restock_on_refund: bool,
    pub low_stock_threshold: i64,
    /// Commands each shard's mailbox holds; a write that finds it full answers 503 `overloaded` with
    /// `Retry-After` (gRPC UNAVAILABLE) instead of waiting.
    pub mailbox_capacity: usize,
    /// A cross-shard checkout step unanswered for this long is sent again (its message may have been
    /// dropped on a full mailbox, or its shard restarted).
    pub redrive_after_ms: u64,
    /// Most journal a named feed cursor (an adapter's) may keep for itself before it is dropped and its
    /// consumer re-copies from a snapshot.
    pub feed_retention_bytes: u64,
    /// A feed cursor that keeps journal and has not advanced for this long is dropped too.
    pub feed_retention_age_s: u64,
    /// Journal segment size: the unit in which old journal is deleted.
    pub journal_segment_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            http: SocketAddr::from(([0, 0, 0, 0], 8080)),
            grpc: SocketAddr::from(([0, 0, 0, 0], 50051)),
            auth: AuthMode::On,
            seed_catalog: true,
            listener_threads: 0,
            shutdown_grace_ms: 10_000,
            log: LogConfig::default(),
            engine: EngineSettings::default(),
            api: ApiConfig::default(),
            gateway: GatewayConfig::default(),
            adapters: AdaptersConfig::default(),
            payments: PaymentsConfig::default(),
            notifications: NotificationsConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Json }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        let e = EngineConfig::new("data");
        EngineSettings {
            shards: 0,
            durability: DurabilityMode::Sync,
            store: StoreMode::Auto,
            journal_io: JournalIo::Inline,
            cache_bytes: e.cache_bytes,
            checkpoint_interval_ms: e.checkpoint_interval.as_millis() as u64,
            pin_threads: e.pin_threads,
            currency: e.currency.code().to_string(),
            restock_on_refund: e.restock_on_refund,
            low_stock_threshold: e.low_stock_threshold,
            mailbox_capacity: e.mailbox_capacity,
            redrive_after_ms: e.redrive_after.as_millis() as u64,
            feed_retention_bytes: e.feed_retention_bytes,
            feed_retention_age_s: e.feed_retention_age.as_secs(),
            journal_segment_bytes: e.segment_bytes_max,
        }
    }
}

#[derive(Debug)]
pub enum ConfigError {
    Read { path: PathBuf, source: std::io::Error },
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    Env { name: &'static str, value: String, reason: String },
    Invalid(String),
}

// Written by hand: the binary's dependencies are fixed by the workspace manifest (no thiserror here).
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ConfigError::Parse { path, source } => {
                write!(f, "invalid config file {}: {source}", path.display())
            }
            ConfigError::Env { name, value, reason } => write!(f, "invalid environment variable {name}={value}: {reason}"),
            ConfigError::Invalid(text) => write!(f, "invalid setting: {text}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Parse { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Command-line overrides (all optional).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// gRPC listen address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub grpc: Option<SocketAddr>,
    /// Engine shards (fixed when the data directory is created).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityMode>,
    #[arg(long, value_enum)]
    pub store: Option<StoreMode>,
    /// How the journal writes and syncs (`[engine] journal_io`).
    #[arg(long, value_enum)]
    pub journal_io: Option<JournalIo>,
    /// Require authentication.
    #[arg(long, value_enum)]
    pub auth: Option<AuthMode>,
    /// Seed the old system's 10 products into an empty catalog.
    #[arg(long, value_name = "BOOL")]
    pub seed_catalog: Option<bool>,
    /// Log filter (overrides LOG_LEVEL).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

fn env_port(name: &'static str, get: &dyn Fn(&str) -> Option<String>) -> Result<Option<u16>, ConfigError> {
    match get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v.parse::<u16>().map(Some).map_err(|e| ConfigError::Env { name, value: v, reason: e.to_string() }),
    }
}

impl Config {
    /// Defaults ← file ← environment ← flags.
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        Config::load_with(o, &|name| std::env::var(name).ok())
    }

    pub fn load_with(o: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = match &o.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(port) = env_port("PORT", env)? {
            c.http.set_port(port);
        }
        if let Some(port) = env_port("GRPC_PORT", env)? {
            c.grpc.set_port(port);
        }
        if let Some(level) = env("LOG_LEVEL").filter(|v| !v.is_empty()) {
            c.log.level = level;
        }
        if let Some(format) = env("LOG_FORMAT").filter(|v| !v.is_empty()) {
            c.log.format = match format.to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                _ => {
                    return Err(ConfigError::Env { name: "LOG_FORMAT", value: format, reason: "expected json or text".into() });
                }
            };
        }
        c.adapters.apply_env(env);
        if let Some(v) = &o.data_dir {
            c.data_dir.clone_from(v);
        }
        if let Some(v) = o.http {
            c.http = v;
        }
        if let Some(v) = o.grpc {
            c.grpc = v;
        }
        if let Some(v) = o.shards {
            c.engine.shards = v;
        }
        if let Some(v) = o.durability {
            c.engine.durability = v;
        }
        if let Some(v) = o.store {
            c.engine.store = v;
        }
        if let Some(v) = o.journal_io {
            c.engine.journal_io = v;
        }
        if let Some(v) = o.auth {
            c.auth = v;
        }
        if let Some(v) = o.seed_catalog {
            c.seed_catalog = v;
        }
        if let Some(v) = &o.log_level {
            c.log.level.clone_from(v);
        }
        if let Some(v) = o.log_format {
            c.log.format = v;
        }
        c.validate()?;
        Ok(c)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source: Box::new(source) })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.engine.shards > 1024 {
            return Err(ConfigError::Invalid(format!("engine.shards must be at most 1024, got {}", self.engine.shards)));
        }
        if self.engine.mailbox_capacity == 0 {
            return Err(ConfigError::Invalid("engine.mailbox_capacity must be positive".into()));
        }
        if Currency::from_code(&self.engine.currency).is_none() {
            return Err(ConfigError::Invalid(format!("engine.currency {} is not a supported ISO 4217 code", self.engine.currency)));
        }
        self.gateway.validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if !(0.0..=1.0).contains(&self.payments.simulated.decline_rate) {
            return Err(ConfigError::Invalid("payments.simulated.decline_rate must be between 0 and 1".into()));
        }
        let mut notifications = self.notifications.clone();
        notifications.apply_env();
        notifications.validate().map_err(ConfigError::Invalid)?;
        if self.api.body_limit_bytes == 0 || self.api.page_limit_default == 0 || self.api.page_limit_max == 0 {
            return Err(ConfigError::Invalid("api limits must be positive".into()));
        }
        Ok(())
    }

    pub fn engine_config(&self) -> EngineConfig {
        let e = &self.engine;
        let mut cfg = EngineConfig::new(&self.data_dir);
        cfg.shards = e.shards;
        cfg.durability = match e.durability {
            DurabilityMode::Sync => Durability::Sync,
            DurabilityMode::Async => Durability::Async,
        };
        cfg.store = match e.store {
            StoreMode::Auto => StoreChoice::Auto,
            StoreMode::Fjall => StoreChoice::Fjall,
            StoreMode::Redb => StoreChoice::Redb,
        };
        cfg.journal_io = match e.journal_io {
            JournalIo::Auto => IoMode::Auto,
            JournalIo::Uring => IoMode::Uring,
            JournalIo::Portable => IoMode::Portable,
            JournalIo::Inline => IoMode::Inline,
        };
        cfg.cache_bytes = e.cache_bytes;
        cfg.checkpoint_interval = Duration::from_millis(e.checkpoint_interval_ms.max(1));
        cfg.pin_threads = e.pin_threads;
        cfg.currency = Currency::from_code(&e.currency).unwrap_or(Currency::USD);
        cfg.restock_on_refund = e.restock_on_refund;
        cfg.low_stock_threshold = e.low_stock_threshold;
        cfg.mailbox_capacity = e.mailbox_capacity;
        cfg.redrive_after = Duration::from_millis(e.redrive_after_ms.max(1));
        cfg.feed_retention_bytes = e.feed_retention_bytes;
        cfg.feed_retention_age = Duration::from_secs(e.feed_retention_age_s);
        cfg.segment_bytes_max = e.journal_segment_bytes;
        cfg.charged_providers = self.payments.provider_names();
        cfg.delivered_channels = self.notifications.policies();
        // An attempt is made again only once the slowest channel's attempt would have timed out twice over.
        cfg.delivery_redrive_after = Duration::from_secs(60).max(2 * self.notifications.longest_attempt());
        cfg
    }

    /// The gateway's settings as the binary runs them: `--auth off` (or `auth = "off"`) turns
    /// authentication off whatever `[gateway.auth]` says; users and the generated JWT secret live in the
    /// data directory unless `[gateway] data_dir` says otherwise; secrets may come from the environment
    /// (`KASSA_JWT_SECRET`, `KASSA_ADMIN_USER`, `KASSA_ADMIN_PASSWORD`).
    pub fn gateway_config(&self) -> GatewayConfig {
        let mut g = self.gateway.clone();
        g.apply_env();
        if self.auth == AuthMode::Off {
            g.auth.enabled = false;
        }
        if g.data_dir.is_none() {
            g.data_dir = Some(self.data_dir.clone());
        }
        g
    }

    pub fn listener_threads(&self) -> usize {
        if self.listener_threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { self.listener_threads }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_env_flags_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kassa.toml");
        std::fs::write(
            &file,
            "data_dir = \"/tmp/k\"\nhttp = \"127.0.0.1:9000\"\nseed_catalog = false\n[engine]\nshards = 4\ndurability = \"async\"\nstore = \"redb\"\nmailbox_capacity = 8\nredrive_after_ms = 50\n[api]\nbody_limit_bytes = 1024\n",
        )
        .unwrap();
        let env = |name: &str| match name {
            "PORT" => Some("9100".to_string()),
            "LOG_FORMAT" => Some("text".to_string()),
            _ => None,
        };
        let o = Overrides { config: Some(file), shards: Some(2), auth: Some(AuthMode::Off), ..Default::default() };
        let c = Config::load_with(&o, &env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/k"));
        assert_eq!(c.http, "127.0.0.1:9100".parse::<SocketAddr>().unwrap());
        assert_eq!(c.grpc, "0.0.0.0:50051".parse::<SocketAddr>().unwrap());
        assert_eq!(c.engine.shards, 2);
        assert_eq!(c.engine.durability, DurabilityMode::Async);
        assert_eq!(c.engine.store, StoreMode::Redb);
        assert_eq!(c.auth, AuthMode::Off);
        assert!(!c.seed_catalog);
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.api.body_limit_bytes, 1024);
        assert_eq!(c.api.page_limit_max, 1000);
        let e = c.engine_config();
        assert_eq!(e.shards, 2);
        assert_eq!(e.durability, Durability::Async);
        assert_eq!((e.mailbox_capacity, e.redrive_after), (8, Duration::from_millis(50)));
        let defaults = Config::load_with(&Overrides::default(), &|_| None).unwrap().engine_config();
        let engine = EngineConfig::new("data");
        assert_eq!(
            (defaults.mailbox_capacity, defaults.redrive_after),
            (engine.mailbox_capacity, engine.redrive_after),
            "the engine's defaults"
        );
    }

    #[test]
    fn mirror_addresses_come_from_the_environment_only_where_the_file_gives_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kassa.toml");
        std::fs::write(&file, "[adapters.postgres]\n[adapters.redis]\nurl = \"redis://file:6379/0\"\n").unwrap();
        let env = |name: &str| match name {
            "KASSA_ADAPTERS_POSTGRES_URL" => Some("postgres://env/product_service".to_string()),
            "KASSA_ADAPTERS_POSTGRES_NOTIFICATIONS_URL" => Some("postgres://env/notification_service".to_string()),
            "KASSA_ADAPTERS_REDIS_URL" | "KASSA_ADAPTERS_MARIADB_URL" => Some("ignored://".to_string()),
            _ => None,
        };
        let c = Config::load_with(&Overrides { config: Some(file), ..Default::default() }, &env).unwrap();
        let pg = c.adapters.postgres.unwrap();
        assert_eq!(pg.url, "postgres://env/product_service");
        assert_eq!(pg.notifications_url.as_deref(), Some("postgres://env/notification_service"));
        assert_eq!(c.adapters.redis.unwrap().url, "redis://file:6379/0", "the file's address wins");
        assert!(c.adapters.mariadb.is_none(), "the environment never turns a mirror on");
    }

    #[test]
    fn bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "no_such_setting = 1\n").unwrap();
        let o = Overrides { config: Some(file), ..Default::default() };
        assert!(matches!(Config::load_with(&o, &|_| None), Err(ConfigError::Parse { .. })));
        let env = |name: &str| (name == "PORT").then(|| "eighty".to_string());
        assert!(matches!(Config::load_with(&Overrides::default(), &env), Err(ConfigError::Env { .. })));
        let env = |name: &str| (name == "LOG_FORMAT").then(|| "xml".to_string());
        assert!(Config::load_with(&Overrides::default(), &env).is_err());
        let file = dir.path().join("no-mailbox.toml");
        std::fs::write(&file, "[engine]\nmailbox_capacity = 0\n").unwrap();
        let o = Overrides { config: Some(file), ..Default::default() };
        assert!(
            matches!(Config::load_with(&o, &|_| None), Err(ConfigError::Invalid(_))),
            "a mailbox that holds nothing refuses every write"
        );
    }
}
