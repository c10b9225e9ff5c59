//! Request spans and logging: every request runs in an `http_request` span (the root of
//! the trace of any job it creates, or a child of the caller's `traceparent`), and is
//! logged with its method, route, status and latency.

use std::collections::HashMap;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use strata_shared::telemetry;
use tracing::Instrument;

pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    // The path only: query strings may carry file tokens.
    let path = req.path().to_string();
    // The route's pattern names the span (`POST /api/v1/backup/create`), never the
    // path, which holds ids.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
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
