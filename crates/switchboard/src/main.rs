//! `switchboard`: one binary, one role per process (or all of them, for local use).
//!
//! ```text
//! switchboard ingress     # Meta's webhook endpoint
//! switchboard worker      # inbound messages → LLM → outbound replies
//! switchboard dispatcher  # outbound replies → Graph API; delivery statuses
//! switchboard admin       # the admin / data-subject API (also served by ingress and all)
//! switchboard all         # the three roles in one process
//! switchboard dlq list|show|redrive|purge   # operate the dead-letter queue
//! switchboard tenant pause|resume ID        # stop / restart a tenant's sending
//! ```
//! Configuration comes from `SWITCHBOARD_*` variables (see `docs/configuration.md`).

use std::{process::ExitCode, time::Duration};

mod ops;

use clap::{Parser, Subcommand};
use switchboard_bus::{Bus, BusOptions};
use switchboard_config::{LogFormat, Role, Settings, TenantDirectory, Tenants};
use switchboard_llm::LlmClient;
use switchboard_store::Store;
use switchboard_whatsapp::GraphClient;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "AI assistants on WhatsApp Business: webhook → RabbitMQ → LLM → Graph API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Meta's webhook (SWITCHBOARD_HTTP_ADDR).
    Ingress,
    /// Answer inbound messages with the LLM.
    Worker,
    /// Send replies through the Graph API and record delivery statuses.
    Dispatcher,
    /// Only the admin / data-subject API (SWITCHBOARD_ADMIN_ADDR).
    Admin,
    /// All three roles in one process (local use and demos).
    All,
    /// Inspect and replay the dead-letter queue (and the rejected and held queues).
    Dlq {
        #[command(subcommand)]
        command: ops::DlqCommand,
    },
    /// Pause or resume a tenant's sending.
    Tenant {
        #[command(subcommand)]
        command: ops::TenantCommand,
    },
}

/// The role(s) a service command runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Ingress,
    Worker,
    Dispatcher,
    Admin,
    All,
}

impl Service {
    fn roles(self) -> &'static [Role] {
        match self {
            Service::Ingress => &[Role::Ingress],
            Service::Worker => &[Role::Worker],
            Service::Dispatcher => &[Role::Dispatcher],
            Service::Admin => &[],
            Service::All => &[Role::Ingress, Role::Worker, Role::Dispatcher],
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let service = match &cli.command {
        Command::Ingress => Some(Service::Ingress),
        Command::Worker => Some(Service::Worker),
        Command::Dispatcher => Some(Service::Dispatcher),
        Command::Admin => Some(Service::Admin),
        Command::All => Some(Service::All),
        Command::Dlq { .. } | Command::Tenant { .. } => None,
    };
    let roles = service.map(Service::roles).unwrap_or(&[]);
    let checked = Settings::load().and_then(|s| if service.is_some() { s.validate(roles).map(|()| s) } else { Ok(s) });
    let checked = checked.and_then(|s| {
        let tenants = if service.is_some() {
            Tenants::load(&s).and_then(|t| t.validate(roles).map(|()| t))?
        } else {
            Tenants::from_settings(&s)
        };
        Ok((s, tenants))
    });
    let (settings, tenants) = match checked {
        Ok(s) => s,
        Err(error) => {
            eprintln!("switchboard: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("switchboard: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let result = match (service, cli.command) {
            (Some(service), _) => run(service, settings, tenants).await,
            (None, Command::Dlq { command }) => {
                operate(&settings, "dlq", async |bus, _| ops::dlq(bus, command).await).await
            }
            (None, Command::Tenant { command }) => {
                operate(&settings, "tenant", async |bus, store| ops::tenant(bus, store, command).await).await
            }
            (None, _) => unreachable!("every command is a service or an operation"),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "switchboard stopped on an error");
                eprintln!("switchboard: {error:#}");
                ExitCode::FAILURE
            }
        }
    })
}

fn bus_options(settings: &Settings, name: &str) -> BusOptions {
    BusOptions {
        operation_timeout: settings.publish_timeout(),
        connection_name: format!("switchboard-{name}"),
        retry_steps_ms: switchboard_bus::topology::ladder(settings.send_backoff_base_ms, settings.send_backoff_max_ms),
    }
}

/// Runs an operator command with a connected bus and store.
async fn operate(
    settings: &Settings,
    name: &str,
    op: impl AsyncFnOnce(&Bus, &Store) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let bus = Bus::connect(settings.amqp_url.expose(), &settings.namespace, bus_options(settings, name)).await?;
    let store = Store::connect(settings.redis_url.expose(), &settings.namespace, 2).await?;
    let result = op(&bus, &store).await;
    bus.close().await;
    result
}

async fn run(command: Service, settings: Settings, tenants: Tenants) -> anyhow::Result<()> {
    let format = match settings.log_format {
        LogFormat::Json => switchboard_telemetry::Format::Json,
        LogFormat::Text => switchboard_telemetry::Format::Text,
    };
    let service_name = match command {
        Service::Ingress => "switchboard-ingress",
        Service::Worker => "switchboard-worker",
        Service::Dispatcher => "switchboard-dispatcher",
        Service::Admin => "switchboard-admin",
        Service::All => "switchboard",
    };
    let telemetry = switchboard_telemetry::init(service_name, format);
    switchboard_telemetry::metrics::install();
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));

    let tenants = TenantDirectory::new(tenants);
    tokio::spawn(watch_tenants(settings.clone(), command.roles(), tenants.clone(), shutdown.clone()));
    let bus = Bus::new_lazy(settings.amqp_url.expose(), &settings.namespace, bus_options(&settings, name(command)));
    let Some(store) = connect_store(&settings, &shutdown).await else {
        return Ok(()); // shut down while waiting for Redis
    };

    let probes = async {
        // The worker and dispatcher serve probes and /metrics on their own small port; the
        // ingress (and `all`) serve them on the webhook port.
        if !matches!(command, Service::Worker | Service::Dispatcher | Service::Admin) {
            return Ok(());
        }
        let listener = std::net::TcpListener::bind(settings.metrics_addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.metrics_addr))?;
        let probes =
            switchboard_ingress::probes::Probes { bus: bus.clone(), store: store.clone(), draining: shutdown.clone() };
        switchboard_ingress::probes::serve(listener, probes, shutdown.clone()).await.map_err(anyhow::Error::from)
    };
    let admin = async {
        // The admin API listens apart from the webhook (default 127.0.0.1:9090).
        if !matches!(command, Service::Admin | Service::Ingress | Service::All) {
            return Ok(());
        }
        let listener = std::net::TcpListener::bind(settings.admin_addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.admin_addr))?;
        let pseudonymizer = switchboard_domain::Pseudonymizer::new(settings.pseudonym_key());
        switchboard_admin::run(
            &settings,
            listener,
            store.clone(),
            bus.clone(),
            tenants.clone(),
            pseudonymizer,
            shutdown.clone(),
        )
        .await
        .map_err(anyhow::Error::from)
    };
    let ingress = async {
        if !matches!(command, Service::Ingress | Service::All) {
            return Ok(());
        }
        let listener = std::net::TcpListener::bind(settings.http_addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.http_addr))?;
        switchboard_ingress::run(&settings, listener, bus.clone(), store.clone(), tenants.clone(), shutdown.clone())
            .await
            .map_err(anyhow::Error::from)
    };
    let worker = async {
        if matches!(command, Service::Worker | Service::All) {
            let llm = LlmClient::new(
                &settings.llm_base_url,
                Some(settings.llm_api_key.expose()).filter(|k| !k.is_empty()),
                settings.llm_timeout(),
            )?;
            switchboard_worker::run(&settings, bus.clone(), store.clone(), llm, tenants.clone(), shutdown.clone())
                .await;
        }
        Ok::<_, anyhow::Error>(())
    };
    let dispatcher = async {
        if matches!(command, Service::Dispatcher | Service::All) {
            let graph = GraphClient::new(&settings.graph_api_base, Duration::from_millis(settings.graph_timeout_ms))?;
            switchboard_dispatcher::run(
                &settings,
                bus.clone(),
                store.clone(),
                graph,
                tenants.clone(),
                shutdown.clone(),
            )
            .await;
        }
        Ok::<_, anyhow::Error>(())
    };
    let result = tokio::try_join!(
        stop_all_on_error(probes, &shutdown),
        stop_all_on_error(admin, &shutdown),
        stop_all_on_error(ingress, &shutdown),
        stop_all_on_error(worker, &shutdown),
        stop_all_on_error(dispatcher, &shutdown)
    );
    bus.close().await;
    tracing::info!("switchboard stopped");
    if let Some(t) = telemetry {
        t.shutdown();
    }
    result.map(|_| ())
}

/// A role that fails takes the whole process down (and its supervisor restarts it).
async fn stop_all_on_error<F>(role: F, shutdown: &CancellationToken) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let result = role.await;
    if result.is_err() {
        shutdown.cancel();
    }
    result
}

/// Redis may start after us (compose, Kubernetes): wait for it with backoff until shutdown.
async fn connect_store(settings: &Settings, shutdown: &CancellationToken) -> Option<Store> {
    let mut delay = Duration::from_millis(200);
    loop {
        match Store::connect(settings.redis_url.expose(), &settings.namespace, settings.redis_pool_size).await {
            Ok(store) => return Some(store),
            Err(error) => tracing::warn!(%error, retry_in = ?delay, "Redis unreachable; waiting"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Reloads the tenants on SIGHUP, and when the tenants file changes (checked every 5 s). A file
/// that does not load or validate is refused with an error line; the running set stays.
async fn watch_tenants(
    settings: Settings,
    roles: &'static [Role],
    directory: TenantDirectory,
    shutdown: CancellationToken,
) {
    let file = settings.tenants_file.clone().filter(|f| !f.trim().is_empty());
    let modified = |path: &str| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut seen = file.as_deref().and_then(modified);
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::warn!(%error, "no SIGHUP handler; tenants reload on file change only");
            None
        }
    };
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<bool>();
        let reason = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = signalled => "SIGHUP",
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                let now = file.as_deref().and_then(modified);
                if now == seen {
                    continue;
                }
                seen = now;
                "file changed"
            }
        };
        match Tenants::load(&settings).and_then(|t| t.validate(roles).map(|()| t)) {
            Ok(tenants) => {
                let count = tenants.iter().count();
                directory.replace(tenants);
                tracing::info!(reason, tenants = count, "tenants reloaded");
            }
            Err(error) => tracing::error!(reason, %error, "tenants not reloaded; keeping the running set"),
        }
    }
}

/// SIGTERM or Ctrl-C: graceful shutdown. A second signal exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutdown requested; draining");
    shutdown.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal; exiting now");
    std::process::exit(130);
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn name(service: Service) -> &'static str {
    match service {
        Service::Ingress => "ingress",
        Service::Worker => "worker",
        Service::Dispatcher => "dispatcher",
        Service::Admin => "admin",
        Service::All => "all",
    }
}
