//! Bearer-token authentication and per-tenant authorisation.
//!
//! Tokens are never stored or logged: settings and the tenants file hold their SHA-256, and
//! every comparison is constant-time ([`switchboard_config::Tenants::by_admin_token`],
//! [`switchboard_config::Settings::operator_token_matches`]). The order of checks is fixed:
//! credentials (401), then the tenant in the path (403 for another tenant's token, before
//! anything is looked up), then the tenant's existence (404, the operator only).

use std::sync::Arc;

use actix_web::{http::header::AUTHORIZATION, HttpRequest};
use switchboard_config::Tenant;

use crate::{AdminError, AdminState};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator token: every tenant.
    Operator,
    /// A tenant's own token: that tenant only.
    Tenant(String),
}

impl Caller {
    /// The actor recorded in audit records (never a token).
    pub fn actor(&self) -> String {
        match self {
            Self::Operator => "operator".into(),
            Self::Tenant(id) => format!("tenant:{id}"),
        }
    }
}

impl AdminState {
    /// Authenticates the request and authorises it for `tenant`; returns the caller and the
    /// tenant. Failures are security events.
    pub(crate) fn authorize(&self, req: &HttpRequest, tenant: &str) -> Result<(Caller, Arc<Tenant>), AdminError> {
        let caller = self.authenticate(req)?;
        if let Caller::Tenant(own) = &caller {
            if own != tenant {
                security_event(req, "admin_cross_tenant", Some(&caller));
                return Err(AdminError::Forbidden);
            }
        }
        let found = self.tenants.current().get(tenant).cloned().ok_or(AdminError::UnknownTenant)?;
        Ok((caller, found))
    }

    fn authenticate(&self, req: &HttpRequest) -> Result<Caller, AdminError> {
        let Some(token) = bearer(req) else {
            security_event(req, "admin_missing_token", None);
            return Err(AdminError::Unauthorized);
        };
        // Both checks always run, so the time taken does not tell which kind of token it was.
        let operator = self.operator_token_matches(token);
        let tenant = self.tenants.current().by_admin_token(token).map(|t| t.id.clone());
        match (operator, tenant) {
            (true, _) => Ok(Caller::Operator),
            (false, Some(id)) => Ok(Caller::Tenant(id)),
            (false, None) => {
                security_event(req, "admin_bad_token", None);
                Err(AdminError::Unauthorized)
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Logs a refused request: the peer, the route pattern (never the path: it holds the user's
/// number), and the caller when known. Never the token.
fn security_event(req: &HttpRequest, kind: &'static str, caller: Option<&Caller>) {
    let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let forwarded_for = req.connection_info().realip_remote_addr().unwrap_or("").to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let caller = caller.map(Caller::actor).unwrap_or_else(|| "-".into());
    tracing::warn!(security_event = kind, %peer, %forwarded_for, http.route = %route, %caller, "security event");
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let with = |v: &str| TestRequest::default().insert_header((AUTHORIZATION, v)).to_http_request();
        assert_eq!(bearer(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with("Basic abc")), None);
        assert_eq!(bearer(&with("Bearer ")), None);
        assert_eq!(bearer(&with("abc")), None);
        assert_eq!(bearer(&TestRequest::default().to_http_request()), None);
        assert_eq!(Caller::Tenant("a".into()).actor(), "tenant:a");
    }
}
