//! The live tenant directory: replaced as a whole on reload (SIGHUP or a changed tenants file)
//! while work in flight keeps the snapshot it started with.

use std::sync::{Arc, RwLock};

use crate::Tenants;

/// A handle on the current [`Tenants`]. Cheap to clone; every clone sees a reload.
#[derive(Clone, Debug)]
pub struct TenantDirectory {
    current: Arc<RwLock<Arc<Tenants>>>,
}

impl TenantDirectory {
    pub fn new(tenants: Tenants) -> Self {
        Self { current: Arc::new(RwLock::new(Arc::new(tenants))) }
    }

    /// The tenants as they are now. Hold the snapshot for one unit of work, not forever.
    pub fn current(&self) -> Arc<Tenants> {
        self.current.read().map(|t| t.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Installs a new set of tenants; work already running finishes with the old one.
    pub fn replace(&self, tenants: Tenants) {
        let fresh = Arc::new(tenants);
        match self.current.write() {
            Ok(mut t) => *t = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }
}

impl From<Tenants> for TenantDirectory {
    fn from(tenants: Tenants) -> Self {
        Self::new(tenants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Settings, Tenant};

    #[test]
    fn a_replacement_is_seen_by_every_clone_and_old_snapshots_stay_valid() {
        let s = Settings::default();
        let dir = TenantDirectory::new(Tenants::new(vec![Tenant::with_defaults("a", &s)]));
        let other = dir.clone();
        let before = dir.current();
        dir.replace(Tenants::new(vec![Tenant::with_defaults("b", &s)]));
        assert!(before.get("a").is_some(), "a snapshot taken before stays usable");
        assert!(other.current().get("b").is_some() && other.current().get("a").is_none());
    }
}
