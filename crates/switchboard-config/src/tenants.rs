//! The tenant directory: which business answers on which phone number, with which prompt and
//! credentials.

use std::{collections::HashMap, sync::Arc};

use crate::{Secret, Settings};

/// One business (a data controller) and its assistant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub phone_number_ids: Vec<String>,
    /// Meta app secrets accepted for webhook signatures (two during a rotation).
    pub app_secrets: Vec<Secret>,
    pub verify_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub system_prompt: String,
    pub llm_model: String,
    /// Mark user messages read when taken.
    pub mark_read: bool,
    /// Show the typing indicator with the read receipt.
    pub typing_indicator: bool,
}

/// Lookup of tenants by id and by business phone number id.
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    tenants: Vec<Arc<Tenant>>,
    by_phone: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
}

impl Tenants {
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

    /// The one tenant described by the single-tenant `SWITCHBOARD_*` variables.
    pub fn from_settings(settings: &Settings) -> Self {
        let app_secrets = [&settings.app_secret, &settings.app_secret_previous]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        Self::new(vec![Tenant {
            id: settings.tenant_id.clone(),
            phone_number_ids: settings.phone_number_id.iter().cloned().collect(),
            app_secrets,
            verify_token: settings.verify_token.clone(),
            access_token: settings.access_token.clone(),
            system_prompt: settings.system_prompt.clone(),
            llm_model: settings.llm_model.clone(),
            mark_read: settings.mark_read,
            typing_indicator: settings.typing_indicator,
        }])
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
        use sha2::{Digest, Sha256};
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_tenant_shorthand_builds_a_directory() {
        let s = Settings::load_from([
            ("SWITCHBOARD_PHONE_NUMBER_ID".to_string(), "200000000000002".to_string()),
            ("SWITCHBOARD_APP_SECRET".to_string(), "new".to_string()),
            ("SWITCHBOARD_APP_SECRET_PREVIOUS".to_string(), "old".to_string()),
            ("SWITCHBOARD_VERIFY_TOKEN".to_string(), "vt".to_string()),
        ])
        .unwrap();
        let t = Tenants::from_settings(&s);
        let tenant = t.by_phone_number_id("200000000000002").unwrap();
        assert_eq!(tenant.id, "default");
        assert!(t.by_phone_number_id("999").is_none());
        assert_eq!(t.all_app_secrets(), vec![b"new".as_slice(), b"old".as_slice()]);
        assert_eq!(t.all_verify_tokens(), vec!["vt"]);
        assert!(t.get("default").is_some());
        assert_ne!(s.pseudonym_key(), Settings::default().pseudonym_key());
    }
}
