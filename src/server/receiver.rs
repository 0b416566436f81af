//! `POST {webhook_path}`: authenticate, parse, route, render, store, and only then answer 202.
//!
//! Nothing is half-done: either every delivery of an event is committed together with its
//! event id (202), or nothing is stored and the answer says why (400/401/413/503).

use super::auth::{self, Credentials};
use super::{json_error, AppState};
use crate::domain::EventType;
use crate::event;
use crate::render::Rendered;
use crate::routing;
use crate::store::{now_ms, Accepted, NewDelivery, PingGuard, Role, StoreError};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, IntoResponse, Request, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Labels for `printbell_events_total{type}`: the five known types, else "other", so a sender
/// cannot create unbounded label values.
fn type_label(t: Option<EventType>) -> &'static str {
    t.map_or("other", EventType::as_str)
}

/// Counts a rejection: `printbell_events_total{type="unknown",outcome="rejected"}` (the type is
/// not known before parsing) and `printbell_events_rejected_total{reason}`.
fn count_rejected(event_type: &'static str, reason: &'static str) {
    metrics::counter!("printbell_events_total", "type" => event_type, "outcome" => "rejected")
        .increment(1);
    metrics::counter!("printbell_events_rejected_total", "reason" => reason).increment(1);
}

fn rejected(reason: &'static str, status: StatusCode, message: String) -> Response {
    count_rejected("unknown", reason);
    tracing::info!(status = status.as_u16(), reason, error = %message, "event rejected");
    json_error(status, &message)
}

/// A body not received within this is abandoned (slow or stalled client).
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn busy() -> Response {
    let mut resp = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many events are being handled right now; nothing was stored, send it again shortly",
    );
    resp.headers_mut().insert(
        poem::http::header::RETRY_AFTER,
        poem::http::HeaderValue::from_static("1"),
    );
    resp
}

#[handler]
pub async fn receive(req: &Request, body: Body, state: Data<&Arc<AppState>>) -> Response {
    let Ok(_permit) = state.in_flight.try_acquire() else {
        count_rejected("unknown", "busy");
        return busy();
    };
    let loaded = state.live.get();
    let server = &loaded.config.server;
    let max = server.max_body_bytes as usize;

    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return rejected(
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than max_body_bytes ({max} bytes)"),
        );
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, body.into_bytes_limit(max)).await;
    let Ok(read) = read else {
        return rejected(
            "timeout",
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        );
    };
    let bytes = match read {
        Ok(b) => b,
        Err(poem::error::ReadBodyError::PayloadTooLarge) => {
            return rejected(
                "too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than max_body_bytes ({max} bytes)"),
            )
        }
        Err(e) => {
            return rejected(
                "unreadable",
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        }
    };

    if let Some(secret) = &server.secret {
        let query: HashMap<String, String> = req.params().unwrap_or_default();
        let creds = Credentials {
            query_token: query.get("token").map(String::as_str),
            header_token: req.headers().get(auth::TOKEN_HEADER).map(|v| v.as_bytes()),
            signature: req
                .headers()
                .get(auth::SIGNATURE_HEADER)
                .map(|v| v.as_bytes()),
        };
        if !auth::verify(secret, &creds, &bytes) {
            let why = if creds.query_token.is_none()
                && creds.header_token.is_none()
                && creds.signature.is_none()
            {
                "the request carries no secret: add ?token=, the X-Printbell-Token header or an X-Printbell-Signature"
            } else {
                "the secret or signature is wrong"
            };
            return rejected("unauthorized", StatusCode::UNAUTHORIZED, why.to_string());
        }
    }

    let event = match event::parse(&bytes) {
        Ok(e) => e,
        Err(e) => return rejected("invalid", StatusCode::BAD_REQUEST, e.0),
    };

    let targets = routing::route(&loaded.config, &event);
    let rendered: Vec<Rendered> = loaded.renderer.render_all(&loaded.config, &targets, &event);
    for w in rendered.iter().flat_map(|r| r.warnings.iter()) {
        tracing::warn!(event = %event.id, warning = %w, "template problem");
    }
    // Only known event types are routed: an unknown one stores its id (dedup) and nothing else.
    let mut deliveries = Vec::with_capacity(rendered.len());
    if let Some(event_type) = event.event_type {
        let (images_done, _) = event.generation.progress();
        let label = event
            .generation
            .name
            .as_deref()
            .filter(|n| !n.trim().is_empty());
        let label = label.unwrap_or(&event.generation.id);
        for r in &rendered {
            let guard = r.holdable.as_ref().map(|h| PingGuard {
                key: h.key.clone(),
                every_ms: i64::try_from(h.every.as_millis()).unwrap_or(i64::MAX),
                label: label.to_string(),
            });
            let delivery = |role, body: &serde_json::Value| NewDelivery {
                event_type,
                generation_id: event.generation.id.clone(),
                destination: r.destination.clone(),
                kind: r.kind,
                mode: r.mode,
                role,
                body: body.to_string(),
                quiet_body: r.quiet_body.as_ref().map(|b| b.to_string()),
                images_done,
                guard: guard.clone(),
            };
            deliveries.push(delivery(Role::Message, &r.body));
            if let Some(ping) = &r.ping_body {
                deliveries.push(NewDelivery {
                    quiet_body: None,
                    ..delivery(Role::Ping, ping)
                });
            }
        }
    }

    let label = type_label(event.event_type);
    match state.store.accept(&event.id, deliveries, now_ms()).await {
        Ok(Accepted::New(_)) => {
            for r in &rendered {
                state.workers.wake(&r.destination);
            }
            metrics::counter!("printbell_events_total", "type" => label, "outcome" => "accepted")
                .increment(1);
            let names: Vec<&str> = rendered.iter().map(|r| r.destination.as_str()).collect();
            tracing::info!(event = %event.id, event_type = %event.type_name, generation = %event.generation.id, deliveries = rendered.len(), destinations = ?names, "event accepted");
            (
                StatusCode::ACCEPTED,
                poem::web::Json(json!({"id": event.id, "deliveries": rendered.len()})),
            )
                .into_response()
        }
        Ok(Accepted::Duplicate) => {
            metrics::counter!("printbell_events_total", "type" => label, "outcome" => "duplicate")
                .increment(1);
            tracing::info!(event = %event.id, event_type = %event.type_name, generation = %event.generation.id, "duplicate event; nothing sent");
            (
                StatusCode::OK,
                poem::web::Json(json!({"id": event.id, "duplicate": true})),
            )
                .into_response()
        }
        Err(e) => {
            let retry_after = if matches!(e, StoreError::Busy) {
                "1"
            } else {
                "5"
            };
            tracing::error!(event = %event.id, error = %e, "could not store the event");
            count_rejected(label, "store_unavailable");
            let mut resp = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot accept the event right now; nothing was stored, send it again later",
            );
            if let Ok(v) = retry_after.parse() {
                resp.headers_mut()
                    .insert(poem::http::header::RETRY_AFTER, v);
            }
            resp
        }
    }
}
