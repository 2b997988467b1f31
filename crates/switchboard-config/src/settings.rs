//! The settings struct, its defaults, loading and validation.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    providers::{Format, Serialized, Toml},
    value::{Dict, Value},
    Figment,
};
use serde::{Deserialize, Serialize};

use crate::Secret;

/// The prefix of every environment variable Switchboard reads.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// A process role; validation checks the keys each role needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingress,
    Worker,
    Dispatcher,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Every configuration key. Field `foo_bar` is set by `SWITCHBOARD_FOO_BAR` (or `foo_bar` in the
/// TOML file). `docs/configuration.md` documents each one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    // --- infrastructure ---
    pub amqp_url: Secret,
    pub redis_url: Secret,
    pub namespace: String,
    pub http_addr: SocketAddr,
    /// actix-web worker threads of the ingress; 0 = one per core.
    pub http_workers: usize,
    pub redis_pool_size: usize,
    pub publish_timeout_ms: u64,
    pub log_format: LogFormat,

    // --- the tenant (single-tenant shorthand) ---
    pub tenant_id: String,
    pub phone_number_id: Option<String>,
    pub app_secret: Option<Secret>,
    /// A second app secret accepted during rotation.
    pub app_secret_previous: Option<Secret>,
    pub verify_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub system_prompt: String,
    /// Key of the keyed hash that pseudonymises end-users in logs and Redis keys.
    pub pseudonym_key: Option<Secret>,

    // --- WhatsApp / Graph API ---
    pub graph_api_base: String,
    pub graph_timeout_ms: u64,
    pub max_body_bytes: usize,

    // --- LLM ---
    pub llm_base_url: String,
    pub llm_api_key: Secret,
    pub llm_model: String,
    pub llm_timeout_ms: u64,
    pub llm_max_tokens: Option<u32>,
    pub llm_max_attempts: u32,
    pub llm_backoff_base_ms: u64,
    pub llm_failure_reply: String,
    pub unsupported_reply: String,
    /// The one confirmation sent when a user sends a stop word.
    pub stop_reply: String,
    /// Sent when a user sends a start word while restricted.
    pub start_reply: String,
    /// Sent when a user sends a forget word (after the context is erased).
    pub forget_reply: String,

    // --- worker ---
    /// Conversations whose turns run at once in one worker.
    pub worker_concurrency: usize,
    /// Inbound deliveries one worker holds unacknowledged (waiting for their turn) at most.
    pub worker_prefetch: usize,
    /// Messages of one conversation arriving within this window of each other become one turn
    /// (0 = every message is its own turn, as soon as possible).
    pub coalesce_window_ms: u64,
    /// Hard cap on how long a turn may be delayed by coalescing and regeneration, counted from
    /// the arrival of its oldest message.
    pub turn_max_delay_ms: u64,
    pub claim_lease_ms: u64,
    pub idempotency_ttl_secs: u64,
    pub context_ttl_secs: u64,

    // --- dispatcher ---
    pub dispatcher_concurrency: usize,
    /// Send attempts of one reply before it is dead-lettered (`send_retries_exhausted`).
    pub send_max_attempts: u32,
    /// First delay of the retry ladder (each further step doubles it).
    pub send_backoff_base_ms: u64,
    /// Longest delay of the retry ladder.
    pub send_backoff_max_ms: u64,
    /// A reply older than this (from the user's newest message) is not sent: dead-lettered as
    /// `expired`.
    pub reply_max_age_secs: u64,
    /// Messages per second per business phone number, all dispatcher replicas together.
    pub rate_per_number: f64,
    /// Burst allowed above that rate (messages at once).
    pub rate_burst: u32,
    /// Minimum spacing of messages to one user (WhatsApp's pair rate), after `pair_burst`.
    pub pair_interval_ms: u64,
    pub pair_burst: u32,
    /// How long a reply waits for the earlier replies of its conversation to be settled before
    /// it is sent regardless (`0`: replies are not held in order).
    pub reply_order_wait_ms: u64,
    /// Safety margin before the end of WhatsApp's 24-hour window: replies later than
    /// 24 h minus this after the user's last message are dead-lettered as `window_closed`.
    pub window_margin_secs: u64,
    /// Mark user messages as read (blue ticks) when the worker takes them.
    pub mark_read: bool,
    /// Show "typing…" while the reply is prepared (sent with the read receipt).
    pub typing_indicator: bool,
    /// Keep the user's WhatsApp profile name (with the context window) and tell the assistant.
    pub remember_profile_name: bool,
    pub status_ttl_secs: u64,
    pub ledger_ttl_secs: u64,

    // --- observability ---
    /// Where the worker and dispatcher serve `/metrics`, `/healthz` and `/readyz` (the ingress
    /// serves them on its own port too). In `all` mode the ingress port serves them.
    pub metrics_addr: SocketAddr,

    // --- tenants, data-subject rights, admin API ---
    /// A TOML file defining any number of tenants (`[[tenant]]` tables; YAML when it is named
    /// `*.yaml`/`*.yml`); when set, the single-tenant variables above are not used for tenants.
    /// See `docs/tenants.example.toml`.
    pub tenants_file: Option<String>,
    /// Where the admin / data-subject API listens (never the webhook port).
    pub admin_addr: SocketAddr,
    /// Hex SHA-256 of the operator's admin bearer token (acts on every tenant).
    pub operator_token_sha256: Option<String>,
    /// Hex SHA-256 of the single-tenant shorthand's admin bearer token (acts on that tenant).
    pub admin_token_sha256: Option<String>,
    /// How long audit records of admin actions and erasures are kept.
    pub audit_ttl_secs: u64,
    /// How long parked messages (dead letters, held replies, unreadable webhooks) are kept
    /// before the dispatcher's retention sweep deletes them.
    pub parked_ttl_secs: u64,
    /// End-user words (comma-separated, matched case-insensitively) that restrict processing.
    pub stop_words: String,
    /// End-user words that lift a restriction set by a stop word.
    pub start_words: String,
    /// End-user words that erase the user's stored context.
    pub forget_words: String,

    // --- lifecycle ---
    pub shutdown_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            amqp_url: Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            redis_url: Secret::new("redis://127.0.0.1:6379/0"),
            namespace: "switchboard".into(),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            http_workers: 0,
            redis_pool_size: 32,
            publish_timeout_ms: 5_000,
            log_format: LogFormat::Text,
            tenant_id: "default".into(),
            phone_number_id: None,
            app_secret: None,
            app_secret_previous: None,
            verify_token: None,
            access_token: None,
            system_prompt: "You are a helpful, concise assistant answering customers on WhatsApp. \
                            Answer in the customer's language. If you do not know, say so."
                .into(),
            pseudonym_key: None,
            graph_api_base: "https://graph.facebook.com/v25.0".into(),
            graph_timeout_ms: 30_000,
            max_body_bytes: 4 * 1024 * 1024,
            llm_base_url: "https://api.openai.com/v1".into(),
            llm_api_key: Secret::default(),
            llm_model: "gpt-4o-mini".into(),
            llm_timeout_ms: 30_000,
            llm_max_tokens: None,
            llm_max_attempts: 3,
            llm_backoff_base_ms: 500,
            llm_failure_reply: "Sorry, I can't answer right now. Please try again in a little while.".into(),
            unsupported_reply: "Sorry, I can only read text messages for now. \
                                Could you write your question?"
                .into(),
            stop_reply: "You will not get any more messages from this assistant. Send START to talk again.".into(),
            start_reply: "Welcome back! How can I help?".into(),
            forget_reply: "Done: I have forgotten our conversation.".into(),
            worker_concurrency: 64,
            worker_prefetch: 256,
            coalesce_window_ms: 1_500,
            turn_max_delay_ms: 10_000,
            claim_lease_ms: 30_000,
            idempotency_ttl_secs: 7 * 24 * 3600,
            context_ttl_secs: 7 * 24 * 3600,
            dispatcher_concurrency: 32,
            send_max_attempts: 10,
            send_backoff_base_ms: 1_000,
            send_backoff_max_ms: 300_000,
            reply_max_age_secs: 2 * 3600,
            rate_per_number: 80.0,
            rate_burst: 8,
            pair_interval_ms: 1_000,
            pair_burst: 3,
            reply_order_wait_ms: 10_000,
            window_margin_secs: 600,
            mark_read: true,
            typing_indicator: true,
            remember_profile_name: false,
            status_ttl_secs: 30 * 24 * 3600,
            ledger_ttl_secs: 7 * 24 * 3600,
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9464)),
            tenants_file: None,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            operator_token_sha256: None,
            admin_token_sha256: None,
            audit_ttl_secs: 365 * 24 * 3600,
            parked_ttl_secs: 14 * 24 * 3600,
            stop_words: "STOP,STOPP,ARRET,ALTO,PARAR,UNSUBSCRIBE".into(),
            start_words: "START,UNSTOP".into(),
            forget_words: "/forget".into(),
            shutdown_timeout_ms: 25_000,
        }
    }
}

/// A configuration problem, reported at start-up as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting {0}")]
    Missing(&'static str),
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot load configuration: {0}")]
    Load(String),
}

impl Settings {
    /// Loads defaults → `SWITCHBOARD_CONFIG_FILE` (if set) → `SWITCHBOARD_*` from the process
    /// environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::vars())
    }

    /// Like [`Settings::load`] but from the given variables (tests use this; the process
    /// environment is not touched).
    pub fn load_from(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut env = Dict::new();
        let mut file: Option<PathBuf> = None;
        for (key, value) in vars {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name == "CONFIG_FILE" {
                file = Some(PathBuf::from(value));
                continue;
            }
            // Kept as strings: `extract_lossy` parses numbers and booleans where the field wants
            // them, and strings such as tokens or ids keep leading zeros.
            env.insert(name.to_ascii_lowercase(), Value::from(value));
        }
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Load(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Serialized::defaults(env));
        let settings: Settings = figment.extract_lossy().map_err(|e| ConfigError::Load(describe(&e)))?;
        settings.check_values()?;
        Ok(settings)
    }

    /// Checks that every key the given roles need is present.
    ///
    /// With `SWITCHBOARD_TENANTS_FILE` set, the single-tenant keys are not required (each
    /// tenant's are checked by [`crate::Tenants::validate`]) but `SWITCHBOARD_PSEUDONYM_KEY` is:
    /// it must not be derived from one tenant's app secret.
    pub fn validate(&self, roles: &[Role]) -> Result<(), ConfigError> {
        self.check_values()?;
        self.check_token_hashes()?;
        if self.tenants_file.as_deref().is_some_and(|p| !p.trim().is_empty()) {
            return require_secret(&self.pseudonym_key, "SWITCHBOARD_PSEUDONYM_KEY");
        }
        require(&self.phone_number_id, "SWITCHBOARD_PHONE_NUMBER_ID")?;
        for role in roles {
            match role {
                Role::Ingress => {
                    require_secret(&self.app_secret, "SWITCHBOARD_APP_SECRET")?;
                    require_secret(&self.verify_token, "SWITCHBOARD_VERIFY_TOKEN")?;
                }
                Role::Dispatcher => require_secret(&self.access_token, "SWITCHBOARD_ACCESS_TOKEN")?,
                Role::Worker => {}
            }
        }
        Ok(())
    }

    fn check_values(&self) -> Result<(), ConfigError> {
        let ns_ok = !self.namespace.is_empty()
            && self.namespace.len() <= 64
            && self.namespace.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ns_ok {
            return Err(invalid("SWITCHBOARD_NAMESPACE", "1-64 characters of [A-Za-z0-9._-]"));
        }
        if self.tenant_id.is_empty()
            || self.tenant_id.len() > 64
            || !self.tenant_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(invalid("SWITCHBOARD_TENANT_ID", "1-64 characters of [A-Za-z0-9_-]"));
        }
        for (key, url) in
            [("SWITCHBOARD_GRAPH_API_BASE", &self.graph_api_base), ("SWITCHBOARD_LLM_BASE_URL", &self.llm_base_url)]
        {
            if url::Url::parse(url).map(|u| !u.scheme().starts_with("http")).unwrap_or(true) {
                return Err(invalid(key, "must be an http(s) URL"));
            }
        }
        for (key, value) in [
            ("SWITCHBOARD_LLM_MAX_ATTEMPTS", self.llm_max_attempts as u64),
            ("SWITCHBOARD_SEND_MAX_ATTEMPTS", self.send_max_attempts as u64),
            ("SWITCHBOARD_WORKER_CONCURRENCY", self.worker_concurrency as u64),
            ("SWITCHBOARD_WORKER_PREFETCH", self.worker_prefetch as u64),
            ("SWITCHBOARD_DISPATCHER_CONCURRENCY", self.dispatcher_concurrency as u64),
            ("SWITCHBOARD_LLM_TIMEOUT_MS", self.llm_timeout_ms),
            ("SWITCHBOARD_CLAIM_LEASE_MS", self.claim_lease_ms),
            ("SWITCHBOARD_PUBLISH_TIMEOUT_MS", self.publish_timeout_ms),
            ("SWITCHBOARD_GRAPH_TIMEOUT_MS", self.graph_timeout_ms),
            ("SWITCHBOARD_SHUTDOWN_TIMEOUT_MS", self.shutdown_timeout_ms),
            ("SWITCHBOARD_IDEMPOTENCY_TTL_SECS", self.idempotency_ttl_secs),
            ("SWITCHBOARD_CONTEXT_TTL_SECS", self.context_ttl_secs),
            ("SWITCHBOARD_STATUS_TTL_SECS", self.status_ttl_secs),
            ("SWITCHBOARD_LEDGER_TTL_SECS", self.ledger_ttl_secs),
            ("SWITCHBOARD_AUDIT_TTL_SECS", self.audit_ttl_secs),
            ("SWITCHBOARD_PARKED_TTL_SECS", self.parked_ttl_secs),
            ("SWITCHBOARD_MAX_BODY_BYTES", self.max_body_bytes as u64),
            ("SWITCHBOARD_SEND_BACKOFF_BASE_MS", self.send_backoff_base_ms),
            ("SWITCHBOARD_REPLY_MAX_AGE_SECS", self.reply_max_age_secs),
            ("SWITCHBOARD_PAIR_INTERVAL_MS", self.pair_interval_ms),
            ("SWITCHBOARD_RATE_BURST", self.rate_burst as u64),
            ("SWITCHBOARD_PAIR_BURST", self.pair_burst as u64),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        for (key, value) in [
            ("SWITCHBOARD_WORKER_PREFETCH", self.worker_prefetch),
            ("SWITCHBOARD_DISPATCHER_CONCURRENCY", self.dispatcher_concurrency),
        ] {
            if value > u16::MAX as usize {
                return Err(invalid(key, "at most 65535"));
            }
        }
        if !(self.rate_per_number > 0.0 && self.rate_per_number <= 100_000.0) {
            return Err(invalid("SWITCHBOARD_RATE_PER_NUMBER", "must be between 0 and 100000 messages per second"));
        }
        if self.send_backoff_max_ms < self.send_backoff_base_ms {
            return Err(invalid(
                "SWITCHBOARD_SEND_BACKOFF_MAX_MS",
                "must be at least SWITCHBOARD_SEND_BACKOFF_BASE_MS",
            ));
        }
        if self.admin_addr.port() != 0 && self.admin_addr.port() == self.http_addr.port() {
            return Err(invalid("SWITCHBOARD_ADMIN_ADDR", "must not be the webhook port (SWITCHBOARD_HTTP_ADDR)"));
        }
        if self.window_margin_secs >= 24 * 3600 {
            return Err(invalid("SWITCHBOARD_WINDOW_MARGIN_SECS", "must be less than 24 hours"));
        }
        if self.turn_max_delay_ms < self.coalesce_window_ms {
            return Err(invalid("SWITCHBOARD_TURN_MAX_DELAY_MS", "must be at least SWITCHBOARD_COALESCE_WINDOW_MS"));
        }
        Ok(())
    }

    pub fn llm_timeout(&self) -> Duration {
        Duration::from_millis(self.llm_timeout_ms)
    }
    pub fn claim_lease(&self) -> Duration {
        Duration::from_millis(self.claim_lease_ms)
    }
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
    pub fn coalesce_window(&self) -> Duration {
        Duration::from_millis(self.coalesce_window_ms)
    }
    pub fn turn_max_delay(&self) -> Duration {
        Duration::from_millis(self.turn_max_delay_ms)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

fn describe(e: &figment::Error) -> String {
    // Name the environment variable rather than the internal field path.
    match e.path.last() {
        Some(field) => format!("{}{}: {}", ENV_PREFIX, field.to_ascii_uppercase(), e.kind),
        None => e.kind.to_string(),
    }
}

fn invalid(key: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

fn require(value: &Option<String>, key: &'static str) -> Result<(), ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(()),
        _ => Err(ConfigError::Missing(key)),
    }
}

fn require_secret(value: &Option<Secret>, key: &'static str) -> Result<(), ConfigError> {
    match value {
        Some(v) if !v.is_empty() => Ok(()),
        _ => Err(ConfigError::Missing(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let s = Settings::load_from(vars(&[])).unwrap();
        assert_eq!(s.amqp_url.expose(), "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(s.redis_url.expose(), "redis://127.0.0.1:6379/0");
        assert_eq!(s.namespace, "switchboard");
        assert_eq!(s.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(s.graph_api_base, "https://graph.facebook.com/v25.0");
        assert_eq!(s.llm_base_url, "https://api.openai.com/v1");
        assert!(s.llm_api_key.is_empty());
        assert_eq!(s.llm_timeout_ms, 30_000);
    }

    #[test]
    fn env_values_override_and_keep_leading_zeros() {
        let s = Settings::load_from(vars(&[
            ("SWITCHBOARD_PHONE_NUMBER_ID", "0200000000000002"),
            ("SWITCHBOARD_VERIFY_TOKEN", "000123"),
            ("SWITCHBOARD_LLM_TIMEOUT_MS", "1500"),
            ("SWITCHBOARD_HTTP_ADDR", "127.0.0.1:0"),
            ("SWITCHBOARD_LOG_FORMAT", "json"),
            ("OTHER_VAR", "ignored"),
        ]))
        .unwrap();
        assert_eq!(s.phone_number_id.as_deref(), Some("0200000000000002"));
        assert_eq!(s.verify_token.as_ref().unwrap().expose(), "000123");
        assert_eq!(s.llm_timeout_ms, 1500);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn a_config_file_is_a_layer_below_the_environment() {
        let dir = std::env::temp_dir().join(format!("sbcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchboard.toml");
        std::fs::write(&path, "namespace = \"fromfile\"\nllm_model = \"file-model\"\n").unwrap();
        let s = Settings::load_from(vars(&[
            ("SWITCHBOARD_CONFIG_FILE", path.to_str().unwrap()),
            ("SWITCHBOARD_LLM_MODEL", "env-model"),
        ]))
        .unwrap();
        assert_eq!(s.namespace, "fromfile");
        assert_eq!(s.llm_model, "env-model");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_required_keys_are_named() {
        let s = Settings::load_from(vars(&[("SWITCHBOARD_PHONE_NUMBER_ID", "200")])).unwrap();
        let err = s.validate(&[Role::Ingress]).unwrap_err();
        assert_eq!(err.to_string(), "missing required setting SWITCHBOARD_APP_SECRET");
        let err = s.validate(&[Role::Dispatcher]).unwrap_err();
        assert_eq!(err.to_string(), "missing required setting SWITCHBOARD_ACCESS_TOKEN");
        assert!(s.validate(&[Role::Worker]).is_ok());
        let none = Settings::load_from(vars(&[])).unwrap();
        assert_eq!(
            none.validate(&[Role::Worker]).unwrap_err().to_string(),
            "missing required setting SWITCHBOARD_PHONE_NUMBER_ID"
        );
    }

    #[test]
    fn bad_values_are_reported_with_the_variable_name() {
        let err = Settings::load_from(vars(&[("SWITCHBOARD_LLM_TIMEOUT_MS", "soon")])).unwrap_err();
        assert!(err.to_string().contains("SWITCHBOARD_LLM_TIMEOUT_MS"), "{err}");
        let err = Settings::load_from(vars(&[("SWITCHBOARD_NAMESPACE", "a b")])).unwrap_err();
        assert!(err.to_string().contains("SWITCHBOARD_NAMESPACE"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Settings::load_from(vars(&[
            ("SWITCHBOARD_APP_SECRET", "topsecret-app"),
            ("SWITCHBOARD_ACCESS_TOKEN", "topsecret-token"),
            ("SWITCHBOARD_LLM_API_KEY", "topsecret-key"),
            ("SWITCHBOARD_AMQP_URL", "amqp://u:topsecret-pw@h/%2f"),
        ]))
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("topsecret"), "{dbg}");
    }
}
