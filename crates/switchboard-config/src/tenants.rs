//! The tenant directory: which business answers on which phone number, with which prompt,
//! credentials, retention periods and end-user commands.
//!
//! Built either from `SWITCHBOARD_TENANTS_FILE` ([`Tenants::load`], see `tenants_file.rs`) or
//! from the single-tenant variables ([`Tenants::from_settings`], the one-tenant shorthand).

use std::{collections::HashMap, sync::Arc, time::Duration};

use sha2::{Digest, Sha256};

use crate::{ConfigError, Role, Secret, Settings};

/// How long each kind of stored item of a tenant is kept (seconds; every one greater than 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The context window (last messages), from the last message.
    pub context_secs: u64,
    /// Delivery statuses of outbound messages, from the last status.
    pub status_secs: u64,
    /// The send ledger (which reply part went out as which WhatsApp message).
    pub ledger_secs: u64,
    /// Message states, pending messages, unpublished turns, erasure markers.
    pub idempotency_secs: u64,
    /// Audit records of admin actions and erasures.
    pub audit_secs: u64,
    /// Parked messages (dead letters, held replies), from when they were parked.
    pub parked_secs: u64,
}

impl Retention {
    /// The deployment-wide defaults (`SWITCHBOARD_*_TTL_SECS`).
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            context_secs: s.context_ttl_secs,
            status_secs: s.status_ttl_secs,
            ledger_secs: s.ledger_ttl_secs,
            idempotency_secs: s.idempotency_ttl_secs,
            audit_secs: s.audit_ttl_secs,
            parked_secs: s.parked_ttl_secs,
        }
    }

    pub fn context(&self) -> Duration {
        secs(self.context_secs)
    }
    pub fn status(&self) -> Duration {
        secs(self.status_secs)
    }
    pub fn ledger(&self) -> Duration {
        secs(self.ledger_secs)
    }
    pub fn idempotency(&self) -> Duration {
        secs(self.idempotency_secs)
    }
    pub fn audit(&self) -> Duration {
        secs(self.audit_secs)
    }
    pub fn parked(&self) -> Duration {
        secs(self.parked_secs)
    }
}

/// An end-user command recognised in a text message (see [`Tenant::user_command`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCommand {
    /// Restrict processing (one confirmation is sent, nothing else until `Start`).
    Stop,
    /// Lift a restriction.
    Start,
    /// Erase the stored context.
    Forget,
}

/// One business (a data controller) and its assistant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    /// Human-readable name (logs and the admin API; the id when not set).
    pub display_name: String,
    pub phone_number_ids: Vec<String>,
    /// Meta app secrets accepted for webhook signatures (two during a rotation).
    pub app_secrets: Vec<Secret>,
    pub verify_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub system_prompt: String,
    pub llm_model: String,
    /// The tenant's own OpenAI-compatible endpoint (`None`: `SWITCHBOARD_LLM_BASE_URL`).
    pub llm_base_url: Option<String>,
    /// The key for that endpoint (`None`: `SWITCHBOARD_LLM_API_KEY`).
    pub llm_api_key: Option<Secret>,
    /// Mark user messages read when taken.
    pub mark_read: bool,
    /// Show the typing indicator with the read receipt.
    pub typing_indicator: bool,
    /// Keep the user's profile name and give it to the assistant.
    pub remember_profile_name: bool,
    /// Messages per second per business phone number (`None`: `SWITCHBOARD_RATE_PER_NUMBER`).
    pub rate_per_number: Option<f64>,
    pub retention: Retention,
    /// Words that restrict processing, as configured (matching ignores case and surrounding space).
    pub stop_words: Vec<String>,
    pub start_words: Vec<String>,
    pub forget_words: Vec<String>,
    /// Lower-case hex SHA-256 of each admin bearer token of this tenant (two during a rotation).
    pub admin_token_sha256: Vec<String>,
}

impl Tenant {
    /// A tenant with the deployment-wide defaults and nothing tenant-specific but its id.
    pub fn with_defaults(id: &str, s: &Settings) -> Self {
        Self {
            id: id.to_owned(),
            display_name: id.to_owned(),
            phone_number_ids: Vec::new(),
            app_secrets: Vec::new(),
            verify_token: None,
            access_token: None,
            system_prompt: s.system_prompt.clone(),
            llm_model: s.llm_model.clone(),
            llm_base_url: None,
            llm_api_key: None,
            mark_read: s.mark_read,
            typing_indicator: s.typing_indicator,
            remember_profile_name: s.remember_profile_name,
            rate_per_number: None,
            retention: Retention::from_settings(s),
            stop_words: split_words(&s.stop_words),
            start_words: split_words(&s.start_words),
            forget_words: split_words(&s.forget_words),
            admin_token_sha256: Vec::new(),
        }
    }

    /// The command `text` is, if it is exactly one of the tenant's words (case-insensitive,
    /// surrounding whitespace ignored). Stop words win over start words, start over forget.
    pub fn user_command(&self, text: &str) -> Option<UserCommand> {
        let said = text.trim().to_uppercase();
        let is = |words: &[String]| words.iter().any(|w| !said.is_empty() && w.trim().to_uppercase() == said);
        if is(&self.stop_words) {
            Some(UserCommand::Stop)
        } else if is(&self.start_words) {
            Some(UserCommand::Start)
        } else if is(&self.forget_words) {
            Some(UserCommand::Forget)
        } else {
            None
        }
    }

    /// Whether `token` is one of this tenant's admin tokens (constant time per stored hash).
    pub fn admin_token_matches(&self, token: &str) -> bool {
        let given = sha256_hex(token);
        self.admin_token_sha256.iter().fold(false, |ok, h| ok | ct_eq(given.as_bytes(), h.as_bytes()))
    }
}

/// Lookup of tenants by id and by business phone number id.
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    tenants: Vec<Arc<Tenant>>,
    by_phone: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
}

impl Tenants {
    /// A directory of the given tenants. Ids and phone number ids should be unique ([`Tenants::load`]
    /// refuses duplicates); here a later duplicate wins.
    pub fn new(tenants: Vec<Tenant>) -> Self {
        let mut dir = Self::default();
        for tenant in tenants {
            let idx = dir.tenants.len();
            for pnid in &tenant.phone_number_ids {
                dir.by_phone.insert(pnid.clone(), idx);
            }
            dir.by_id.insert(tenant.id.clone(), idx);
            dir.tenants.push(Arc::new(tenant));
        }
        dir
    }

    /// `SWITCHBOARD_TENANTS_FILE` when set (and not empty), else the single-tenant shorthand.
    pub fn load(settings: &Settings) -> Result<Self, ConfigError> {
        if let Some(path) = settings.tenants_file.as_deref().filter(|p| !p.trim().is_empty()) {
            return crate::tenants_file::load(std::path::Path::new(path), settings);
        }
        settings.check_token_hashes()?;
        Ok(Self::from_settings(settings))
    }

    /// The one tenant described by the single-tenant `SWITCHBOARD_*` variables.
    pub fn from_settings(settings: &Settings) -> Self {
        let mut tenant = Tenant::with_defaults(&settings.tenant_id, settings);
        tenant.app_secrets = [&settings.app_secret, &settings.app_secret_previous]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        tenant.phone_number_ids = settings.phone_number_id.iter().cloned().collect();
        tenant.verify_token = settings.verify_token.clone();
        tenant.access_token = settings.access_token.clone();
        tenant.admin_token_sha256 = settings.admin_token_sha256.iter().filter_map(|h| parse_sha256_hex(h)).collect();
        Self::new(vec![tenant])
    }

    /// Checks that every tenant has what the given roles need (with a tenants file; the
    /// single-tenant keys are checked by [`Settings::validate`]).
    pub fn validate(&self, roles: &[Role]) -> Result<(), ConfigError> {
        let (ingress, dispatcher) = (roles.contains(&Role::Ingress), roles.contains(&Role::Dispatcher));
        let set = |s: &Option<Secret>| s.as_ref().is_some_and(|s| !s.is_empty());
        for t in &self.tenants {
            let missing = [
                (ingress && t.app_secrets.is_empty(), "app_secrets"),
                (ingress && !set(&t.verify_token), "verify_token"),
                (dispatcher && !set(&t.access_token), "access_token"),
            ];
            if let Some((_, what)) = missing.iter().find(|(m, _)| *m) {
                return Err(ConfigError::Load(format!("tenant {:?}: {what} is required by this role", t.id)));
            }
        }
        Ok(())
    }

    pub fn by_phone_number_id(&self, phone_number_id: &str) -> Option<&Arc<Tenant>> {
        self.by_phone.get(phone_number_id).map(|&i| &self.tenants[i])
    }

    pub fn get(&self, tenant_id: &str) -> Option<&Arc<Tenant>> {
        self.by_id.get(tenant_id).map(|&i| &self.tenants[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.iter()
    }

    /// The tenant whose admin token this is. Every stored hash of every tenant is compared,
    /// in constant time each, so the time taken does not tell which (if any) matched.
    pub fn by_admin_token(&self, token_plain: &str) -> Option<&Arc<Tenant>> {
        let hits = self.tenants.iter().map(|t| (t, t.admin_token_matches(token_plain))).collect::<Vec<_>>();
        hits.into_iter().find_map(|(t, hit)| hit.then_some(t))
    }

    /// Every app secret of every tenant: a webhook is verified before it can be routed.
    pub fn all_app_secrets(&self) -> Vec<&[u8]> {
        self.tenants.iter().flat_map(|t| t.app_secrets.iter().map(|s| s.expose().as_bytes())).collect()
    }

    /// Every verify token (the handshake does not say which tenant it is for).
    pub fn all_verify_tokens(&self) -> Vec<&str> {
        self.tenants.iter().filter_map(|t| t.verify_token.as_ref().map(|s| s.expose())).collect()
    }
}

impl Settings {
    /// The key of the pseudonymising hash. `SWITCHBOARD_PSEUDONYM_KEY` when set; otherwise
    /// derived from the app secret (so only the ingress, which computes pseudonyms, needs it).
    pub fn pseudonym_key(&self) -> Vec<u8> {
        if let Some(key) = self.pseudonym_key.as_ref().filter(|k| !k.is_empty()) {
            return key.expose().as_bytes().to_vec();
        }
        let mut h = Sha256::new();
        h.update(b"switchboard-pseudonym-key\0");
        h.update(self.app_secret.as_ref().map(|s| s.expose()).unwrap_or_default().as_bytes());
        h.update(b"\0");
        h.update(self.namespace.as_bytes());
        h.finalize().to_vec()
    }

    /// The admin token hashes, when set (an empty value is unset), are SHA-256s in hex.
    pub(crate) fn check_token_hashes(&self) -> Result<(), ConfigError> {
        for (key, hash) in [
            ("SWITCHBOARD_OPERATOR_TOKEN_SHA256", &self.operator_token_sha256),
            ("SWITCHBOARD_ADMIN_TOKEN_SHA256", &self.admin_token_sha256),
        ] {
            if hash.as_deref().is_some_and(|h| !h.trim().is_empty() && parse_sha256_hex(h).is_none()) {
                let reason = "must be 64 hexadecimal characters (a SHA-256)".into();
                return Err(ConfigError::Invalid { key, reason });
            }
        }
        Ok(())
    }

    /// Whether `token` is the operator's admin token (`SWITCHBOARD_OPERATOR_TOKEN_SHA256`),
    /// compared in constant time. Always false when no (valid) operator hash is configured.
    pub fn operator_token_matches(&self, token: &str) -> bool {
        match self.operator_token_sha256.as_deref().and_then(parse_sha256_hex) {
            Some(expected) => ct_eq(sha256_hex(token).as_bytes(), expected.as_bytes()),
            None => false,
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A comma-separated word list (`SWITCHBOARD_STOP_WORDS` …), trimmed, empty items dropped.
pub fn split_words(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// Lower-case hex SHA-256 of a token: what `*_TOKEN_SHA256` settings hold
/// (`printf %s "$TOKEN" | sha256sum`).
pub fn sha256_hex(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash normalised to lower case, if it is 64 hex characters.
pub(crate) fn parse_sha256_hex(hash: &str) -> Option<String> {
    let h = hash.trim();
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
}

/// Constant-time equality of two byte strings of equal length (false if the lengths differ).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn single_tenant_shorthand_builds_a_directory() {
        let s = Settings::load_from(vars(&[
            ("SWITCHBOARD_PHONE_NUMBER_ID", "200000000000002"),
            ("SWITCHBOARD_APP_SECRET", "new"),
            ("SWITCHBOARD_APP_SECRET_PREVIOUS", "old"),
            ("SWITCHBOARD_VERIFY_TOKEN", "vt"),
        ]))
        .unwrap();
        let t = Tenants::from_settings(&s);
        let tenant = t.by_phone_number_id("200000000000002").unwrap();
        assert_eq!(tenant.id, "default");
        assert_eq!(tenant.display_name, "default");
        assert_eq!(tenant.retention, Retention::from_settings(&s));
        assert_eq!(tenant.retention.audit_secs, 365 * 24 * 3600);
        assert!(t.by_phone_number_id("999").is_none());
        assert_eq!(t.all_app_secrets(), vec![b"new".as_slice(), b"old".as_slice()]);
        assert_eq!(t.all_verify_tokens(), vec!["vt"]);
        assert!(t.get("default").is_some());
        assert_ne!(s.pseudonym_key(), Settings::default().pseudonym_key());
        // Without a tenants file, load is the shorthand.
        assert_eq!(Tenants::load(&s).unwrap().iter().count(), 1);
    }

    #[test]
    fn admin_tokens_are_matched_by_hash() {
        let hash = sha256_hex("tenant-token");
        let s = Settings::load_from(vars(&[
            ("SWITCHBOARD_ADMIN_TOKEN_SHA256", &hash.to_uppercase()),
            ("SWITCHBOARD_OPERATOR_TOKEN_SHA256", &sha256_hex("op-token")),
        ]))
        .unwrap();
        let t = Tenants::load(&s).unwrap();
        assert_eq!(t.by_admin_token("tenant-token").unwrap().id, "default");
        assert!(t.by_admin_token("op-token").is_none());
        assert!(t.by_admin_token("").is_none());
        assert!(s.operator_token_matches("op-token"));
        assert!(!s.operator_token_matches("tenant-token"));
        assert!(!Settings::default().operator_token_matches(""));
        let bad = Settings::load_from(vars(&[("SWITCHBOARD_ADMIN_TOKEN_SHA256", "abc")])).unwrap();
        assert!(Tenants::load(&bad).unwrap_err().to_string().contains("SWITCHBOARD_ADMIN_TOKEN_SHA256"));
        assert!(bad.validate(&[]).is_err());
        let empty = [("SWITCHBOARD_ADMIN_TOKEN_SHA256", ""), ("SWITCHBOARD_TENANTS_FILE", " ")];
        assert_eq!(Tenants::load(&Settings::load_from(vars(&empty)).unwrap()).unwrap().iter().count(), 1);
    }

    #[test]
    fn user_commands_ignore_case_and_space() {
        let s = Settings::default();
        let t = Tenant::with_defaults("t", &s);
        assert_eq!(t.user_command(" stop "), Some(UserCommand::Stop));
        assert_eq!(t.user_command("Arret"), Some(UserCommand::Stop));
        assert_eq!(t.user_command("START"), Some(UserCommand::Start));
        assert_eq!(t.user_command("/FORGET"), Some(UserCommand::Forget));
        assert_eq!(t.user_command("stop please"), None);
        assert_eq!(t.user_command(""), None);
        assert_eq!(split_words(" a, ,b ,"), vec!["a", "b"]);
    }

    #[test]
    fn multi_tenant_validation_needs_a_pseudonym_key_not_single_tenant_keys() {
        let file = ("SWITCHBOARD_TENANTS_FILE", "/x.toml");
        let err = Settings::load_from(vars(&[file])).unwrap().validate(&[Role::Ingress]).unwrap_err();
        assert_eq!(err.to_string(), "missing required setting SWITCHBOARD_PSEUDONYM_KEY");
        let s = Settings::load_from(vars(&[file, ("SWITCHBOARD_PSEUDONYM_KEY", "k")])).unwrap();
        assert!(s.validate(&[Role::Ingress, Role::Worker, Role::Dispatcher]).is_ok());
        let mut t = Tenant::with_defaults("t", &s);
        let check = |t: &Tenant, role| Tenants::new(vec![t.clone()]).validate(&[role]).map_err(|e| e.to_string());
        assert!(check(&t, Role::Worker).is_ok());
        assert!(check(&t, Role::Ingress).unwrap_err().contains("app_secrets"));
        (t.app_secrets, t.verify_token) = (vec![Secret::new("a")], Some(Secret::new("v")));
        assert!(check(&t, Role::Ingress).is_ok());
        assert!(check(&t, Role::Dispatcher).unwrap_err().contains("access_token"));
        // The admin API never shares the webhook port.
        let err = Settings::load_from(vars(&[("SWITCHBOARD_ADMIN_ADDR", "127.0.0.1:8080")])).unwrap_err();
        assert!(err.to_string().contains("SWITCHBOARD_ADMIN_ADDR"), "{err}");
        assert_eq!(Settings::default().admin_addr.to_string(), "127.0.0.1:9090");
    }
}
