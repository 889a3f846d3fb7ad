//! `/livez`, `/readyz` and `/metrics` over a deliberately tiny HTTP/1.1 responder, for every
//! command that serves health endpoints (`serve` and `attach`).
//!
//! Why not a web framework: three fixed GET routes, no bodies in, one response per connection.
//! A hand-written responder on tokio is ~100 lines with hard bounds (request size, time, number
//! of connections) and keeps the image small and free of a large dependency tree. What it
//! serves comes from a [`Health`], whose methods must never wait on anything that can hang (a
//! mount, the exported file system): they read what a probe running elsewhere found.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The largest request head read; a longer one is answered 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long one connection may take, from accept to the last byte of the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// The content type of `/metrics` (what prometheus-client's text encoder writes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints report. Called on the async executor: never block.
pub trait Health: Send + Sync + 'static {
    /// Whether the process is ready to be sent traffic, and one line saying why (or why not).
    fn readiness(&self) -> (bool, String);
    /// The metrics, in the Prometheus/OpenMetrics text exposition.
    fn metrics(&self) -> String;
}

/// Serve until the future is dropped.
pub async fn serve(listener: TcpListener, health: Arc<dyn Health>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("health accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(IO_TIMEOUT, handle(stream, health.as_ref())).await;
        });
    }
}

/// The response to a request line: status line, content type, body.
pub fn respond(request_line: &str, health: &dyn Health) -> (&'static str, &'static str, String) {
    let mut parts = request_line.split_ascii_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", "text/plain", "only GET\n".into());
    }
    match path.split('?').next().unwrap_or("") {
        "/livez" => ("200 OK", "text/plain", "live\n".into()),
        "/readyz" => {
            let (ready, why) = health.readiness();
            let body = format!("{why}\n");
            if ready {
                ("200 OK", "text/plain", body)
            } else {
                ("503 Service Unavailable", "text/plain", body)
            }
        }
        "/metrics" => ("200 OK", METRICS_CONTENT_TYPE, health.metrics()),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

async fn handle(mut stream: TcpStream, health: &dyn Health) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            stream.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").await?;
            return Ok(());
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let first = head.lines().next().unwrap_or("");
    let (status, ctype, body) = respond(first, health);
    let is_head = first.starts_with("HEAD ");
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !is_head {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Fixed {
        ready: AtomicBool,
    }

    impl Health for Fixed {
        fn readiness(&self) -> (bool, String) {
            let ready = self.ready.load(Ordering::Relaxed);
            (ready, if ready { "ok".into() } else { "not yet".into() })
        }
        fn metrics(&self) -> String {
            "up 1\n".into()
        }
    }

    async fn get(addr: std::net::SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn routes_statuses_and_bounds() {
        let health = Arc::new(Fixed::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, health.clone()));

        assert!(get(addr, "GET /livez HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 200"));
        let r = get(addr, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.ends_with("not yet\n"),
            "{r}"
        );
        health.ready.store(true, Ordering::Relaxed);
        let r = get(addr, "GET /readyz?verbose HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok\n"), "{r}");
        let m = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            m.contains(METRICS_CONTENT_TYPE) && m.ends_with("up 1\n"),
            "{m}"
        );
        let h = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            h.starts_with("HTTP/1.1 200") && h.ends_with("\r\n\r\n"),
            "{h}"
        );
        assert!(get(addr, "POST /readyz HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405"));
        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        let huge = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST + 10));
        assert!(get(addr, &huge).await.starts_with("HTTP/1.1 431"));
        task.abort();
    }
}
