//! The ingress role: Meta's webhook endpoint.
//!
//! `GET /webhooks/whatsapp` answers the verification handshake; `POST /webhooks/whatsapp`
//! checks `X-Hub-Signature-256` over the raw body, splits the batch into one event per user
//! message and per status, publishes them all with publisher confirms and answers 200 only
//! after every confirm (503 otherwise, so Meta retries). `GET /healthz` and `GET /readyz` are
//! the probes.
//!
//! * [`routes`]: the handlers;
//! * [`error`]: the one place where failures become HTTP statuses;
//! * [`run`]: builds the actix-web server on a given listener and runs it until shutdown.

mod error;
pub mod probes;
mod routes;

use std::net::TcpListener;

use actix_web::{dev::Server, web, App, HttpServer};
use switchboard_bus::Bus;
use switchboard_config::{Settings, TenantDirectory};
use switchboard_domain::Pseudonymizer;
use switchboard_store::Store;
use tokio_util::sync::CancellationToken;

pub use error::WebhookError;

/// Shared state of the handlers.
pub struct IngressState {
    pub bus: Bus,
    pub store: Store,
    pub tenants: TenantDirectory,
    pub pseudonymizer: Pseudonymizer,
    pub max_body_bytes: usize,
    /// Cancelled when shutdown begins: readiness turns false at once.
    pub draining: CancellationToken,
}

/// Serves the webhook on `listener` until `shutdown` is cancelled, then stops accepting and
/// lets in-flight requests finish (each either confirmed-and-200 or 503).
pub async fn run(
    settings: &Settings,
    listener: TcpListener,
    bus: Bus,
    store: Store,
    tenants: TenantDirectory,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = web::Data::new(IngressState {
        bus,
        store,
        tenants,
        pseudonymizer: Pseudonymizer::new(settings.pseudonym_key()),
        max_body_bytes: settings.max_body_bytes,
        draining: shutdown.clone(),
    });
    let addr = listener.local_addr()?;
    let server = build_server(settings, listener, state)?;
    let handle = server.handle();
    tracing::info!(%addr, "ingress listening");
    let stopper = tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("ingress stopping");
        handle.stop(true).await;
    });
    let result = server.await;
    stopper.abort();
    result
}

/// Builds the server synchronously (the builder is not `Send`; the returned server is).
fn build_server(settings: &Settings, listener: TcpListener, state: web::Data<IngressState>) -> std::io::Result<Server> {
    let mut server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes::configure))
        .disable_signals() // the binary owns signal handling and cancels `shutdown`
        .shutdown_timeout(settings.shutdown_timeout().as_secs().max(1));
    if settings.http_workers > 0 {
        server = server.workers(settings.http_workers);
    }
    Ok(server.listen(listener)?.run())
}
