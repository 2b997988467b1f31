//! The admin and data-subject API, on its own listener (`SWITCHBOARD_ADMIN_ADDR`, default
//! `127.0.0.1:9090`; never the webhook port).
//!
//! For one tenant and one end-user (named by `wa_id`; the API derives the conversation key and
//! never logs the number): export (access, portability), rectify a stored message, erase,
//! restrict / lift, erase-and-block; and the tenant's audit log. Every action is audited in the
//! tenant's log (`switchboard_store::AuditRecord`).
//!
//! * [`auth`]: bearer tokens (tenant tokens act on their tenant, the operator's on all);
//! * [`routes`]: the handlers;
//! * [`parked`]: the subject's messages parked on the broker (dead letters, held replies);
//! * [`error`]: the one place where failures become HTTP statuses;
//! * [`openapi`]: the OpenAPI document (`GET /admin/openapi.json`);
//! * [`run`]: builds the actix-web server on a given listener and runs it until shutdown.

pub mod auth;
mod error;
pub mod openapi;
pub mod parked;
pub mod routes;

use std::{net::TcpListener, time::Instant};

use actix_web::{
    dev::{Server, Service},
    web, App, HttpServer,
};
use switchboard_bus::Bus;
use switchboard_config::{Settings, TenantDirectory};
use switchboard_domain::Pseudonymizer;
use switchboard_store::Store;
use tokio_util::sync::CancellationToken;

pub use error::{AdminError, ErrorBody};

/// Shared state of the handlers.
pub struct AdminState {
    pub store: Store,
    pub bus: Bus,
    pub tenants: TenantDirectory,
    pub pseudonymizer: Pseudonymizer,
    /// The settings the API runs with (the operator token's hash).
    settings: Settings,
}

impl AdminState {
    pub fn new(
        settings: &Settings,
        store: Store,
        bus: Bus,
        tenants: TenantDirectory,
        pseudonymizer: Pseudonymizer,
    ) -> Self {
        Self { store, bus, tenants, pseudonymizer, settings: settings.clone() }
    }

    pub(crate) fn operator_token_matches(&self, token: &str) -> bool {
        self.settings.operator_token_matches(token)
    }
}

/// Serves the admin API on `listener` until `shutdown` is cancelled, then stops accepting and
/// lets in-flight requests finish.
pub async fn run(
    settings: &Settings,
    listener: TcpListener,
    store: Store,
    bus: Bus,
    tenants: TenantDirectory,
    pseudonymizer: Pseudonymizer,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if settings.operator_token_sha256.is_none() && tenants.current().iter().all(|t| t.admin_token_sha256.is_empty()) {
        tracing::warn!("no admin token is configured: every admin request will be refused");
    }
    let state = web::Data::new(AdminState::new(settings, store, bus, tenants, pseudonymizer));
    let addr = listener.local_addr()?;
    let server = build_server(settings, listener, state)?;
    let handle = server.handle();
    tracing::info!(%addr, "admin API listening");
    let stopper = tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("admin API stopping");
        handle.stop(true).await;
    });
    let result = server.await;
    stopper.abort();
    result
}

/// Builds the server synchronously (the builder is not `Send`; the returned server is).
fn build_server(settings: &Settings, listener: TcpListener, state: web::Data<AdminState>) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(|_, _| AdminError::BadRequest("bad query").into()))
            .app_data(web::PayloadConfig::new(64 * 1024))
            .configure(routes::configure)
            .wrap_fn(|req, srv| {
                // One line per request: method, route pattern (never the path: it holds the
                // user's number), status, duration.
                let started = Instant::now();
                let method = req.method().to_string();
                let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                let call = srv.call(req);
                async move {
                    let res = call.await?;
                    let status = res.status().as_u16();
                    let ms = started.elapsed().as_millis() as u64;
                    tracing::info!(http.request.method = %method, http.route = %route, http.response.status_code = status, duration_ms = ms, "admin request");
                    Ok(res)
                }
            })
    })
    .disable_signals() // the binary owns signal handling and cancels `shutdown`
    .workers(2)
    .shutdown_timeout(settings.shutdown_timeout().as_secs().max(1));
    Ok(server.listen(listener)?.run())
}
