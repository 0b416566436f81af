//! `/healthz`, `/readyz` and `/metrics` (Prometheus text through `metrics-exporter-prometheus`).
//! Metric labels are destination names, never URLs.

use super::{json_error, AppState};
use crate::store::now_ms;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, IntoResponse, Response};
use std::sync::{Arc, OnceLock};

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide metrics recorder once; later calls return the same handle.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let latency = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("printbell_delivery_latency_seconds".into()),
                    &latency,
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Makes every series a dashboard or alert expects exist from the first scrape, at 0, instead
/// of appearing only after its first event (an absent series breaks `rate()` and alerts).
fn register_zeros(destinations: &[String]) {
    for ty in crate::domain::EventType::names() {
        for outcome in ["accepted", "duplicate"] {
            metrics::counter!("printbell_events_total", "type" => ty, "outcome" => outcome)
                .increment(0);
        }
    }
    metrics::counter!("printbell_events_total", "type" => "unknown", "outcome" => "rejected")
        .increment(0);
    for dest in destinations {
        for outcome in ["done", "retried", "rate_limited", "dead", "superseded"] {
            metrics::counter!("printbell_deliveries_total", "destination" => dest.clone(), "outcome" => outcome)
                .increment(0);
        }
        for action in ["posted", "edited", "reposted"] {
            metrics::counter!("printbell_messages_total", "destination" => dest.clone(), "action" => action)
                .increment(0);
        }
    }
}

#[handler]
pub async fn healthz() -> &'static str {
    "ok"
}

#[handler]
pub async fn readyz(state: Data<&Arc<AppState>>) -> Response {
    match state.store.readiness(now_ms()).await {
        Ok(()) => "ready".into_response(),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the store is not writable: {e}"),
        ),
    }
}

#[handler]
pub async fn metrics_endpoint(state: Data<&Arc<AppState>>) -> Response {
    let Some(handle) = recorder() else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "metrics are not available");
    };
    let now = now_ms();
    let configured: Vec<String> = state
        .live
        .get()
        .config
        .destinations
        .keys()
        .cloned()
        .collect();
    register_zeros(&configured);
    if let Ok(depths) = state.store.queue_depths().await {
        for name in &configured {
            if !depths.iter().any(|d| &d.destination == name) {
                metrics::gauge!("printbell_queue_depth", "destination" => name.clone()).set(0.0);
                metrics::gauge!("printbell_oldest_pending_seconds", "destination" => name.clone())
                    .set(0.0);
            }
        }
        for d in depths {
            metrics::gauge!("printbell_queue_depth", "destination" => d.destination.clone())
                .set(d.pending as f64);
            metrics::gauge!("printbell_oldest_pending_seconds", "destination" => d.destination)
                .set((now - d.oldest_received_at).max(0) as f64 / 1000.0);
        }
    }
    handle.run_upkeep();
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}
