//! Probes and metrics: `/healthz` (alive), `/readyz` (broker and Redis reachable, not draining)
//! and `/metrics` (Prometheus). The ingress serves them on its own port; [`serve`] runs them on
//! a separate listener for the worker and dispatcher (`SWITCHBOARD_METRICS_ADDR`).

use std::net::TcpListener;

use actix_web::{dev::Server, web, App, HttpResponse, HttpServer};
use switchboard_bus::Bus;
use switchboard_store::Store;
use tokio_util::sync::CancellationToken;

/// What readiness looks at.
#[derive(Clone)]
pub struct Probes {
    pub bus: Bus,
    pub store: Store,
    /// Cancelled when the process starts draining.
    pub draining: CancellationToken,
}

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

pub(crate) async fn metrics() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(switchboard_telemetry::metrics::render())
}

pub(crate) async fn readiness(bus: &Bus, store: &Store, draining: &CancellationToken) -> HttpResponse {
    let draining = draining.is_cancelled();
    let (broker, redis) = tokio::join!(bus.is_ready(), async { store.ping().await.is_ok() });
    let body = serde_json::json!({ "broker": broker, "redis": redis, "draining": draining });
    if broker && redis && !draining {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn readyz(probes: web::Data<Probes>) -> HttpResponse {
    readiness(&probes.bus, &probes.store, &probes.draining).await
}

/// Serves the probes and `/metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, probes: Probes, shutdown: CancellationToken) -> std::io::Result<()> {
    let server = build(listener, probes)?;
    let handle = server.handle();
    let stopper = tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    let result = server.await;
    stopper.abort();
    result
}

fn build(listener: TcpListener, probes: Probes) -> std::io::Result<Server> {
    let data = web::Data::new(probes);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .disable_signals()
    .workers(1)
    .listen(listener)?
    .run())
}
