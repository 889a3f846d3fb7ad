//! The listener: binds the NFS port (and optionally the portmapper port 111), accepts
//! connections (closing those from outside the allow-list at once, and making room at the
//! connection limit and at the per-address cap), drains in-flight calls on shutdown, and serves
//! the health endpoints.
use crate::allow::AllowList;
use crate::config::{HealthConfig, Limits, ServerConfig};
use crate::connection::{self, Lanes, Shared};
use crate::conns::{Conns, Every10s};
use crate::dispatch;
use crate::export::Export;
use crate::metrics::Metrics;
use crate::observe::{self, Observer, View};
use crate::stall::Stalls;
use mountshare_fs::Backend;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Send buffer of each connection.
const SOCKET_BUFFER: usize = 4 << 20;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet running server.
pub struct Server {
    listeners: Vec<TcpListener>,
    udp_portmap: Option<UdpSocket>,
    export: Arc<Export>,
    stalls: Arc<Stalls>,
    conns: Arc<Conns>,
    allow: AllowList,
    limits: Limits,
    local_addr: SocketAddr,
    /// `/livez`, `/readyz` and `/metrics`, when asked for.
    health: Option<TcpListener>,
    health_config: HealthConfig,
    view: Arc<View>,
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

impl Server {
    /// Bind every listener now, so a port in use is reported before anything runs.
    pub async fn bind(
        config: ServerConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<Server, ServerError> {
        let main = bind_tcp(config.listen).await?;
        let local_addr = main.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let mut listeners = vec![main];
        let mut udp_portmap = None;
        if let Some(pm) = config.portmap_listen {
            listeners.push(bind_tcp(pm).await?);
            udp_portmap = Some(
                UdpSocket::bind(pm)
                    .await
                    .map_err(|source| ServerError::Bind { addr: pm, source })?,
            );
        }
        let health = match config.health.listen {
            Some(addr) => Some(bind_tcp(addr).await?),
            None => None,
        };
        let export = Arc::new(
            Export::new(
                backend,
                config.fsid,
                local_addr.port(),
                config.portmap_listen.map(|a| a.port()),
                &config.caches,
                Metrics::new(dispatch::slot_labels()),
            )
            .expect(config.expect)
            .allow(config.allow.clone()),
        );
        let stalls = Stalls::new(config.backend_timeout, config.limits.max_stuck);
        let conns = Conns::new(
            config.limits.max_connections,
            config.limits.max_connections_per_address,
            config.limits.reply_overflow_bytes,
        );
        let view = View::new(export.clone(), stalls.clone(), conns.clone());
        Ok(Server {
            listeners,
            udp_portmap,
            export,
            stalls,
            conns,
            allow: config.allow,
            limits: config.limits,
            local_addr,
            health,
            health_config: config.health,
            view,
        })
    }

    /// The address NFS is served on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve `/livez`, `/readyz` and `/metrics` on `listener` (bound earlier, e.g. to answer
    /// while waiting for a FUSE mount), instead of binding `HealthConfig::listen`.
    pub fn with_health_listener(mut self, listener: TcpListener) -> Server {
        self.health = Some(listener);
        self
    }

    /// Where `/livez`, `/readyz` and `/metrics` are served, if they are.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// What the server sees of its calls, readable while it runs.
    pub fn observer(&self) -> Observer {
        Observer {
            stalls: self.stalls.clone(),
            conns: self.conns.clone(),
            view: self.view.clone(),
        }
    }

    /// Serve until `shutdown` completes, then stop accepting, let calls in flight finish (up to
    /// the drain timeout) and return.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut observing = self.observe(stop_rx.clone());
        let shared = Shared {
            export: self.export.clone(),
            stalls: self.stalls.clone(),
            conns: self.conns.clone(),
            limits: self.limits.clone(),
            global: Arc::new(Lanes::new(self.limits.total_in_flight)),
        };
        let allow = Arc::new(self.allow);
        let mut tasks = JoinSet::new();
        for listener in self.listeners {
            tasks.spawn(accept_loop(
                listener,
                shared.clone(),
                allow.clone(),
                stop_rx.clone(),
            ));
        }
        if let Some(udp) = self.udp_portmap {
            tasks.spawn(crate::connection::serve_udp(
                udp,
                self.export.clone(),
                allow.clone(),
                stop_rx.clone(),
            ));
        }
        tracing::info!(addr = %self.local_addr, "serving NFSv3, MOUNT v3 and PORTMAP v2");
        shutdown.await;
        tracing::info!("shutting down: no new calls; draining calls in flight");
        self.view.readiness.set_listening(false);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.limits.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        match drained {
            Ok(()) => tracing::info!("drained"),
            Err(_) => tracing::warn!(
                timeout = ?self.limits.drain_timeout,
                "calls still in flight after the drain timeout; exiting anyway"
            ),
        }
        observing.abort_all();
    }

    /// Start probing the export root and, with `--listen-health`, serving the health endpoints;
    /// the listener is up from here on.
    fn observe(&mut self, stop: watch::Receiver<bool>) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        self.view.readiness.set_listening(true);
        tasks.spawn(observe::probe_loop(
            self.export.clone(),
            self.view.readiness.clone(),
            self.health_config.clone(),
            stop,
        ));
        if let Some(listener) = self.health.take() {
            tasks.spawn(mountshare_health::serve(
                listener,
                Arc::new(self.observer()),
            ));
        }
        tasks
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Shared,
    allow: Arc<AllowList>,
    mut stop: watch::Receiver<bool>,
) {
    static NOT_ALLOWED: Every10s = Every10s::new();
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE): close the least recently active
                // connection, so the client waiting in the backlog gets in. Back off either way
                // instead of spinning.
                let raw = e.raw_os_error();
                if raw == Some(rustix::io::Errno::MFILE.raw_os_error())
                    || raw == Some(rustix::io::Errno::NFILE.raw_os_error())
                {
                    shared.conns.evict_one();
                }
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        if !allow.allows(ip) {
            shared.conns.stats.refused_allow_list();
            if let Some(more) = NOT_ALLOWED.due() {
                tracing::info!(%peer, more_since_last_report = more, "refused a connection: the client is not in the allow-list (--allow)");
            }
            continue;
        }
        // Always admitted: at a limit, the least recently active connection (of its address,
        // at the per-address cap) is closed instead.
        let registered = shared.conns.admit(ip);
        let _ = stream.set_nodelay(true);
        // Room for a whole 1 MiB READ reply (and a few) in the socket, so a reply is handed to
        // the kernel in one write instead of trickling out as the client reads.
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&stream, SOCKET_BUFFER);
        conns.spawn(connection::serve(
            stream,
            peer,
            registered,
            shared.clone(),
            stop.clone(),
        ));
    }
    while conns.join_next().await.is_some() {}
}
