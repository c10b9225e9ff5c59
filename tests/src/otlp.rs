//! An OTLP/HTTP trace receiver for tests: it accepts `POST /v1/traces` in the JSON
//! encoding (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) from the Strata processes and
//! keeps every span in memory, so a test can look at the traces the real API and
//! workers exported.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One exported span, reduced to what tests look at.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The span's attributes, as JSON values (strings, numbers, booleans).
    pub attributes: serde_json::Map<String, Value>,
}

#[derive(Clone)]
pub struct Receiver {
    /// The base URL to put in `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1 until the test ends.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let keep = spans.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, keep.clone()));
            }
        });
        Self { endpoint, spans }
    }

    /// A collector that accepts connections and never answers: exports hang until the
    /// exporter's timeout. Returns its base URL.
    pub async fn black_hole() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        endpoint
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}

/// Serves HTTP/1.1 requests on one connection (the exporter keeps it alive).
async fn serve(mut stream: TcpStream, spans: Arc<Mutex<Vec<Span>>>) {
    let mut buf = Vec::new();
    loop {
        // Read the head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        let ok = head.starts_with("POST /v1/traces");
        if ok {
            if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                spans.lock().unwrap().extend(parse(&json));
            }
        }
        let reply = if ok {
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        } else {
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn value_of(v: &Value) -> Value {
    for key in ["stringValue", "boolValue", "doubleValue"] {
        if let Some(x) = v.get(key) {
            return x.clone();
        }
    }
    if let Some(x) = v.get("intValue") {
        // int64 is a string in OTLP JSON.
        return x
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .map(Value::from)
            .unwrap_or_else(|| x.clone());
    }
    v.clone()
}

fn attributes(list: Option<&Value>) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for kv in list.and_then(Value::as_array).into_iter().flatten() {
        if let (Some(k), Some(v)) = (kv["key"].as_str(), kv.get("value")) {
            out.insert(k.to_string(), value_of(v));
        }
    }
    out
}

/// The spans of an `ExportTraceServiceRequest` in its JSON encoding.
pub fn parse(json: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in json["resourceSpans"].as_array().into_iter().flatten() {
        let resource = attributes(rs["resource"].get("attributes"));
        let service = resource
            .get("service.name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                out.push(Span {
                    service: service.clone(),
                    trace_id: s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                    span_id: s["spanId"].as_str().unwrap_or_default().to_lowercase(),
                    parent_span_id: s["parentSpanId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_lowercase(),
                    name: s["name"].as_str().unwrap_or_default().to_string(),
                    attributes: attributes(s.get("attributes")),
                });
            }
        }
    }
    out
}
