//! HTTP/1.1 requests written byte for byte, as an attacker would send them: HTTP
//! clients normalise URLs (`/./`, `/../`, `%2e` segments, escapes), which would hide
//! exactly the spellings a test must try.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as it came off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The wire error's `code`, when the body is one.
    pub fn error_code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        v["error"]["code"].as_str().map(str::to_string)
    }
}

/// Sends `method target` (the request-target exactly as given) to `base`
/// (`http://host:port`) with `headers` and an optional JSON body, on a fresh connection.
pub async fn send(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> RawResponse {
    let addr = base
        .strip_prefix("http://")
        .expect("an http:// base URL")
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connecting to the API");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    match json_body {
        Some(body) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => req.push_str("Content-Length: 0\r\n\r\n"),
    }
    stream
        .write_all(req.as_bytes())
        .await
        .expect("writing the request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the API answers within 30 s")
        .expect("reading the response");
    parse(&raw)
}

fn parse(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sends `request` (head and body exactly as given, e.g. a chunked body) to `base` on a
/// fresh connection, reading the answer while still writing: a server may answer (a
/// `413`, a `408`) before it has read the whole body, and then stop reading.
pub async fn exchange(base: &str, request: Vec<u8>) -> RawResponse {
    let addr = base
        .strip_prefix("http://")
        .expect("an http:// base URL")
        .trim_end_matches('/')
        .to_string();
    let stream = TcpStream::connect(&addr)
        .await
        .expect("connecting to the API");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // Errors are expected once the server has answered and closed.
        for piece in request.chunks(16 * 1024) {
            if wr.write_all(piece).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Keep the write half open: the server decides when the exchange ends.
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer arrived: what was read is the answer.
            Ok(Err(_)) if !raw.is_empty() => break,
            Ok(Err(e)) => panic!("reading the response: {e}"),
            Err(_) => panic!(
                "no complete answer within 60 s: {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
        if complete(&raw) {
            break;
        }
    }
    writer.abort();
    parse(&raw)
}

/// Whether `raw` holds a whole response (its head and, by `Content-Length`, its body).
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}
