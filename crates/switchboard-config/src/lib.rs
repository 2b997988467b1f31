//! Switchboard configuration: typed, layered, checked once at start-up.
//!
//! Layers, later wins: built-in defaults → optional TOML file (`SWITCHBOARD_CONFIG_FILE`) →
//! `SWITCHBOARD_*` environment variables. Every key is documented in `docs/configuration.md`.
//! Secrets are wrapped in [`Secret`], whose `Debug`/`Display` never print the value.
//!
//! * [`Settings`]: every key, flat, named after its environment variable without the prefix;
//! * [`Settings::validate`]: required keys per role, with one clear error naming the variable;
//! * [`Tenants`]: the tenant directory the roles look tenants up in: from
//!   `SWITCHBOARD_TENANTS_FILE` (`tenants_file.rs`) or, without it, the one tenant of the
//!   single-tenant variables; each [`Tenant`] with its [`Retention`] and end-user commands.

mod directory;
mod secret;
mod settings;
mod tenants;
mod tenants_file;

pub use directory::TenantDirectory;
pub use secret::Secret;
pub use settings::{ConfigError, LogFormat, Role, Settings};
pub use tenants::{sha256_hex, split_words, Retention, Tenant, Tenants, UserCommand};
