//! What the agent's `/livez`, `/readyz` and `/metrics` report, served by the shared responder
//! (`mountshare-health`). Readiness and metrics only read atomics and the metrics registry, so
//! the endpoints never wait on the mount.

use crate::metrics::Metrics;
use crate::reconcile::Shared;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What the endpoint serves from.
#[derive(Clone, Debug)]
pub struct HealthState {
    pub shared: Arc<Shared>,
    pub metrics: Metrics,
}

impl mountshare_health::Health for HealthState {
    fn readiness(&self) -> (bool, String) {
        let (st, reason) = self.shared.status();
        (self.shared.is_ready(), format!("{st}: {reason}"))
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

/// Serve `/livez`, `/readyz` and `/metrics` until the future is dropped.
pub async fn serve(listener: TcpListener, state: HealthState) {
    mountshare_health::serve(listener, Arc::new(state)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

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
        task.abort();
    }
}
