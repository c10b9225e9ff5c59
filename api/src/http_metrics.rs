//! Times every request for `strata_http_request_duration_seconds{method,route,status}`.
//! The route is the matched pattern (`/api/v1/backup/{id}`), `unmatched` when no route
//! matched: never the raw path, which may carry ids or tokens.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

/// The `route` label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = method_label(req.method());
    // Before routing only the raw path is known, and it may spell a route differently
    // (`/api/v1/%6Beys`) from the router's decoded one: ask the request once routed.
    // (Holding a clone of the request across routing is not allowed: the router needs
    // it unshared.)
    let res = next.call(req).await;
    let (status, route) = match &res {
        Ok(res) => (res.status(), res.request().match_pattern()),
        Err(e) => (e.as_response_error().status_code(), None),
    };
    strata_telemetry::metrics::http_request(
        method,
        route.as_deref().unwrap_or(UNMATCHED),
        status.as_u16(),
        started.elapsed(),
    );
    res
}

/// The method, or `OTHER` for one the API has no route for (a client could otherwise
/// make up a series per request).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
