//! In-process Prometheus metrics: what this process did since it started (jobs it
//! finished, bytes it backed up, requests it made to storage, HTTP requests it served).
//! One registry per process; the API's and the worker's `/metrics` listeners render it
//! (the API adds the figures it reads from PostgreSQL).
//!
//! Names and labels are documented in docs/OPERATIONS.md; dashboards depend on them.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Job durations: 0.1 s to 4 h.
const JOB_BUCKETS: [f64; 16] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
    14400.0,
];

/// Storage requests: 1 ms to 2 min (a pack upload over a slow link).
const STORAGE_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// HTTP requests: 5 ms to 5 min (uploads).
const HTTP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Labels of job figures (also the API's `strata_jobs` gauge).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: String,
    pub status: String,
}

/// Labels of per-source figures (also the API's last-success gauge).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StorageLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    job_duration: HistogramFamily<JobLabels>,
    bytes_read: Family<SourceLabels, Counter>,
    bytes_stored: Family<SourceLabels, Counter>,
    bytes_deduplicated: Family<SourceLabels, Counter>,
    storage_requests: Family<StorageLabels, Counter>,
    storage_duration: HistogramFamily<OperationLabels>,
    http_duration: HistogramFamily<HttpLabels>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let m = Self {
            registry: Registry::default(),
            job_duration: Family::new_with_constructor(|| Histogram::new(JOB_BUCKETS)),
            bytes_read: Family::default(),
            bytes_stored: Family::default(),
            bytes_deduplicated: Family::default(),
            storage_requests: Family::default(),
            storage_duration: Family::new_with_constructor(|| Histogram::new(STORAGE_BUCKETS)),
            http_duration: Family::new_with_constructor(|| Histogram::new(HTTP_BUCKETS)),
        };
        let mut registry = Registry::with_prefix("strata");
        registry.register(
            "job_duration_seconds",
            "Jobs this worker finished, by kind and final status (succeeded, failed, cancelled), from the job's first start to its end",
            m.job_duration.clone(),
        );
        // Counters: the encoder adds `_total`.
        registry.register(
            "backup_bytes_read",
            "Bytes backup and import jobs read from the source (files read and database dumps)",
            m.bytes_read.clone(),
        );
        registry.register(
            "backup_bytes_stored",
            "Bytes backup and import jobs added to storage (new packs, after deduplication, compression and encryption)",
            m.bytes_stored.clone(),
        );
        registry.register(
            "backup_bytes_deduplicated",
            "Bytes backup and import jobs read but did not store again, their chunk being in the repository already",
            m.bytes_deduplicated.clone(),
        );
        registry.register(
            "storage_requests",
            "Requests to the object store by operation and outcome (ok, not_found, error)",
            m.storage_requests.clone(),
        );
        registry.register(
            "storage_request_duration_seconds",
            "Time of requests to the object store, retries included, by operation",
            m.storage_duration.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests served, to the response's head, by method, route pattern and status",
            m.http_duration.clone(),
        );
        Self { registry, ..m }
    }
}

/// What a backup (or import) job read and stored, for the byte counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupBytes {
    /// The source's name.
    pub source: String,
    pub read: u64,
    pub stored: u64,
    pub deduplicated: u64,
}

/// A job ended with its final `status` (`succeeded`, `failed`, `cancelled`), `elapsed`
/// after it first started. A backup or import that succeeded also counts its `bytes`.
pub fn job_finished(kind: &str, status: &str, elapsed: Duration, bytes: Option<&BackupBytes>) {
    let m = metrics();
    m.job_duration
        .get_or_create(&JobLabels {
            kind: kind.to_string(),
            status: status.to_string(),
        })
        .observe(elapsed.as_secs_f64());
    if let Some(bytes) = bytes {
        backup_bytes(bytes);
    }
}

/// Adds a backup's bytes to the per-source counters.
pub fn backup_bytes(b: &BackupBytes) {
    let m = metrics();
    let labels = SourceLabels {
        source: b.source.clone(),
    };
    m.bytes_read.get_or_create(&labels).inc_by(b.read);
    m.bytes_stored.get_or_create(&labels).inc_by(b.stored);
    m.bytes_deduplicated
        .get_or_create(&labels)
        .inc_by(b.deduplicated);
}

/// How a storage request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageOutcome {
    Ok,
    NotFound,
    Error,
}

impl StorageOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Error => "error",
        }
    }
}

/// One request to the object store (`operation`: put, get, get_range, head, list,
/// delete, check, put_file, get_to_file).
pub fn storage_request(operation: &'static str, outcome: StorageOutcome, elapsed: Duration) {
    let m = metrics();
    m.storage_requests
        .get_or_create(&StorageLabels {
            operation,
            outcome: outcome.as_str(),
        })
        .inc();
    m.storage_duration
        .get_or_create(&OperationLabels { operation })
        .observe(elapsed.as_secs_f64());
}

/// One HTTP request served. `route` is the matched route's pattern
/// (`/api/v1/backup/{id}`), or `unmatched`: never the raw path, which may carry ids or
/// tokens and would make one series per request.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    metrics()
        .http_duration
        .get_or_create(&HttpLabels {
            method: method.to_string(),
            route: route.to_string(),
            status: status.to_string(),
        })
        .observe(elapsed.as_secs_f64());
}

/// Appends the process's metrics to `out` in the OpenMetrics text format, without the
/// final `# EOF` (for a listener that adds metrics of its own).
pub fn encode_into(out: &mut String) -> std::fmt::Result {
    encode_registry(out, &metrics().registry)
}

/// The process's metrics in the OpenMetrics text format, ending with `# EOF`.
pub fn render() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode_into(&mut out);
    let _ = encode_eof(&mut out);
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_names_and_labels() {
        job_finished(
            "backup",
            "succeeded",
            Duration::from_millis(1500),
            Some(&BackupBytes {
                source: "unit-test-source".into(),
                read: 300,
                stored: 100,
                deduplicated: 200,
            }),
        );
        job_finished("restore", "failed", Duration::from_secs(2), None);
        storage_request("put", StorageOutcome::Ok, Duration::from_millis(3));
        storage_request("get", StorageOutcome::NotFound, Duration::from_millis(1));
        http_request(
            "POST",
            "/api/v1/backup/create",
            202,
            Duration::from_millis(7),
        );
        let text = render();
        for expected in [
            r#"strata_job_duration_seconds_count{kind="backup",status="succeeded"} "#,
            r#"strata_job_duration_seconds_count{kind="restore",status="failed"} "#,
            r#"strata_backup_bytes_read_total{source="unit-test-source"} 300"#,
            r#"strata_backup_bytes_stored_total{source="unit-test-source"} 100"#,
            r#"strata_backup_bytes_deduplicated_total{source="unit-test-source"} 200"#,
            r#"strata_storage_requests_total{operation="put",outcome="ok"} "#,
            r#"strata_storage_requests_total{operation="get",outcome="not_found"} "#,
            r#"strata_storage_request_duration_seconds_count{operation="put"} "#,
            r#"strata_http_request_duration_seconds_count{method="POST",route="/api/v1/backup/create",status="202"} "#,
            "# TYPE strata_job_duration_seconds histogram",
            "# TYPE strata_backup_bytes_read counter",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}
