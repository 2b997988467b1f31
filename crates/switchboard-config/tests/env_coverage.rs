//! Every `SWITCHBOARD_*` variable the code reads is in `.env.example`, in the Kubernetes ConfigMap
//! or Secret (`deploy/kubernetes/base/config.env`, `secrets.env`) and in `docs/configuration.md`,
//! and nothing those files name is unknown to the code. Secrets go to the Secret and only there.
//! The ConfigMap's values load, pass validation for every role, and equal the code's defaults.
//!
//! The key list comes from the code: every field of `Settings` (serialised from its default), plus
//! `SWITCHBOARD_CONFIG_FILE`. A new setting therefore fails this test until it is documented and
//! deployable.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use switchboard_config::{Role, Settings};

const PREFIX: &str = "SWITCHBOARD_";
/// Read by `Settings::load`, not a field.
const OUTSIDE_SETTINGS: &[&str] = &["SWITCHBOARD_CONFIG_FILE"];
/// ConfigMap values that deliberately differ from the code's default.
const CONFIGMAP_OVERRIDES: &[&str] = &[
    "SWITCHBOARD_PHONE_NUMBER_ID", // required, no default: a placeholder
    "SWITCHBOARD_LOG_FORMAT",      // json in the cluster
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Field name → environment variable, for every field of `Settings`.
fn fields() -> BTreeMap<String, String> {
    let value = serde_json::to_value(Settings::default()).unwrap();
    let object = value.as_object().expect("Settings serialises to an object");
    object
        .iter()
        .map(|(field, v)| {
            assert!(!v.is_object() && !v.is_array(), "Settings.{field} is not flat: this test assumes flat keys");
            (field.clone(), format!("{PREFIX}{}", field.to_ascii_uppercase()))
        })
        .collect()
}

fn known_keys() -> BTreeSet<String> {
    fields().into_values().chain(OUTSIDE_SETTINGS.iter().map(|s| s.to_string())).collect()
}

/// The variables of `Secret` type: those whose value `Debug` redacts. Optional fields are set
/// first (to "7", which every field type accepts), so that `Some(secret)` shows as redacted.
fn secret_keys() -> BTreeSet<String> {
    let fields = fields();
    let defaults = serde_json::to_value(Settings::default()).unwrap();
    let vars =
        fields.iter().filter(|(f, _)| defaults[f.as_str()].is_null()).map(|(_, var)| (var.clone(), "7".to_string()));
    let settings = Settings::load_from(vars).expect("settings with every optional key set");
    let debug = format!("{settings:#?}");
    let lines: Vec<&str> = debug.lines().map(str::trim).collect();
    fields
        .iter()
        .filter(|(field, _)| {
            lines.iter().enumerate().any(|(i, line)| {
                *line == format!("{field}: [redacted],")
                    || (*line == format!("{field}: Some(") && lines.get(i + 1) == Some(&"[redacted],"))
            })
        })
        .map(|(_, var)| var.clone())
        .collect()
}

/// Every `SWITCHBOARD_X` name mentioned anywhere in `text` (`SWITCHBOARD_*` and
/// `SWITCHBOARD_<FIELD>` are not names).
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let tail = &rest[at + PREFIX.len()..];
        let len =
            tail.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        let name = tail[..len].trim_end_matches('_');
        if !name.is_empty() {
            names.insert(format!("{PREFIX}{name}"));
        }
        rest = tail;
    }
    names
}

/// Names assigned on a line of an env file, set (`KEY=value`) or shown commented (`# KEY=value`).
fn assigned(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches('#').trim_start();
            let (key, _) = line.split_once('=')?;
            (key.starts_with(PREFIX) && key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .then(|| key.to_string())
        })
        .collect()
}

/// The variables a kustomize env file sets: uncommented `KEY=value`, the value literal.
fn env_file_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim_start)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

struct Problems(Vec<String>);

impl Problems {
    fn missing(&mut self, file: &str, expected: &BTreeSet<String>, found: &BTreeSet<String>) {
        for key in expected.difference(found) {
            self.0.push(format!("{file}: {key} is read by the code but missing here"));
        }
    }
    fn unknown(&mut self, file: &str, known: &BTreeSet<String>, names: &BTreeSet<String>) {
        for name in names.difference(known) {
            self.0.push(format!("{file}: {name} is not a setting the code reads"));
        }
    }
    fn assert_none(self) {
        assert!(self.0.is_empty(), "{} problem(s):\n  {}", self.0.len(), self.0.join("\n  "));
    }
}

#[test]
fn the_secret_fields_are_found() {
    let secrets = secret_keys();
    for key in ["SWITCHBOARD_AMQP_URL", "SWITCHBOARD_APP_SECRET", "SWITCHBOARD_PSEUDONYM_KEY"] {
        assert!(secrets.contains(key), "{key} not detected as a secret: {secrets:?}");
    }
    assert!(!secrets.contains("SWITCHBOARD_NAMESPACE"));
    assert!(!secrets.contains("SWITCHBOARD_PHONE_NUMBER_ID"));
}

#[test]
fn env_example_lists_every_variable_and_no_other() {
    let known = known_keys();
    let text = read(".env.example");
    let mut problems = Problems(vec![]);
    problems.missing(".env.example", &known, &assigned(&text));
    problems.unknown(".env.example", &known, &mentioned(&text));
    problems.assert_none();
}

#[test]
fn configuration_doc_documents_every_variable_and_no_other() {
    let known = known_keys();
    let text = read("docs/configuration.md");
    let documented: BTreeSet<String> = known.iter().filter(|key| text.contains(&format!("`{key}`"))).cloned().collect();
    let mut problems = Problems(vec![]);
    problems.missing("docs/configuration.md", &known, &documented);
    problems.unknown("docs/configuration.md", &known, &mentioned(&text));
    problems.assert_none();
}

#[test]
fn kubernetes_configmap_and_secret_hold_every_variable_and_no_other() {
    const CONFIG: &str = "deploy/kubernetes/base/config.env";
    const SECRETS: &str = "deploy/kubernetes/base/secrets.env";
    const PROD_CONFIG: &str = "deploy/kubernetes/overlays/prod/config.env";
    let known = known_keys();
    let secrets = secret_keys();
    let public: BTreeSet<String> = known.difference(&secrets).cloned().collect();
    let (config, secret, prod) = (read(CONFIG), read(SECRETS), read(PROD_CONFIG));
    let mut problems = Problems(vec![]);
    problems.missing(CONFIG, &public, &assigned(&config));
    problems.missing(SECRETS, &secrets, &assigned(&secret));
    for (file, text) in [(CONFIG, &config), (SECRETS, &secret), (PROD_CONFIG, &prod)] {
        problems.unknown(file, &known, &mentioned(text));
    }
    for (file, text) in [(CONFIG, &config), (PROD_CONFIG, &prod)] {
        for key in assigned(text).intersection(&secrets) {
            problems.0.push(format!("{file}: {key} is a secret: it belongs in {SECRETS} only"));
        }
    }
    for key in assigned(&secret).intersection(&public) {
        problems.0.push(format!("{SECRETS}: {key} is not a secret: it belongs in {CONFIG}"));
    }
    problems.assert_none();
}

#[test]
fn kubernetes_configmap_values_load_and_equal_the_defaults() {
    let base = env_file_values(&read("deploy/kubernetes/base/config.env"));
    let secrets = env_file_values(&read("deploy/kubernetes/base/secrets.env"));
    let prod = env_file_values(&read("deploy/kubernetes/overlays/prod/config.env"));
    let all_roles = [Role::Ingress, Role::Worker, Role::Dispatcher];

    // base, and base with the prod overlay merged over it (later wins), with the Secret's keys.
    for (name, vars) in [("base", base.clone()), ("prod", base.iter().chain(&prod).cloned().collect())] {
        let vars: Vec<_> = vars.into_iter().chain(secrets.iter().cloned()).collect();
        let settings = Settings::load_from(vars).unwrap_or_else(|e| panic!("{name} ConfigMap + Secret: {e}"));
        settings.validate(&all_roles).unwrap_or_else(|e| panic!("{name} ConfigMap + Secret: {e}"));
    }

    let fields = fields();
    let defaults = serde_json::to_value(Settings::default()).unwrap();
    let loaded = serde_json::to_value(Settings::load_from(base.clone()).unwrap()).unwrap();
    let mut problems = Problems(vec![]);
    for (field, var) in &fields {
        let set = base.iter().any(|(k, _)| k == var);
        if set && !CONFIGMAP_OVERRIDES.contains(&var.as_str()) && loaded[field] != defaults[field] {
            problems.0.push(format!(
                "deploy/kubernetes/base/config.env: {var} is {} but the code's default is {}",
                loaded[field], defaults[field]
            ));
        }
    }
    problems.assert_none();
}
