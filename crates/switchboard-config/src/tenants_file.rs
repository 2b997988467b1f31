//! `SWITCHBOARD_TENANTS_FILE`: any number of tenants in one TOML file of `[[tenant]]` tables, or
//! one YAML file (`.yaml`/`.yml`) with a `tenant:` list of the same keys
//! (`docs/tenants.example.toml` shows and explains every key, `docs/tenants.example.yaml` is the
//! same in YAML; a test loads both and finds them equal).
//!
//! Only `id` and `phone_number_ids` are required; every other key defaults to the
//! deployment-wide setting; unknown keys are refused. Secrets may be literal or references
//! (`env:VAR`, `file:/path`, `literal:…`), resolved once, at load: a missing variable or file is
//! an error naming the tenant and the key, never the value. Ids, phone number ids and admin
//! token hashes must each belong to one tenant.

use std::{collections::HashMap, path::Path};

use figment::{
    providers::{Format, Toml},
    Figment,
};
use serde::{de::DeserializeOwned, Deserialize};

use crate::{
    tenants::{parse_sha256_hex, Retention, Tenant},
    ConfigError, Secret, Settings, Tenants,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tenant: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    display_name: Option<String>,
    phone_number_ids: Vec<String>,
    #[serde(default)]
    app_secrets: Vec<Secret>,
    verify_token: Option<Secret>,
    access_token: Option<Secret>,
    system_prompt: Option<String>,
    llm_model: Option<String>,
    llm_base_url: Option<String>,
    llm_api_key: Option<Secret>,
    mark_read: Option<bool>,
    typing_indicator: Option<bool>,
    remember_profile_name: Option<bool>,
    rate_per_number: Option<f64>,
    retention: Option<RetentionEntry>,
    stop_words: Option<Vec<String>>,
    start_words: Option<Vec<String>>,
    forget_words: Option<Vec<String>>,
    #[serde(default)]
    admin_token_sha256: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetentionEntry {
    context_secs: Option<u64>,
    status_secs: Option<u64>,
    ledger_secs: Option<u64>,
    idempotency_secs: Option<u64>,
    audit_secs: Option<u64>,
    parked_secs: Option<u64>,
}

/// Loads the tenants file at `path`, resolving `env:` references from the process environment.
pub(crate) fn load(path: &Path, settings: &Settings) -> Result<Tenants, ConfigError> {
    load_with(path, settings, &|name| std::env::var(name).ok())
}

/// Like [`load`], with the environment given as a lookup (tests).
pub(crate) fn load_with(
    path: &Path,
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Tenants, ConfigError> {
    let fail = |reason: String| ConfigError::Load(format!("tenants file {}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it ({})", e.kind())))?;
    let source = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("yaml" | "yml") => Figment::from(Yaml::string(&text)),
        _ => Figment::from(Toml::string(&text)),
    };
    let file: File = source.extract().map_err(|e| fail(describe(&e)))?;
    if file.tenant.is_empty() {
        return Err(fail("defines no [[tenant]]".into()));
    }
    let mut tenants = Vec::with_capacity(file.tenant.len());
    for entry in file.tenant {
        let id = entry.id.clone();
        let tenant = build(entry, settings, env).map_err(|reason| fail(format!("tenant {id:?}: {reason}")))?;
        tenants.push(tenant);
    }
    check_unique(&tenants, settings).map_err(fail)?;
    Ok(Tenants::new(tenants))
}

fn build(e: Entry, s: &Settings, env: &dyn Fn(&str) -> Option<String>) -> Result<Tenant, String> {
    if e.id.is_empty() || e.id.len() > 64 || !e.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err("id must be 1-64 characters of [A-Za-z0-9_-]".into());
    }
    let mut t = Tenant::with_defaults(&e.id, s);
    if let Some(name) = e.display_name {
        t.display_name = name;
    }
    if e.phone_number_ids.is_empty() {
        return Err("phone_number_ids must name at least one phone number id".into());
    }
    if let Some(bad) = e.phone_number_ids.iter().find(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("phone_number_ids: {bad:?} is not a phone number id (digits only)"));
    }
    t.phone_number_ids = e.phone_number_ids;
    t.app_secrets = e.app_secrets.into_iter().map(|r| resolve(r, "app_secrets", env)).collect::<Result<_, _>>()?;
    t.verify_token = e.verify_token.map(|r| resolve(r, "verify_token", env)).transpose()?;
    t.access_token = e.access_token.map(|r| resolve(r, "access_token", env)).transpose()?;
    t.llm_api_key = e.llm_api_key.map(|r| resolve(r, "llm_api_key", env)).transpose()?;
    if let Some(prompt) = e.system_prompt {
        if prompt.trim().is_empty() {
            return Err("system_prompt must not be empty".into());
        }
        t.system_prompt = prompt;
    }
    if let Some(model) = e.llm_model {
        t.llm_model = model;
    }
    if let Some(url) = e.llm_base_url {
        if url::Url::parse(&url).map(|u| !u.scheme().starts_with("http")).unwrap_or(true) {
            return Err("llm_base_url must be an http(s) URL".into());
        }
        t.llm_base_url = Some(url);
    }
    t.mark_read = e.mark_read.unwrap_or(t.mark_read);
    t.typing_indicator = e.typing_indicator.unwrap_or(t.typing_indicator);
    t.remember_profile_name = e.remember_profile_name.unwrap_or(t.remember_profile_name);
    if let Some(rate) = e.rate_per_number {
        if !(rate > 0.0 && rate <= 100_000.0) {
            return Err("rate_per_number must be between 0 and 100000 messages per second".into());
        }
        t.rate_per_number = Some(rate);
    }
    t.retention = retention(e.retention.unwrap_or_default(), t.retention)?;
    for (words, into) in
        [(e.stop_words, &mut t.stop_words), (e.start_words, &mut t.start_words), (e.forget_words, &mut t.forget_words)]
    {
        if let Some(words) = words {
            *into = words.into_iter().map(|w| w.trim().to_owned()).filter(|w| !w.is_empty()).collect();
        }
    }
    t.admin_token_sha256 = e
        .admin_token_sha256
        .iter()
        .map(|h| parse_sha256_hex(h).ok_or_else(|| "admin_token_sha256: each must be 64 hex characters".to_string()))
        .collect::<Result<_, _>>()?;
    Ok(t)
}

fn retention(r: RetentionEntry, default: Retention) -> Result<Retention, String> {
    let pick = |v: Option<u64>, d: u64, key: &str| match v {
        Some(0) => Err(format!("retention.{key} must be greater than 0")),
        Some(v) => Ok(v),
        None => Ok(d),
    };
    Ok(Retention {
        context_secs: pick(r.context_secs, default.context_secs, "context_secs")?,
        status_secs: pick(r.status_secs, default.status_secs, "status_secs")?,
        ledger_secs: pick(r.ledger_secs, default.ledger_secs, "ledger_secs")?,
        idempotency_secs: pick(r.idempotency_secs, default.idempotency_secs, "idempotency_secs")?,
        audit_secs: pick(r.audit_secs, default.audit_secs, "audit_secs")?,
        parked_secs: pick(r.parked_secs, default.parked_secs, "parked_secs")?,
    })
}

/// A secret as written in the file: `env:VAR` (an environment variable), `file:/path` (the
/// file's content, without trailing line breaks), `literal:…` (the rest, verbatim) or any other
/// string (itself). Errors name the key and the reference, never a value.
fn resolve(raw: Secret, key: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, String> {
    let value = raw.expose();
    let resolved = if let Some(var) = value.strip_prefix("env:") {
        env(var).ok_or_else(|| format!("{key}: environment variable {var} is not set"))?
    } else if let Some(path) = value.strip_prefix("file:") {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{key}: cannot read file {path} ({})", e.kind()))?;
        text.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Some(rest) = value.strip_prefix("literal:") {
        rest.to_owned()
    } else {
        value.to_owned()
    };
    if resolved.is_empty() {
        return Err(format!("{key} is empty"));
    }
    Ok(Secret::new(resolved))
}

/// Ids, phone number ids and admin token hashes must each belong to one tenant (and no tenant
/// token may be the operator's).
fn check_unique(tenants: &[Tenant], settings: &Settings) -> Result<(), String> {
    let mut ids: HashMap<&str, ()> = HashMap::new();
    let mut phones: HashMap<&str, &str> = HashMap::new();
    let mut tokens: HashMap<&str, &str> = HashMap::new();
    let operator = settings.operator_token_sha256.as_deref().and_then(parse_sha256_hex);
    for t in tenants {
        if ids.insert(&t.id, ()).is_some() {
            return Err(format!("tenant id {:?} is defined twice", t.id));
        }
        for p in &t.phone_number_ids {
            if let Some(other) = phones.insert(p, &t.id) {
                return Err(format!("phone_number_id {p} belongs to tenant {other:?} and to tenant {:?}", t.id));
            }
        }
        for h in &t.admin_token_sha256 {
            if let Some(other) = tokens.insert(h, &t.id) {
                return Err(format!("tenant {:?} and tenant {other:?} share an admin token", t.id));
            }
            if operator.as_deref() == Some(h.as_str()) {
                return Err(format!("tenant {:?} has the operator's admin token", t.id));
            }
        }
    }
    Ok(())
}

/// A figment error as one line naming the key path. Only the first line of the message is
/// kept: a TOML syntax error goes on to quote the offending line, which may hold a secret.
/// YAML 1.2 as people expect it in a config file: only `true`/`false` are booleans (YAML 1.1
/// reads `y`, `no`, `off`… as booleans: a tenant id `no` would not load), and errors carry no
/// snippet of the file (which holds secrets).
struct Yaml;

impl Format for Yaml {
    type Error = serde_saphyr::Error;

    const NAME: &'static str = "YAML";

    fn from_str<T: DeserializeOwned>(string: &str) -> Result<T, Self::Error> {
        serde_saphyr::from_str_with_options(
            string,
            serde_saphyr::options! { with_snippet: false, strict_booleans: true },
        )
    }
}

/// One line describing a load error: where (the key path) and what, never a string from the file
/// (a secret can sit in any string: `app_secrets = "topsecret"` is the wrong type too). Parse
/// errors keep their first line, which gives the position only.
fn describe(e: &figment::Error) -> String {
    use figment::error::{Actual, Kind};
    let kind = match &e.kind {
        Kind::InvalidType(Actual::Str(_), expected) => format!("invalid type: found a string, expected {expected}"),
        Kind::InvalidValue(Actual::Str(_), expected) => format!("invalid value: a string, expected {expected}"),
        other => other.to_string(),
    };
    let kind = kind.lines().next().unwrap_or_default();
    match e.path.join(".") {
        path if path.is_empty() => kind.to_owned(),
        path => format!("{path}: {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::sha256_hex;

    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("sbtenants-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("tenants.toml");
            std::fs::write(&path, text).unwrap();
            Self(path)
        }
        fn sibling(&self, name: &str, text: &str) -> String {
            let p = self.0.with_file_name(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "ACME_SECRET" => Some("acme-app-secret".into()),
            "ACME_OLD" => Some("acme-old-secret".into()),
            _ => None,
        }
    }

    fn load_text(name: &str, text: &str) -> Result<Tenants, String> {
        let f = TempFile::new(name, text);
        load_with(&f.0, &Settings::default(), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn loads_two_tenants_with_references_and_defaults() {
        let f = TempFile::new("ok", "");
        let token_file = f.sibling("access", "beta-graph-token\n");
        let text = format!(
            r#"
[[tenant]]
id = "acme"
display_name = "ACME Ltd"
phone_number_ids = ["0200000000000001", "200000000000011"]
app_secrets = ["env:ACME_SECRET", "env:ACME_OLD"]
verify_token = "literal:env:not-a-reference"
access_token = "plain-token"
system_prompt = "You are ACME's assistant."
llm_base_url = "http://127.0.0.1:9/v1"
llm_api_key = "acme-llm-key"
rate_per_number = 20.5
stop_words = ["HALT", " stop "]
admin_token_sha256 = ["{acme_hash}"]
[tenant.retention]
context_secs = 3
audit_secs = 86400
parked_secs = 3600

[[tenant]]
id = "beta"
phone_number_ids = ["200000000000002"]
access_token = "file:{token_file}"
mark_read = false
"#,
            acme_hash = sha256_hex("acme-admin").to_uppercase()
        );
        std::fs::write(&f.0, text).unwrap();
        let s = Settings::default();
        let dir = load_with(&f.0, &s, &env).unwrap();
        assert_eq!(dir.iter().count(), 2);
        let acme = dir.by_phone_number_id("0200000000000001").unwrap();
        assert_eq!((acme.id.as_str(), acme.display_name.as_str()), ("acme", "ACME Ltd"));
        assert_eq!(dir.all_app_secrets()[..2], [b"acme-app-secret".as_slice(), b"acme-old-secret".as_slice()]);
        assert_eq!(acme.verify_token.as_ref().unwrap().expose(), "env:not-a-reference");
        assert_eq!(acme.llm_api_key.as_ref().unwrap().expose(), "acme-llm-key");
        assert_eq!(acme.rate_per_number, Some(20.5));
        assert_eq!(acme.stop_words, vec!["HALT", "stop"]);
        assert_eq!(acme.start_words, vec!["START", "UNSTOP"]);
        assert_eq!(acme.retention.context_secs, 3);
        assert_eq!(acme.retention.audit_secs, 86400);
        assert_eq!(acme.retention.parked_secs, 3600);
        assert_eq!(acme.retention.status_secs, s.status_ttl_secs);
        assert_eq!(dir.get("beta").unwrap().retention.parked_secs, s.parked_ttl_secs);
        assert_eq!(dir.by_admin_token("acme-admin").unwrap().id, "acme");
        let beta = dir.get("beta").unwrap();
        assert_eq!(beta.access_token.as_ref().unwrap().expose(), "beta-graph-token");
        assert_eq!(beta.display_name, "beta");
        assert_eq!(beta.system_prompt, s.system_prompt);
        assert!(!beta.mark_read && beta.llm_base_url.is_none());
        assert!(dir.by_admin_token("acme-admin-x").is_none());
        // Loading through Settings picks the file up.
        let via = Settings { tenants_file: Some(f.0.display().to_string()), ..Settings::default() };
        let err = Tenants::load(&via).unwrap_err().to_string(); // ACME_SECRET is not in this process's env
        assert!(err.contains("tenant \"acme\": app_secrets: environment variable ACME_SECRET is not set"), "{err}");
    }

    #[test]
    fn duplicates_are_refused_naming_the_tenants() {
        let twice =
            "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\n[[tenant]]\nid = \"a\"\nphone_number_ids = [\"2\"]\n";
        assert!(load_text("dupid", twice).unwrap_err().contains("tenant id \"a\" is defined twice"));
        let shared =
            "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\n[[tenant]]\nid = \"b\"\nphone_number_ids = [\"1\"]\n";
        let err = load_text("duppn", shared).unwrap_err();
        assert!(err.contains("phone_number_id 1 belongs to tenant \"a\" and to tenant \"b\""), "{err}");
        let h = sha256_hex("same");
        let token = format!(
            "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\nadmin_token_sha256 = [\"{h}\"]\n\
             [[tenant]]\nid = \"b\"\nphone_number_ids = [\"2\"]\nadmin_token_sha256 = [\"{h}\"]\n"
        );
        assert!(load_text("duptok", &token).unwrap_err().contains("share an admin token"));
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let cases = [
            ("unknown", "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\nsystem_promt = \"x\"\n", "system_promt"),
            ("unknown_top", "tenants = []\n", "tenants"),
            ("empty", "", "defines no [[tenant]]"),
            ("badid", "[[tenant]]\nid = \"a b\"\nphone_number_ids = [\"1\"]\n", "id must be"),
            ("nophone", "[[tenant]]\nid = \"a\"\nphone_number_ids = []\n", "at least one"),
            ("numeric", "[[tenant]]\nid = \"a\"\nphone_number_ids = [1]\n", "phone_number_ids"),
            (
                "file",
                "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\naccess_token = \"file:/nonexistent/x\"\n",
                "cannot read file /nonexistent/x",
            ),
            ("hash", "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\nadmin_token_sha256 = [\"abc\"]\n", "64 hex"),
            (
                "ret",
                "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\n[tenant.retention]\naudit_secs = 0\n",
                "retention.audit_secs",
            ),
            (
                "retkey",
                "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\n[tenant.retention]\nforever = 1\n",
                "forever",
            ),
            ("url", "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\nllm_base_url = \"ftp://x\"\n", "llm_base_url"),
            ("syntax", "[[tenant]]\nid = \"a\"\napp_secrets = [\"topsecret\"\n", "TOML parse error at line"),
        ];
        for (name, text, expected) in cases {
            let err = load_text(name, text).unwrap_err();
            assert!(err.contains(expected), "{name}: {err}");
            assert!(err.contains("tenants file") && !err.contains("topsecret"), "{name}: {err}");
        }
        let missing = load_with(Path::new("/nonexistent/tenants.toml"), &Settings::default(), &env).unwrap_err();
        assert!(missing.to_string().contains("cannot read it"), "{missing}");
    }

    #[test]
    fn the_documented_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/tenants.example.toml");
        let dir = load_with(&path, &Settings::default(), &|name| Some(format!("value of {name}"))).unwrap();
        assert_eq!(dir.get("acme").unwrap().retention.audit_secs, 31_536_000);
        assert_eq!(dir.by_phone_number_id("200000000000003").unwrap().id, "bistro");
    }

    #[test]
    fn the_yaml_example_equals_the_toml_example() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        let env = |name: &str| Some(format!("value of {name}"));
        let toml = load_with(&docs.join("tenants.example.toml"), &Settings::default(), &env).unwrap();
        let yaml = load_with(&docs.join("tenants.example.yaml"), &Settings::default(), &env).unwrap();
        let ids = |t: &Tenants| t.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&yaml), ["acme", "bistro"]);
        for (a, b) in toml.iter().zip(yaml.iter()) {
            // Debug hides secrets: compare those by value.
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            let secrets = |t: &Tenant| {
                let mut all: Vec<String> = t.app_secrets.iter().map(|s| s.expose().to_owned()).collect();
                all.extend(
                    [&t.verify_token, &t.access_token, &t.llm_api_key]
                        .iter()
                        .map(|s| s.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default()),
                );
                all
            };
            assert_eq!(secrets(a), secrets(b), "{}", a.id);
            assert_eq!(a.admin_token_sha256, b.admin_token_sha256);
        }
    }

    #[test]
    fn yaml_files_are_read_by_extension_and_checked_like_toml() {
        let dir = std::env::temp_dir().join(format!("sbtenants-{}-yaml", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let load = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            load_with(&path, &Settings::default(), &env).map_err(|e| e.to_string())
        };
        let ok = "tenant:\n  - id: y\n    phone_number_ids: ['42']\n    app_secrets: [topsecret]\n";
        for name in ["t.yaml", "t.YML"] {
            let tenants = load(name, ok).unwrap();
            assert_eq!(tenants.by_phone_number_id("42").unwrap().id, "y", "{name}");
        }
        let unquoted = load("n.yaml", "tenant:\n  - id: y\n    phone_number_ids: [42]\n").unwrap_err();
        assert!(unquoted.contains("phone_number_ids"), "{unquoted}");
        let unknown = load("u.yml", "tenant:\n  - id: y\n    phone_number_ids: ['1']\n    colour: red\n");
        assert!(unknown.unwrap_err().contains("colour"));
        let broken = load("b.yaml", "tenant: [\n  app_secrets: topsecret").unwrap_err();
        assert!(broken.contains("tenants file") && !broken.contains("topsecret"), "{broken}");
        let wrong_type =
            load("w.yaml", "tenant:\n  - id: y\n    phone_number_ids: ['1']\n    app_secrets: topsecret\n");
        let wrong_type = wrong_type.unwrap_err();
        assert!(wrong_type.contains("app_secrets") && !wrong_type.contains("topsecret"), "{wrong_type}");
        let yaml11 = load("b11.yaml", "tenant:\n  - id: no\n    phone_number_ids: ['7']\n    stop_words: [OFF, N]\n");
        let yaml11 = yaml11.unwrap();
        assert_eq!(yaml11.get("no").unwrap().stop_words, ["OFF", "N"], "YAML 1.1 booleans are text");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_never_show_secret_values() {
        let text =
            "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\napp_secrets = [\"topsecret\"]\nmark_read = \"yes\"\n";
        let err = load_text("leak", text).unwrap_err();
        assert!(err.contains("mark_read") && !err.contains("topsecret"), "{err}");
        let text = "[[tenant]]\nid = \"a\"\nphone_number_ids = [\"1\"]\napp_secrets = \"topsecret\"\n";
        let err = load_text("leak2", text).unwrap_err();
        assert!(err.contains("app_secrets") && !err.contains("topsecret"), "{err}");
    }
}
