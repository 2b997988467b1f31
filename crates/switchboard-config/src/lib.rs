//! Switchboard configuration: typed, layered, checked once at start-up.
//!
//! Layers, later wins: built-in defaults → optional TOML file (`SWITCHBOARD_CONFIG_FILE`) →
//! `SWITCHBOARD_*` environment variables. Every key is documented in `docs/configuration.md`.
//! Secrets are wrapped in [`Secret`], whose `Debug`/`Display` never print the value.
//!
//! * [`Settings`]: every key, flat, named after its environment variable without the prefix;
//! * [`Settings::validate`]: required keys per role, with one clear error naming the variable;
//! * [`Tenants`]: the tenant directory the roles look tenants up in (one tenant for now,
//!   built from the single-tenant variables).

mod secret;
mod settings;
mod tenants;

pub use secret::Secret;
pub use settings::{ConfigError, LogFormat, Role, Settings};
pub use tenants::{Tenant, Tenants};
