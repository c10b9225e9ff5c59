//! Request ids, request spans and logging: every request gets an id (`x-request-id`),
//! runs in an `http_request` span (the root of the trace of any job it creates, or a
//! child of the caller's `traceparent`), and is logged with its method, route, status
//! and latency.

use std::collections::HashMap;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use strata_telemetry as telemetry;
use tracing::Instrument;

use crate::http_metrics::UNMATCHED;

/// The request's id, for logs and the audit log.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Gives every request an id, answered in `x-request-id` whatever the outcome.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.call(req).await?;
    res.headers_mut().insert(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_str(&id).expect("a uuid is a header value"),
    );
    Ok(res)
}

pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    // The path only: query strings may carry file tokens.
    let path = req.path().to_string();
    // The route's pattern names the span (`POST /api/v1/backup/create`), never the
    // path, which holds ids. Only the router knows the route: the route's own
    // authorization records it (crate::auth::authorize); a request no route matched is
    // named `unmatched` once it is answered.
    let span = tracing::info_span!(
        "http_request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        %method,
        %path,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let mut carrier = HashMap::new();
    for name in ["traceparent", "tracestate"] {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            carrier.insert(name.to_string(), v.to_string());
        }
    }
    telemetry::set_parent_from(&span, &carrier);
    telemetry::record_ids(&span);
    let res = next.call(req).instrument(span.clone()).await?;
    if res.request().match_pattern().is_none() {
        span.record("http.route", UNMATCHED);
        telemetry::rename(&span, format!("{method} {UNMATCHED}"));
    }
    let status = res.status().as_u16();
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let _enter = span.enter();
    tracing::info!(
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(res)
}
