//! The Prometheus recorder: installed once per process; every role's `/metrics` renders it.
//! The series themselves are recorded with the `metrics` macros where things happen; they are
//! listed in `docs/observability.md`. Labels are bounded: tenant ids, outcomes, error codes,
//! queue names — never identities.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Buckets for counts of messages per turn.
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0];

/// Latency buckets (seconds) for every `*_seconds` histogram: 1 ms … 60 s.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Installs the global recorder (first call) and returns its handle. `None` only if another
/// recorder was installed by someone else.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("switchboard_turn_messages".into()), COUNT_BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            // Histograms need periodic upkeep; a thread keeps it off the async runtime.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// The Prometheus text exposition of every series (empty if no recorder is installed).
pub fn render() -> String {
    HANDLE.get().and_then(|h| h.as_ref()).map(PrometheusHandle::render).unwrap_or_default()
}
