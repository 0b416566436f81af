//! The HTTP interface (poem): the webhook receiver and the operations endpoints.

pub mod auth;
pub mod guard;
pub mod ops;
pub mod receiver;

use crate::delivery::Workers;
use crate::loaded::Live;
use crate::store::Store;
use poem::http::StatusCode;
use poem::{get, post, Endpoint, EndpointExt, IntoResponse, Response, Route};
use std::sync::Arc;

/// Webhook requests handled at once; more get 503 + Retry-After instead of queueing memory.
pub const MAX_CONCURRENT_EVENTS: usize = 512;

/// What the handlers share.
pub struct AppState {
    pub live: Live,
    pub store: Store,
    pub workers: Workers,
    pub in_flight: tokio::sync::Semaphore,
}

impl AppState {
    pub fn new(live: Live, store: Store, workers: Workers) -> AppState {
        AppState {
            live,
            store,
            workers,
            in_flight: tokio::sync::Semaphore::new(MAX_CONCURRENT_EVENTS),
        }
    }
}

/// Records `printbell_http_request_duration_seconds{path, status}`; path is a fixed label
/// (webhook, healthz, readyz, metrics, other), never the raw request path.
async fn timed<E: Endpoint>(
    ep: E,
    req: poem::Request,
    webhook_path: std::sync::Arc<str>,
) -> poem::Result<Response> {
    let start = std::time::Instant::now();
    let label = match req.uri().path() {
        p if p == &*webhook_path => "webhook",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ => "other",
    };
    let resp = ep.call(req).await.map(IntoResponse::into_response);
    let status = match &resp {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.status().as_u16(),
    };
    metrics::histogram!("printbell_http_request_duration_seconds", "path" => label, "status" => status.to_string())
        .record(start.elapsed().as_secs_f64());
    resp
}

/// `{"error": "..."}` with a status.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        poem::web::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// The routes. The webhook path is read at start (changing it needs a restart).
pub fn app(state: Arc<AppState>, webhook_path: &str, with_metrics: bool) -> impl Endpoint {
    let mut route = Route::new()
        .at(webhook_path, post(receiver::receive))
        .at("/healthz", get(ops::healthz))
        .at("/readyz", get(ops::readyz));
    if with_metrics {
        route = route.at("/metrics", get(ops::metrics_endpoint));
    }
    let path: std::sync::Arc<str> = webhook_path.into();
    let allow_path = path.clone();
    route
        .data(state)
        .around(move |ep, req| timed(ep, req, path.clone()))
        .catch_error(|_: poem::error::NotFoundError| async {
            json_error(StatusCode::NOT_FOUND, "no such path")
        })
        .catch_error(|_: poem::error::MethodNotAllowedError| async {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this path",
            )
        })
        .around(move |ep, req| with_allow(ep, req, allow_path.clone()))
}

/// Adds the `Allow` header HTTP requires on a 405 (the webhook path takes POST, the rest GET),
/// and logs requests to a wrong path or with a wrong method: "no log line at all" must mean
/// nothing reached printbell. The path is logged without its query, which may hold the token.
async fn with_allow<E: Endpoint>(
    ep: E,
    req: poem::Request,
    webhook_path: std::sync::Arc<str>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let allow = if path == *webhook_path {
        "POST"
    } else {
        "GET, HEAD"
    };
    let mut resp = ep.call(req).await?.into_response();
    let shown = crate::render::text::truncate(&path, 200);
    match resp.status() {
        StatusCode::METHOD_NOT_ALLOWED => {
            tracing::info!(%method, path = %shown, status = 405, allow, "request with a method this path does not take");
            resp.headers_mut().insert(
                poem::http::header::ALLOW,
                poem::http::HeaderValue::from_static(allow),
            );
        }
        StatusCode::NOT_FOUND => {
            tracing::info!(%method, path = %shown, status = 404, webhook_path = %webhook_path, "request to an unknown path");
        }
        _ => {}
    }
    Ok(resp)
}

/// Only `/metrics`, for `[server] metrics_listen`.
pub fn metrics_app(state: Arc<AppState>) -> impl Endpoint {
    Route::new()
        .at("/metrics", get(ops::metrics_endpoint))
        .data(state)
}
