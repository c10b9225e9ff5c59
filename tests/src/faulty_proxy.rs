//! A TCP proxy in front of the S3 server that injects faults on demand: refused
//! connections, `503` answers, slowness, or a `503` every n-th connection. The mode can be
//! switched while the app runs; per-outcome connection counts show what the app went
//! through (e.g. that its client retried).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What the proxy does with the next connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways untouched.
    Pass,
    /// Accept, then reset the connection at once without a byte.
    Refuse,
    /// Stop listening: connections are refused by the system (`ECONNREFUSED`), as when
    /// the store's host is up but its server is not. Nothing is counted.
    Down,
    /// Read the request head and answer `503 Service Unavailable`.
    Error503,
    /// Forward, sleeping this many milliseconds before each piece passed along.
    Slow(u64),
    /// Forward the request, then the response's head and this many bytes of its body, then
    /// nothing more while holding the connection open: a download that stalls.
    StallBody(usize),
    /// Every n-th connection (counted from the switch) gets the `503`, the others pass.
    FailEvery(u64),
    /// The next n connections pass, then every one is refused: a store that goes down in
    /// the middle of a job (the S3 server used in tests closes each connection after one
    /// request, so a connection is a request).
    RefuseAfter(u64),
}

/// How many connections ended each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub refused: u64,
    pub answered_503: u64,
    pub slowed: u64,
    pub stalled: u64,
}

#[derive(Default)]
struct Counters {
    seen: AtomicU64,
    passed: AtomicU64,
    refused: AtomicU64,
    answered_503: AtomicU64,
    slowed: AtomicU64,
    stalled: AtomicU64,
}

/// The running proxy; it stops when dropped.
pub struct FaultyProxy {
    addr: SocketAddr,
    /// The mode, and the number of connections seen when it was set.
    mode: Arc<Mutex<(Mode, u64)>>,
    counters: Arc<Counters>,
    /// Wakes the accept loop when the mode changes (to close or reopen the listener).
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

const RESPONSE_503: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

impl FaultyProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy address");
        let mode = Arc::new(Mutex::new((Mode::Pass, 0)));
        let counters = Arc::new(Counters::default());
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn({
            let mode = mode.clone();
            let counters = counters.clone();
            let changed = changed.clone();
            async move {
                let mut listener = Some(listener);
                loop {
                    let down = mode.lock().unwrap().0 == Mode::Down;
                    let Some(open) = listener.as_ref().filter(|_| !down) else {
                        if down {
                            listener = None;
                            changed.notified().await;
                        } else {
                            // The same port again (SO_REUSEADDR is set), retried while busy.
                            match TcpListener::bind(addr).await {
                                Ok(l) => listener = Some(l),
                                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                            }
                        }
                        continue;
                    };
                    let client = tokio::select! {
                        _ = changed.notified() => continue,
                        accepted = open.accept() => match accepted {
                            Ok((client, _)) => client,
                            Err(_) => continue,
                        },
                    };
                    let (current, n) = {
                        let mode = mode.lock().unwrap();
                        let seen = counters.seen.fetch_add(1, Ordering::SeqCst) + 1;
                        (mode.0, seen - mode.1)
                    };
                    let counters = counters.clone();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let _ = handle(client, &upstream, current, n, &counters).await;
                    });
                }
            }
        });
        Self {
            addr,
            mode,
            counters,
            changed,
            task,
        }
    }

    /// The URL to give the app as its S3 endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies to connections accepted from now on.
    pub fn set_mode(&self, mode: Mode) {
        let mut current = self.mode.lock().unwrap();
        *current = (mode, self.counters.seen.load(Ordering::SeqCst));
        self.changed.notify_one();
    }

    /// Every connection accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.seen.load(Ordering::SeqCst)
    }

    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            passed: c.passed.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
            answered_503: c.answered_503.load(Ordering::SeqCst),
            slowed: c.slowed.load(Ordering::SeqCst),
            stalled: c.stalled.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    client: TcpStream,
    upstream: &str,
    mode: Mode,
    n: u64,
    counters: &Counters,
) -> std::io::Result<()> {
    match mode {
        Mode::Refuse | Mode::Down => refuse(client, counters),
        Mode::RefuseAfter(pass) if n > pass => refuse(client, counters),
        Mode::Error503 => answer_503(client, counters).await,
        Mode::FailEvery(every) if every > 0 && n.is_multiple_of(every) => {
            answer_503(client, counters).await
        }
        Mode::Slow(ms) => {
            counters.slowed.fetch_add(1, Ordering::SeqCst);
            forward(client, upstream, Some(Duration::from_millis(ms)), None).await
        }
        Mode::StallBody(body) => {
            counters.stalled.fetch_add(1, Ordering::SeqCst);
            forward(client, upstream, None, Some(body)).await
        }
        Mode::Pass | Mode::FailEvery(_) | Mode::RefuseAfter(_) => {
            counters.passed.fetch_add(1, Ordering::SeqCst);
            forward(client, upstream, None, None).await
        }
    }
}

fn refuse(client: TcpStream, counters: &Counters) -> std::io::Result<()> {
    counters.refused.fetch_add(1, Ordering::SeqCst);
    // No lingering: the client sees its connection reset at once.
    client.set_zero_linger()?;
    drop(client);
    Ok(())
}

/// Reads the request (head and `Content-Length` body, so the client is not reset while
/// still sending) and answers 503.
async fn answer_503(mut client: TcpStream, counters: &Counters) -> std::io::Result<()> {
    counters.answered_503.fetch_add(1, Ordering::SeqCst);
    let mut request = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut buf).await?;
        if n == 0 || request.len() > 64 * 1024 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body_left = length.saturating_sub(request.len() - head_end);
    while body_left > 0 {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        body_left = body_left.saturating_sub(n);
    }
    client.write_all(RESPONSE_503).await?;
    client.shutdown().await
}

async fn forward(
    client: TcpStream,
    upstream: &str,
    delay: Option<Duration>,
    stall_after_body: Option<usize>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        pipe(&mut cr, &mut sw, delay).await?;
        sw.shutdown().await
    };
    let down = async {
        match stall_after_body {
            None => {
                pipe(&mut sr, &mut cw, delay).await?;
                cw.shutdown().await
            }
            Some(body) => {
                stall(&mut sr, &mut cw, body).await?;
                // Hold the client's connection open, silent, until it gives up.
                tokio::time::sleep(Duration::from_secs(300)).await;
                Ok(())
            }
        }
    };
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

async fn pipe<R, W>(from: &mut R, to: &mut W, delay: Option<Duration>) -> std::io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Passes the response's head and `body` bytes of its body, then drops the rest.
async fn stall<R, W>(from: &mut R, to: &mut W, body: usize) -> std::io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen = Vec::new();
    let mut allowed: Option<usize> = None;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let limit = match allowed {
            Some(limit) => limit,
            None => {
                seen.extend_from_slice(&buf[..n]);
                match seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    // Everything before this read, and this read up to the limit.
                    Some(i) => (i + 4 + body).saturating_sub(seen.len() - n),
                    None => n,
                }
            }
        };
        let pass = n.min(limit);
        to.write_all(&buf[..pass]).await?;
        if allowed.is_some() || seen.windows(4).any(|w| w == b"\r\n\r\n") {
            allowed = Some(limit - pass);
        }
    }
}
