//! The HTTP interface (poem): the webhook receiver and the operations endpoints.

pub mod auth;
pub mod ops;
pub mod receiver;

use crate::delivery::Workers;
use crate::loaded::Live;
use crate::store::Store;
use poem::http::StatusCode;
use poem::{get, post, Endpoint, EndpointExt, IntoResponse, Response, Route};
use std::sync::Arc;

/// What the handlers share.
pub struct AppState {
    pub live: Live,
    pub store: Store,
    pub workers: Workers,
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
    route
        .data(state)
        .catch_error(|_: poem::error::NotFoundError| async {
            json_error(StatusCode::NOT_FOUND, "no such path")
        })
        .catch_error(|_: poem::error::MethodNotAllowedError| async {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this path",
            )
        })
}

/// Only `/metrics`, for `[server] metrics_listen`.
pub fn metrics_app(state: Arc<AppState>) -> impl Endpoint {
    Route::new()
        .at("/metrics", get(ops::metrics_endpoint))
        .data(state)
}
