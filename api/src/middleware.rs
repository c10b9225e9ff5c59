//! Request logging: method, path, status and latency of every request.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing::Instrument;

pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    // The path only: query strings may carry file tokens.
    let path = req.path().to_string();
    let span = tracing::info_span!("http_request", %method, %path);
    let res = next.call(req).instrument(span.clone()).await?;
    let _enter = span.enter();
    tracing::info!(
        status = res.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(res)
}
