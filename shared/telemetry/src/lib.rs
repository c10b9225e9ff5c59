//! Logs and traces.
//!
//! Every process installs one `tracing` subscriber with three layers: the `RUST_LOG`
//! filter, an OpenTelemetry layer, and the log writer (text, or JSON lines carrying
//! `trace_id`, `span_id` and the fields of the enclosing spans, `job_id` among them).
//!
//! Trace ids exist whether or not traces are exported, so a job's `trace_id` always
//! ties the API's and the workers' log lines together. Spans leave the process only
//! when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set:
//! then they are exported over OTLP/HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf`,
//! the default, or `http/json`) in batches (`OTEL_BSP_*`). `OTEL_SERVICE_NAME`
//! overrides the service name (`strata-api`, `strata-worker`); `OTEL_SDK_DISABLED=true`
//! or `OTEL_TRACES_EXPORTER=none` keep them in.
//!
//! The W3C trace context crosses process boundaries as a map of headers
//! (`traceparent`, `tracestate`): from an HTTP request into the job row and its outbox
//! row, from the outbox into the AMQP message headers, from there into the worker.

pub mod metrics;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::{Map, Value};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt as tfmt, EnvFilter, Layer};

/// Keeps the tracer provider; [`Telemetry::shutdown`] flushes spans still buffered.
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports what is buffered and stops the exporter (bounded to a few seconds, so an
    /// unreachable collector cannot hold up a shutdown).
    pub fn shutdown(&self) {
        // The batch processor exports what it holds as part of its shutdown.
        let _ = self.provider.shutdown_with_timeout(Duration::from_secs(5));
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether the standard variables ask for spans to be exported.
pub fn otlp_configured() -> bool {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled
        && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn tracer_provider(service: &'static str) -> (SdkTracerProvider, bool, Option<String>) {
    let mut resource = Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service);
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    if !otlp_configured() {
        return (builder.build(), false, None);
    }
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => (builder.with_batch_exporter(exporter).build(), true, None),
        // A bad exporter setting must not stop the service: it runs, says why, and
        // keeps its spans in.
        Err(e) => (builder.build(), false, Some(e.to_string())),
    }
}

/// The filter of logs and spans: `RUST_LOG` (default `info`, quieter for chatty
/// libraries). Strata's spans carry a job's trace, so Strata's own crates stay at
/// `info` at least when `RUST_LOG` asks for less (`RUST_LOG=warn` quiets the
/// libraries; Strata's spans, trace ids and its own lines remain).
fn filter() -> EnvFilter {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info,sqlx=warn,lapin=warn,aws=warn".to_string());
    let parsed = EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,lapin=warn,aws=warn"));
    let below_info = parsed
        .max_level_hint()
        .is_some_and(|max| max < LevelFilter::INFO);
    if below_info {
        // A directive's target matches by prefix: `strata` is every `strata_*` crate.
        EnvFilter::new(format!("{spec},strata=info"))
    } else {
        parsed
    }
}

/// Installs the global subscriber and tracer provider: `RUST_LOG` filters (default
/// `info`), `format` is `json` or `text`.
pub fn init(service: &'static str, format: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (provider, exporting, exporter_error) = tracer_provider(service);
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service))
        .with_location(false)
        .with_threads(false);
    let writer = if format == "json" {
        tfmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tfmt::layer().with_writer(std::io::stderr).boxed()
    };
    let installed = tracing_subscriber::registry()
        .with(filter())
        .with(otel)
        .with(writer)
        .try_init()
        .is_ok();
    if installed {
        tracing::info!(
            service,
            version = env!("CARGO_PKG_VERSION"),
            traces_exported = exporting,
            "starting"
        );
        if let Some(e) = exporter_error {
            tracing::warn!(error = %e, "the OTLP trace exporter could not be built; traces stay in");
        }
    }
    Telemetry {
        provider,
        exporting,
    }
}

/// The W3C headers (`traceparent`, `tracestate`) of a span's context, to carry it to
/// another process. Empty when the span has no valid context.
pub fn headers_of(span: &tracing::Span) -> HashMap<String, String> {
    let cx = span.context();
    let mut headers = HashMap::new();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut headers);
    }
    headers
}

/// Makes `span` a child of the context in `headers` (ignored when they carry none).
/// Call it before the span is first entered.
pub fn set_parent_from(span: &tracing::Span, headers: &HashMap<String, String>) {
    let cx = TraceContextPropagator::new().extract(headers);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The 32-hex trace id of `span`, when it has one.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Records `trace_id` and `span_id` on `span`, which must declare both fields (as
/// `tracing::field::Empty`), once its parent is set.
pub fn record_ids(span: &tracing::Span) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", sc.trace_id().to_string().as_str());
        span.record("span_id", sc.span_id().to_string().as_str());
    }
}

/// Renames a span that has already started (its OpenTelemetry span exists once its ids
/// were read): `otel.name` recorded later reaches only spans still being built.
pub fn rename(span: &tracing::Span, name: String) {
    span.record("otel.name", name.as_str());
    span.context().span().update_name(name);
}

/// The trace of the current span, as a job records it: its id and its W3C headers.
pub fn current_trace() -> (Option<String>, HashMap<String, String>) {
    let span = tracing::Span::current();
    (trace_id_of(&span), headers_of(&span))
}

/// JSON lines: `timestamp`, `level`, `target`, `message`, the event's fields, the
/// fields of every enclosing span (the innermost wins) and `span` (the innermost span's
/// name). The spans that start a process's part of a trace (a request, a job, a
/// publish) record their `trace_id` and `span_id` as fields (see [`record_ids`]), so
/// every line written inside them carries both. (Asking the OpenTelemetry layer from
/// inside an event would re-enter the subscriber.)
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_string()));
        let mut leaf = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields) {
                        for (k, v) in map {
                            // `otel.*` fields only steer the exporter.
                            if !k.starts_with("otel.") {
                                line.insert(k, v);
                            }
                        }
                    }
                }
                drop(ext);
                leaf = Some(span.name());
            }
        }
        if let Some(name) = leaf {
            line.insert("span".into(), Value::String(name.to_string()));
        }
        let mut visitor = JsonVisitor(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_trace_of_their_span() {
        let buf = Buf::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(filter())
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tfmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLines)
                    .with_writer(buf.clone())
                    .boxed(),
            );
        tracing::subscriber::with_default(subscriber, || {
            let parent = tracing::info_span!(
                "request",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty
            );
            record_ids(&parent);
            let headers = headers_of(&parent);
            assert!(headers.contains_key("traceparent"), "{headers:?}");
            let _g = parent.enter();
            let (id, h) = current_trace();
            assert!(id.is_some(), "{h:?}");
            tracing::info!(status = 202, "request");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("\"message\":\"request\""), "{text}");
        assert!(text.contains("trace_id"), "{text}");
    }

    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn headers_round_trip_between_spans() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let parent = tracing::info_span!("request");
            let headers = headers_of(&parent);
            let tp = headers.get("traceparent").expect("traceparent");
            let trace_id = trace_id_of(&parent).expect("trace id");
            assert!(tp.contains(&trace_id), "{tp} carries {trace_id}");
            // Another process: a span made a child of those headers shares the trace.
            let child = tracing::info_span!("job");
            set_parent_from(&child, &headers);
            assert_eq!(trace_id_of(&child), Some(trace_id));
            // No headers: a new trace.
            let other = tracing::info_span!("other");
            set_parent_from(&other, &HashMap::new());
            assert_ne!(trace_id_of(&other), trace_id_of(&parent));
        });
    }
}
