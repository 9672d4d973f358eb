//! The service's HTTP endpoints: `/healthz`, `/readyz`, `/metrics` (Prometheus text format).
//!
//! Owns: the listener, the handlers, and the encoding of the shared counters ([`Stats`]) and the
//! service's file table as Prometheus metrics with `prometheus-client`. `run --listen` serves the
//! same endpoints.
//! Never: changes a counter or a file's state (it only reads them), or shows a secret: no metric
//! or label carries a key, a token or a request body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::{FileState, ServiceState};

/// Binds `addr` and serves the endpoints until `shutdown`; returns the bound address (for
/// `127.0.0.1:0`).
pub async fn start(addr: &str, state: Arc<ServiceState>, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let mut registry = Registry::default();
    registry.register(
        "vikingsync_request_duration_seconds",
        "Round trip of requests that got an HTTP answer",
        state.stats.request_seconds.0.clone(),
    );
    registry.register_collector(Box::new(StatsCollector(state.clone())));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state((state, Arc::new(registry)));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!("the HTTP endpoints stopped: {e}");
        }
    });
    Ok(bound)
}

type AppState = (Arc<ServiceState>, Arc<Registry>);

async fn readyz(State((state, _)): State<AppState>) -> impl IntoResponse {
    match state.not_ready() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

async fn metrics(State((_, registry)): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode the metrics: {e}\n"),
        ),
    }
}

/// Reads the counters at each scrape: the numbers the summary prints are the numbers served.
#[derive(Debug)]
struct StatsCollector(Arc<ServiceState>);

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = &self.0;
        let s = &state.stats;
        {
            let rows = [
                ("upsert", "applied", s.applied_upsert.load(Relaxed)),
                ("update", "applied", s.applied_update.load(Relaxed)),
                ("delete", "applied", s.applied_delete.load(Relaxed)),
                ("upsert", "rejected", s.rejected_upsert.load(Relaxed)),
                ("update", "rejected", s.rejected_update.load(Relaxed)),
                ("delete", "rejected", s.rejected_delete.load(Relaxed)),
                ("unknown", "rejected", s.rejected_unknown.load(Relaxed)),
            ];
            let c0 = ConstCounter::new(0u64);
            let mut family = e.encode_descriptor(
                "vikingsync_rows",
                "Rows the server applied, or rejected (dead-lettered), by op",
                None,
                c0.metric_type(),
            )?;
            for (op, outcome, n) in rows {
                ConstCounter::new(n).encode(family.encode_family(&[("op", op), ("outcome", outcome)])?)?;
            }
        }
        {
            let by = s.requests_by_status.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let c0 = ConstCounter::new(0u64);
            let mut family = e.encode_descriptor(
                "vikingsync_requests",
                "Requests by HTTP status of the answer (transport: none)",
                None,
                c0.metric_type(),
            )?;
            for (status, n) in by {
                let label = if status == 0 {
                    "transport".to_string()
                } else {
                    status.to_string()
                };
                ConstCounter::new(n).encode(family.encode_family(&[("status", label.as_str())])?)?;
            }
        }
        counter(
            &mut e,
            "vikingsync_retries",
            "Requests sent again",
            s.retries.load(Relaxed),
        )?;
        counter(
            &mut e,
            "vikingsync_throttled",
            "Requests the server throttled",
            s.throttles.load(Relaxed),
        )?;
        counter(
            &mut e,
            "vikingsync_rate_cuts",
            "Congestion events that cut the rate",
            s.rate_cuts.load(Relaxed),
        )?;
        counter(
            &mut e,
            "vikingsync_rows_read",
            "Rows read from the sources",
            s.rows_read.load(Relaxed),
        )?;
        gauge(
            &mut e,
            "vikingsync_in_flight",
            "Requests on the wire now",
            as_i64(s.in_flight.load(Relaxed)),
        )?;
        let rate = match s.rate_now.load(Relaxed) {
            u64::MAX => -1,
            r => as_i64(r),
        };
        gauge(
            &mut e,
            "vikingsync_rate_rows_per_second",
            "The rate controller's fill rate, rows/s (-1: not paced yet)",
            rate,
        )?;
        gauge(
            &mut e,
            "vikingsync_concurrency",
            "Requests that may be in flight (the concurrency controller's limit)",
            as_i64(s.concurrency_now.load(Relaxed)),
        )?;
        let finished = s.applied() + s.rejected.load(Relaxed);
        let lag = s
            .rows_read
            .load(Relaxed)
            .saturating_sub(s.rows_committed.load(Relaxed).min(finished));
        gauge(
            &mut e,
            "vikingsync_checkpoint_lag_rows",
            "Rows read that the last checkpoint does not cover yet",
            as_i64(lag),
        )?;
        {
            let counts = state.file_counts();
            let g0 = ConstGauge::new(0i64);
            let mut family =
                e.encode_descriptor("vikingsync_files", "Source files by state", None, g0.metric_type())?;
            for (st, n) in [
                (FileState::Pending, counts[0]),
                (FileState::Active, counts[1]),
                (FileState::Done, counts[2]),
                (FileState::Failed, counts[3]),
            ] {
                ConstGauge::new(as_i64(n)).encode(family.encode_family(&[("state", st.label())])?)?;
            }
        }
        {
            let g = ConstGauge::new(1i64);
            let mut family =
                e.encode_descriptor("vikingsync_build_info", "Build information", None, g.metric_type())?;
            g.encode(family.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        }
        Ok(())
    }
}
