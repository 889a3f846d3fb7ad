//! `/livez`, `/readyz` and `/metrics` over a deliberately tiny HTTP/1.1 responder.
//!
//! Why not a web framework: three fixed GET routes, no bodies in, one response per connection.
//! A hand-written responder on tokio is ~100 lines with hard bounds (request size, time, number
//! of connections) and keeps the agent's image small and free of a large dependency tree.
//! Handlers only read atomics and the metrics registry, so they never wait on the mount.

use crate::metrics::Metrics;
use crate::reconcile::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const MAX_REQUEST: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;

/// What the endpoint serves from.
#[derive(Clone, Debug)]
pub struct HealthState {
    pub shared: Arc<Shared>,
    pub metrics: Metrics,
}

/// Serve until the future is dropped.
pub async fn serve(listener: TcpListener, state: HealthState) {
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
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(IO_TIMEOUT, handle(stream, &state)).await;
        });
    }
}

/// The response to a request head: status line, content type, body.
pub fn respond(head: &str, state: &HealthState) -> (&'static str, &'static str, String) {
    let mut parts = head.split_ascii_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", "text/plain", "only GET\n".into());
    }
    match path.split('?').next().unwrap_or("") {
        "/livez" => ("200 OK", "text/plain", "live\n".into()),
        "/readyz" => {
            let (st, reason) = state.shared.status();
            let body = format!("{st}: {reason}\n");
            if state.shared.is_ready() {
                ("200 OK", "text/plain", body)
            } else {
                ("503 Service Unavailable", "text/plain", body)
            }
        }
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.encode(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

async fn handle(mut stream: TcpStream, state: &HealthState) -> std::io::Result<()> {
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
    let (status, ctype, body) = respond(first, state);
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

    async fn get(addr: std::net::SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn readyz_follows_readiness_and_metrics_are_served() {
        let metrics = Metrics::new();
        let shared = Arc::new(Shared::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(
            listener,
            HealthState {
                shared: shared.clone(),
                metrics: metrics.clone(),
            },
        ));

        assert!(get(addr, "GET /livez HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 200"));
        assert!(get(addr, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 503"));
        shared.set_for_test(true, "healthy", "mounted");
        let r = get(addr, "GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("healthy: mounted\n"),
            "{r}"
        );
        metrics.mount_up.set(1);
        let m = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(m.contains("mountshare_attach_mount_up 1"), "{m}");
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
