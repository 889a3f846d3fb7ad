//! `doctor server HOST[:PORT]`: walk an NFSv3 server the way a kernel client would, each step
//! under a timeout and with a verdict, then say how to mount it.
//!
//! Works against any NFSv3 server: when MOUNT is not on the NFS port (kernel nfsd, nfs-ganesha)
//! its port comes from the portmapper, and the mount lines then carry both ports.
//!
//! Each step is one method of `Walk`, which reports it and returns what later steps need from it
//! (the connection, the MOUNT service found, the root handle, ...). Which steps a failure leaves
//! untried comes from one table, [`StepName`]'s needs: they are reported skipped, saying why.

use crate::lines::{mount_lines, LineInputs, MountLines};
use crate::report::{count_problems, render_steps, verdict_line, Step, Verdict};
use mountshare_client::{
    ClientError, ConnectOptions, MountClient, NfsClient, PortmapClient, RpcConnection,
};
use mountshare_proto::mount3::{MountRes3, MountStat3, MOUNT_PROGRAM, MOUNT_V3};
use mountshare_proto::nfs3::{EntryPlus3, Ftype3, NfsFh3, Read3Args, NFS_PROGRAM, NFS_V3};
use mountshare_proto::portmap::{IPPROTO_TCP, IPPROTO_UDP};
use mountshare_proto::rpc::{AcceptStat, ReplyBody};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What to diagnose, and how patiently.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub host: String,
    pub port: u16,
    /// The export to MNT.
    pub export: String,
    /// Limit on each step.
    pub timeout: Duration,
    /// Where to ask a portmapper (111; tests point it elsewhere).
    pub portmap_port: u16,
    /// A MOUNT port to try when MOUNT is not on the NFS port.
    pub mount_port: Option<u16>,
    /// The directory the mount lines mount at.
    pub target: String,
}

/// One registration a portmapper listed (DUMP).
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub program: u32,
    pub name: &'static str,
    pub version: u32,
    pub protocol: &'static str,
    pub port: u32,
}

/// What the portmapper on port 111 said.
#[derive(Debug, Clone, Serialize)]
pub struct PortmapperView {
    pub address: String,
    pub answers: bool,
    /// GETPORT of NFS v3 over TCP (0: not registered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nfs_v3_tcp: Option<u32>,
    /// GETPORT of MOUNT v3 over TCP (0: not registered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_v3_tcp: Option<u32>,
    pub registrations: Vec<Registration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportView {
    pub path: String,
    pub groups: Vec<String>,
}

/// Everything `doctor server` found.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub server: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub nfs_port: u16,
    /// Where MOUNT v3 answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_port: Option<u16>,
    /// How it was found: `nfs_port`, `portmapper`, `server_portmap` or `flag`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_port_found_via: Option<&'static str>,
    pub export: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portmapper: Option<PortmapperView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exports: Option<Vec<ExportView>>,
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_lines: Option<MountLines>,
    pub problems: usize,
    pub healthy: bool,
}

fn program_name(prog: u32) -> &'static str {
    match prog {
        100000 => "portmapper",
        100003 => "nfs",
        100005 => "mountd",
        100011 => "rquotad",
        100021 => "nlockmgr",
        100024 => "status",
        100227 => "nfs_acl",
        _ => "?",
    }
}

/// Time a future under the step timeout; `None` when it ran out.
async fn timed<T>(limit: Duration, f: impl Future<Output = T>) -> (Option<T>, Duration) {
    let start = Instant::now();
    let r = tokio::time::timeout(limit, f).await.ok();
    (r, start.elapsed())
}

fn secs(d: Duration) -> String {
    mountshare_units::human_duration(d)
}

fn is_prog_unavail(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Rpc(ReplyBody::Accepted(AcceptStat::ProgUnavail))
    )
}

async fn connect(addr: SocketAddr, limit: Duration) -> Result<(TcpStream, Duration), String> {
    let (r, took) = timed(limit, TcpStream::connect(addr)).await;
    match r {
        None => Err(format!("no answer to a TCP connect within {}", secs(limit))),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err("connection refused".into())
        }
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok((s, took))
        }
    }
}

fn rpc(stream: TcpStream, limit: Duration) -> RpcConnection {
    RpcConnection::from_stream(
        stream,
        ConnectOptions {
            timeout: limit,
            ..ConnectOptions::default()
        },
    )
}

/// The steps of the walk, in the order it takes and reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepName {
    /// The host name to an address (reported for names, not for IP addresses).
    Resolve,
    TcpConnect,
    NfsNull,
    MountNull,
    Portmapper,
    /// Looking for MOUNT elsewhere when it is not on the NFS port (absent when it is).
    MountLookup,
    ExportList,
    Mnt,
    GetattrRoot,
    ReaddirplusRoot,
    ReadFile,
}

impl StepName {
    /// Every step, in walk order.
    pub const ALL: [StepName; 11] = [
        StepName::Resolve,
        StepName::TcpConnect,
        StepName::NfsNull,
        StepName::MountNull,
        StepName::Portmapper,
        StepName::MountLookup,
        StepName::ExportList,
        StepName::Mnt,
        StepName::GetattrRoot,
        StepName::ReaddirplusRoot,
        StepName::ReadFile,
    ];

    /// The identifier a report carries for this step (`tcp_connect`, `mnt`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            StepName::Resolve => "resolve",
            StepName::TcpConnect => "tcp_connect",
            StepName::NfsNull => "nfs_null",
            StepName::MountNull => "mount_null",
            StepName::Portmapper => "portmapper",
            StepName::MountLookup => "mount_lookup",
            StepName::ExportList => "export_list",
            StepName::Mnt => "mnt",
            StepName::GetattrRoot => "getattr_root",
            StepName::ReaddirplusRoot => "readdirplus_root",
            StepName::ReadFile => "read_file",
        }
    }

    /// What this step needs earlier steps to have established: the one definition of which
    /// steps a failure skips. Each list names everything the step relies on, so a step is
    /// reported skipped, with [`Need::missing`] as the reason, when any of it is missing.
    /// From `mount_lookup` on the walk is about an NFS server, so those steps need [`Need::Nfs`]
    /// rather than the connection it implies: without one they say NFS does not answer.
    /// Without an address nothing is tried at all: the report ends at `resolve`.
    fn needs(self) -> &'static [Need] {
        use Need::*;
        match self {
            StepName::Resolve | StepName::TcpConnect | StepName::Portmapper => &[],
            StepName::NfsNull => &[Connection],
            StepName::MountNull => &[Connection, RpcAnswer],
            StepName::MountLookup => &[Nfs],
            StepName::ExportList | StepName::Mnt => &[Nfs, Mount],
            StepName::GetattrRoot => &[Nfs, Mount, RootHandle],
            StepName::ReaddirplusRoot => &[Nfs, Mount, RootHandle, RootAttributes],
            StepName::ReadFile => &[Nfs, Mount, RootHandle, RootAttributes, RootListing],
        }
    }

    fn ok(self, summary: impl Into<String>) -> Step {
        Step::ok(self.name(), summary)
    }

    fn note(self, summary: impl Into<String>) -> Step {
        Step::note(self.name(), summary)
    }

    fn problem(self, summary: impl Into<String>, fix: impl Into<String>) -> Step {
        Step::problem(self.name(), summary, fix)
    }

    fn skipped(self, why: impl Into<String>) -> Step {
        Step::skipped(self.name(), why)
    }
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a step establishes for the steps after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A TCP connection to the given port.
    Connection,
    /// Something on that port answers RPC, if only to refuse NFS.
    RpcAnswer,
    /// NFS v3 answers NULL on the given port: the rest of the walk is about an NFS server.
    Nfs,
    /// A MOUNT v3 service that answers NULL, on the NFS port or found elsewhere.
    Mount,
    /// The export's root handle, from MNT.
    RootHandle,
    /// NFS takes that handle: GETATTR of the root answers.
    RootAttributes,
    /// READDIRPLUS of the root answers.
    RootListing,
}

impl Need {
    /// Why a step that needs this was not tried.
    fn missing(self, o: &ServerOptions) -> String {
        match self {
            Need::Connection => "no TCP connection".into(),
            Need::RpcAnswer => format!("port {} does not answer RPC", o.port),
            Need::Nfs => "NFS does not answer on the given port".into(),
            Need::Mount => "no MOUNT service".into(),
            Need::RootHandle => "MNT failed".into(),
            Need::RootAttributes => "GETATTR failed".into(),
            Need::RootListing => "READDIRPLUS failed".into(),
        }
    }
}

/// Walk the server; never fails: every failure is a step with its verdict.
pub async fn diagnose(o: &ServerOptions) -> ServerReport {
    let mut r = ServerReport::empty(o);
    Walk { o, r: &mut r }.run().await;
    r.problems = count_problems(&r.steps);
    r.healthy = r.problems == 0;
    r
}

impl ServerReport {
    /// A report on `o`'s server before anything was tried.
    fn empty(o: &ServerOptions) -> Self {
        let shown = if o.host.contains(':') {
            format!("[{}]:{}", o.host, o.port)
        } else {
            format!("{}:{}", o.host, o.port)
        };
        ServerReport {
            server: shown,
            host: o.host.clone(),
            address: None,
            nfs_port: o.port,
            mount_port: None,
            mount_port_found_via: None,
            export: o.export.clone(),
            portmapper: None,
            exports: None,
            steps: Vec::new(),
            mount_lines: None,
            problems: 0,
            healthy: false,
        }
    }
}

/// What answered NULL on the given port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NfsAnswer {
    /// NFS v3.
    Nfs,
    /// An RPC reply, but not from NFS v3 (another program or version, a refusal, ...).
    NotNfs,
    /// Nothing: no reply in time, or the connection closed.
    Silent,
}

/// How the MOUNT service was found (the report's `mount_port_found_via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FoundVia {
    /// On the NFS port itself.
    NfsPort,
    /// On the `--mount-port` given.
    Flag,
    /// Where the portmapper said.
    Portmapper,
    /// Where the server's own PORTMAP, on the NFS port, said.
    ServerPortmap,
}

impl FoundVia {
    fn as_str(self) -> &'static str {
        match self {
            FoundVia::NfsPort => "nfs_port",
            FoundVia::Flag => "flag",
            FoundVia::Portmapper => "portmapper",
            FoundVia::ServerPortmap => "server_portmap",
        }
    }
}

/// A MOUNT v3 service that answered NULL, and where.
struct MountService {
    client: MountClient,
    port: u16,
}

/// One walk: what it was asked, and the report it fills in. Each step is a method that reports
/// itself and returns what later steps need from it.
struct Walk<'a> {
    o: &'a ServerOptions,
    r: &'a mut ServerReport,
}

impl Walk<'_> {
    /// The steps in order, each given what it needs by the ones before it.
    async fn run(&mut self) {
        // Without an address there is nothing to try: the report ends at `resolve`.
        let Some(addr) = self.resolve().await else {
            return;
        };
        let (nfs, mount_here) = match self.tcp_connect(addr).await {
            None => {
                self.skip_needing(Need::Connection);
                (None, None)
            }
            Some(conn) => {
                let answer = self.nfs_null(&conn).await;
                let mount_here = match answer {
                    NfsAnswer::Silent => {
                        self.skip_needing(Need::RpcAnswer);
                        None
                    }
                    NfsAnswer::Nfs | NfsAnswer::NotNfs => self.mount_null(&conn).await,
                };
                ((answer == NfsAnswer::Nfs).then_some(conn), mount_here)
            }
        };
        let registered_mount = self.portmapper(addr, nfs.is_some()).await;
        let Some(conn) = nfs else {
            self.skip_needing(Need::Nfs);
            return;
        };
        let found = match mount_here {
            Some(found) => Some(found),
            None => self.mount_lookup(addr, &conn, registered_mount).await,
        };
        let Some(mount) = found else {
            self.skip_needing(Need::Mount);
            return;
        };
        self.r.mount_lines = Some(mount_lines(&LineInputs {
            host: &self.o.host,
            ip: addr.ip(),
            nfs_port: self.o.port,
            mount_port: mount.port,
            export: &self.o.export,
            target: &self.o.target,
        }));
        let exports = self.export_list(&mount.client).await;
        let Some(root) = self.mnt(&mount.client, &exports).await else {
            self.skip_needing(Need::RootHandle);
            return;
        };
        self.under_root(&NfsClient::new(conn), &root).await;
        // Done with the export, as a kernel client is when it unmounts.
        let _ =
            tokio::time::timeout(self.o.timeout, mount.client.umnt(self.o.export.as_bytes())).await;
    }

    /// The steps on the export's root, once MNT gave its handle.
    async fn under_root(&mut self, nfs: &NfsClient, root: &NfsFh3) {
        if !self.getattr_root(nfs, root).await {
            self.skip_needing(Need::RootAttributes);
            return;
        }
        let Some(entries) = self.readdirplus_root(nfs, root).await else {
            self.skip_needing(Need::RootListing);
            return;
        };
        self.read_file(nfs, entries).await;
    }

    fn report(&mut self, step: Step) {
        self.r.steps.push(step);
    }

    /// Report every step that needs `missing` as skipped, in walk order, saying why. The walk
    /// calls it where `missing` turned out missing; the steps needing it all come right after.
    fn skip_needing(&mut self, missing: Need) {
        let why = format!("not tried: {}", missing.missing(self.o));
        for step in StepName::ALL {
            if step.needs().contains(&missing) {
                self.report(step.skipped(why.clone()));
            }
        }
    }

    /// Where MOUNT answered, for the report.
    fn found_mount(&mut self, client: MountClient, port: u16, via: FoundVia) -> MountService {
        self.r.mount_port = Some(port);
        self.r.mount_port_found_via = Some(via.as_str());
        MountService { client, port }
    }

    /// `resolve`: the address to talk to (IPv4 first); `None` when there is none.
    async fn resolve(&mut self) -> Option<SocketAddr> {
        let (o, t) = (self.o, self.o.timeout);
        let (res, took) = timed(t, tokio::net::lookup_host((o.host.as_str(), o.port))).await;
        let addrs: Vec<SocketAddr> = match res {
            Some(Ok(it)) => it.collect(),
            Some(Err(e)) => {
                self.report(StepName::Resolve.problem(format!("cannot resolve {}: {e}", o.host), "give an IP address, or a name this machine resolves (the kubelet resolves with the node's resolver, not cluster DNS)").took(took));
                return None;
            }
            None => {
                self.report(
                    StepName::Resolve
                        .problem(
                            format!("resolving {} took longer than {}", o.host, secs(t)),
                            "check this machine's resolver, or give an IP address",
                        )
                        .took(took),
                );
                return None;
            }
        };
        let Some(addr) = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
        else {
            self.report(StepName::Resolve.problem(
                format!("{} resolves to no address", o.host),
                "give an IP address",
            ));
            return None;
        };
        self.r.address = Some(addr.ip().to_string());
        if o.host.parse::<IpAddr>().is_err() {
            self.report(
                StepName::Resolve
                    .ok(format!("{} resolves to {}", o.host, addr.ip()))
                    .took(took),
            );
        }
        Some(addr)
    }

    /// `tcp_connect`: an RPC connection to the given port.
    async fn tcp_connect(&mut self, addr: SocketAddr) -> Option<RpcConnection> {
        let (o, t) = (self.o, self.o.timeout);
        match connect(addr, t).await {
            Ok((stream, took)) => {
                self.report(
                    StepName::TcpConnect
                        .ok(format!("connected to {addr}"))
                        .took(took),
                );
                Some(rpc(stream, t))
            }
            Err(why) => {
                let fix = if why == "connection refused" {
                    format!("nothing listens on port {}: start the server, or give the port it listens on (mountshare serve --listen); the portmapper step below may name the right one", o.port)
                } else {
                    "the host is down or a firewall drops the packets: check the address and the network path (a Service without endpoints looks like this too)".to_owned()
                };
                self.report(
                    StepName::TcpConnect.problem(format!("TCP connect to {addr}: {why}"), fix),
                );
                None
            }
        }
    }

    /// `nfs_null`: whether NFS v3, some other RPC service or nothing answers on the given port.
    async fn nfs_null(&mut self, conn: &RpcConnection) -> NfsAnswer {
        let (o, t) = (self.o, self.o.timeout);
        let start = Instant::now();
        let res = NfsClient::new(conn.clone()).null().await;
        let took = start.elapsed();
        let e = match res {
            Ok(()) => {
                self.report(
                    StepName::NfsNull
                        .ok(format!("NFS v3 answers NULL on port {}", o.port))
                        .took(took),
                );
                return NfsAnswer::Nfs;
            }
            Err(e) => e,
        };
        let (what, fix) = match &e {
            ClientError::Timeout(_) => (
                format!("NFS NULL on port {}: no reply within {}: something accepts TCP connections there but does not answer RPC", o.port, secs(t)),
                "a hung server or a proxy without a backend: check that the server process is alive and serving (its log), and restart it".to_owned(),
            ),
            e if is_prog_unavail(e) => (
                format!("NFS NULL on port {}: {}: this port runs another RPC service, not NFS", o.port, e.describe()),
                "give the NFS port (usually 2049; the portmapper step below may name it)".to_owned(),
            ),
            ClientError::Rpc(ReplyBody::Accepted(AcceptStat::ProgMismatch { low, high })) => (
                format!("NFS NULL on port {}: no NFS version 3 (the server offers versions {low} to {high})", o.port),
                "use an NFSv3 server or enable version 3 on it (kernel mounts with vers=3 will fail)".to_owned(),
            ),
            e => (
                format!("NFS NULL on port {}: {}", o.port, e.describe()),
                "the port does not speak ONC-RPC over TCP as NFS does: check the address, port and that the server allows this client".to_owned(),
            ),
        };
        self.report(StepName::NfsNull.problem(what, fix).took(took));
        if matches!(e, ClientError::Timeout(_) | ClientError::Closed(_)) {
            NfsAnswer::Silent
        } else {
            NfsAnswer::NotNfs
        }
    }

    /// `mount_null`: MOUNT v3 on the NFS port too, as on a mountshare server.
    async fn mount_null(&mut self, conn: &RpcConnection) -> Option<MountService> {
        let o = self.o;
        let client = MountClient::new(conn.clone());
        let start = Instant::now();
        let res = client.null().await;
        let took = start.elapsed();
        match res {
            Ok(()) => {
                self.report(StepName::MountNull.ok(format!("MOUNT v3 answers NULL on the NFS port {} (one port for both: port=mountport={})", o.port, o.port)).took(took));
                Some(self.found_mount(client, o.port, FoundVia::NfsPort))
            }
            Err(e) => {
                self.report(StepName::MountNull.note(format!("MOUNT v3 on port {}: {} (usual for kernel nfsd and nfs-ganesha, which run MOUNT on a port of its own): looking for it through the portmapper", o.port, e.describe())).took(took));
                None
            }
        }
    }

    /// `portmapper`: what a kernel mount without port options asks the portmapper; returns the
    /// MOUNT port it names. `nfs_answers` (NFS NULL answered) only words the advice.
    async fn portmapper(&mut self, addr: SocketAddr, nfs_answers: bool) -> Option<u16> {
        let o = self.o;
        let pm_addr = SocketAddr::new(addr.ip(), o.portmap_port);
        let (view, took) = match ask_portmapper(pm_addr, o.timeout).await {
            Ok(answer) => answer,
            Err(why) => {
                self.report(
                    StepName::Portmapper.note(format!("no portmapper on {pm_addr} ({why}): a kernel mount without port= and mountport= fails or hangs asking for it"))
                        .fix(if nfs_answers {
                            "mount with the lines below, which give port= and mountport=; or run a portmapper (mountshare serve --portmap)"
                        } else {
                            "once NFS answers, mount with port= and mountport= (the doctor prints the lines), or run a portmapper (mountshare serve --portmap)"
                        }),
                );
                self.r.portmapper = Some(PortmapperView {
                    address: pm_addr.to_string(),
                    answers: false,
                    nfs_v3_tcp: None,
                    mount_v3_tcp: None,
                    registrations: Vec::new(),
                });
                return None;
            }
        };
        let nfs = view.nfs_v3_tcp.unwrap_or(0);
        let mnt = view.mount_v3_tcp.unwrap_or(0);
        let said =
            format!(
            "portmapper on {pm_addr} answers: NFS v3/TCP {}, MOUNT v3/TCP {} ({} registrations)",
            if nfs == 0 { "not registered".to_owned() } else { format!("on {nfs}") },
            if mnt == 0 { "not registered".to_owned() } else { format!("on {mnt}") },
            view.registrations.len()
        );
        let step = if nfs == u32::from(o.port) {
            StepName::Portmapper.ok(said)
        } else if nfs == 0 {
            StepName::Portmapper
                .note(format!(
                    "{said}: it does not know this server, so a mount without port= fails"
                ))
                .fix("mount with the lines below, which give port= and mountport=")
        } else if nfs_answers {
            StepName::Portmapper
                .note(format!(
                    "{said}: a mount without port= goes to port {nfs}, not {}",
                    o.port
                ))
                .fix("mount with the lines below, which give port= explicitly")
        } else {
            StepName::Portmapper
                .note(format!(
                    "{said}: NFS is registered on port {nfs}, not {}",
                    o.port
                ))
                .fix(format!("use {}:{nfs}", o.host))
        };
        self.report(step.took(took));
        self.r.portmapper = Some(view);
        port16(mnt)
    }

    /// `mount_lookup`, when MOUNT is not on the NFS port: on the `--mount-port` given, then where
    /// the portmapper said (`registered`), or else where the server's own PORTMAP says.
    async fn mount_lookup(
        &mut self,
        addr: SocketAddr,
        conn: &RpcConnection,
        registered: Option<u16>,
    ) -> Option<MountService> {
        let (o, t) = (self.o, self.o.timeout);
        let mut candidates: Vec<(u16, FoundVia)> = Vec::new();
        if let Some(p) = o.mount_port {
            candidates.push((p, FoundVia::Flag));
        }
        if let Some(p) = registered {
            candidates.push((p, FoundVia::Portmapper));
        }
        if candidates.is_empty() {
            // A single-port server may answer PORTMAP on its own port.
            if let Ok(p) = PortmapClient::new(conn.clone())
                .getport(MOUNT_PROGRAM, MOUNT_V3, IPPROTO_TCP)
                .await
            {
                if let Some(p) = port16(p) {
                    candidates.push((p, FoundVia::ServerPortmap));
                }
            }
        }
        let mut last_err = None;
        for (port, via) in candidates {
            let start = Instant::now();
            match mount_at(SocketAddr::new(addr.ip(), port), t).await {
                Ok(client) => {
                    let how = match via {
                        FoundVia::Flag => "on the --mount-port given".to_owned(),
                        FoundVia::Portmapper => {
                            format!("through the portmapper on port {}", o.portmap_port)
                        }
                        _ => format!("through the server's own PORTMAP on port {}", o.port),
                    };
                    self.report(StepName::MountLookup.ok(format!("MOUNT v3 found {how}: port {port}; NFS port {} != MOUNT port {port}, so mount options must carry both (port={},mountport={port})", o.port, o.port)).took(start.elapsed()));
                    return Some(self.found_mount(client, port, via));
                }
                Err(e) => last_err = Some((port, via, e, start.elapsed())),
            }
        }
        let step = match last_err {
            Some((port, via, e, took)) => StepName::MountLookup.problem(
                format!("MOUNT v3 should be on port {port} (from the {}), but it does not answer there: {e}", if via == FoundVia::Flag { "--mount-port" } else { "portmapper" }),
                "the server's mount daemon (mountd) is down or firewalled: start it, or open its port",
            ).took(took),
            None => StepName::MountLookup.problem(
                format!("no MOUNT v3 service found: not on port {}, and no portmapper names one", o.port),
                "give --mount-port N if you know it; a kernel mount needs mountport=N and hangs without it",
            ),
        };
        self.report(step);
        None
    }

    /// `export_list`: what the server says it exports (nothing when it does not say).
    async fn export_list(&mut self, mount: &MountClient) -> Vec<ExportView> {
        let start = Instant::now();
        let exports = mount.export().await;
        let took = start.elapsed();
        let list = match exports {
            Ok(list) => list,
            Err(e) => {
                self.report(
                    StepName::ExportList
                        .note(format!("EXPORT: {}", e.describe()))
                        .took(took),
                );
                return Vec::new();
            }
        };
        let listed: Vec<ExportView> = list
            .0
            .iter()
            .map(|e| ExportView {
                path: String::from_utf8_lossy(&e.ex_dir).into_owned(),
                groups: e
                    .ex_groups
                    .iter()
                    .map(|g| String::from_utf8_lossy(g).into_owned())
                    .collect(),
            })
            .collect();
        let step = if listed.is_empty() {
            StepName::ExportList.note("the server lists no exports (some servers hide them)")
        } else {
            let shown: Vec<String> = listed
                .iter()
                .map(|e| {
                    if e.groups.is_empty() {
                        format!("{} (everyone)", e.path)
                    } else {
                        format!("{} ({})", e.path, e.groups.join(" "))
                    }
                })
                .collect();
            StepName::ExportList.ok(format!("exports: {}", shown.join(", ")))
        };
        self.report(step.took(took));
        self.r.exports = Some(listed.clone());
        listed
    }

    /// `mnt`: the export's root handle; a refusal names what `listed` offers instead.
    async fn mnt(&mut self, mount: &MountClient, listed: &[ExportView]) -> Option<NfsFh3> {
        let o = self.o;
        let start = Instant::now();
        let res = mount.mnt(o.export.as_bytes()).await;
        let took = start.elapsed();
        match res {
            Ok(MountRes3::Ok(ok)) => {
                let flavors: Vec<String> = ok
                    .auth_flavors
                    .iter()
                    .map(|f| match f {
                        0 => "AUTH_NONE".to_owned(),
                        1 => "AUTH_SYS".to_owned(),
                        390003..=390005 => format!("RPCSEC_GSS/krb5 ({f})"),
                        other => other.to_string(),
                    })
                    .collect();
                let step = if ok.auth_flavors.is_empty() || ok.auth_flavors.contains(&1) {
                    StepName::Mnt.ok(format!(
                        "MNT {}: root handle of {} bytes, auth {}",
                        o.export,
                        ok.fhandle.len(),
                        if flavors.is_empty() {
                            "AUTH_SYS (default)".into()
                        } else {
                            flavors.join(", ")
                        }
                    ))
                } else {
                    StepName::Mnt.problem(
                        format!(
                            "MNT {}: the export wants {} and not AUTH_SYS",
                            o.export,
                            flavors.join(", ")
                        ),
                        "mount with the matching sec= option, or allow sec=sys on the export",
                    )
                };
                self.report(step.took(took));
                Some(NfsFh3 { data: ok.fhandle })
            }
            Ok(MountRes3::Fail(stat)) => {
                let others: Vec<&str> = listed
                    .iter()
                    .map(|e| e.path.as_str())
                    .filter(|p| *p != o.export)
                    .collect();
                let unlisted = !listed.is_empty() && !listed.iter().any(|e| e.path == o.export);
                let step = match stat {
                    MountStat3::NoEnt | MountStat3::NotDir | MountStat3::Acces | MountStat3::Perm
                        if unlisted =>
                    {
                        StepName::Mnt.problem(
                            format!(
                                "MNT {}: no such export ({stat:?}); the server exports {}",
                                o.export,
                                others.join(", ")
                            ),
                            format!(
                                "use --export {} (and HOST:{} in mount lines): that is what the server exports",
                                others[0], others[0]
                            ),
                        )
                    }
                    MountStat3::NoEnt | MountStat3::NotDir => StepName::Mnt.problem(
                        format!("MNT {}: no such export ({stat:?})", o.export),
                        if others.is_empty() {
                            "mount the path the server exports (a mountshare server exports its directory as /)".to_owned()
                        } else {
                            format!("use --export {} (and HOST:{} in mount lines): that is what the server exports", others[0], others[0])
                        },
                    ),
                    MountStat3::Acces | MountStat3::Perm => StepName::Mnt.problem(
                        format!("MNT {}: refused for this client ({stat:?})", o.export),
                        "allow this client's address in the server's export rules",
                    ),
                    other => StepName::Mnt.problem(
                        format!("MNT {}: failed ({other:?})", o.export),
                        "see the server's log",
                    ),
                };
                self.report(step.took(took));
                None
            }
            Err(e) => {
                self.report(
                    StepName::Mnt
                        .problem(
                            format!("MNT {}: {}", o.export, e.describe()),
                            "the mount daemon fails: see the server's log",
                        )
                        .took(took),
                );
                None
            }
        }
    }

    /// `getattr_root`: whether NFS takes the handle MOUNT gave (a root that is not a directory is
    /// a problem, but the walk goes on).
    async fn getattr_root(&mut self, nfs: &NfsClient, root: &NfsFh3) -> bool {
        let start = Instant::now();
        let attr = nfs.getattr_of(root).await;
        let took = start.elapsed();
        let step = match attr {
            Ok(a) if a.ftype == Ftype3::Dir => StepName::GetattrRoot.ok(format!(
                "root: directory, mode {:04o}, owner {}:{}",
                a.mode & 0o7777,
                a.uid,
                a.gid
            )),
            Ok(a) => StepName::GetattrRoot.problem(
                format!("the export's root is not a directory ({:?})", a.ftype),
                "export a directory",
            ),
            Err(e) => {
                self.report(StepName::GetattrRoot.problem(format!("GETATTR of the root handle from MNT: {}", e.describe()), "the NFS service does not accept the handle its MOUNT service gave (a stale or mismatched export): restart the server, see its log").took(took));
                return false;
            }
        };
        self.report(step.took(took));
        true
    }

    /// `readdirplus_root`: the root's entries (an empty root is a problem, but the walk goes on).
    async fn readdirplus_root(
        &mut self,
        nfs: &NfsClient,
        root: &NfsFh3,
    ) -> Option<Vec<EntryPlus3>> {
        let o = self.o;
        let start = Instant::now();
        let listing = list_dir(nfs, root, 4096).await;
        let took = start.elapsed();
        let (entries, more) = match listing {
            Ok(listing) => listing,
            Err(e) => {
                self.report(StepName::ReaddirplusRoot.problem(format!("READDIRPLUS of the root: {}", e.describe()), "the server cannot list its own directory (a failing FUSE backend?): see its log").took(took));
                return None;
            }
        };
        let names: Vec<String> = entries
            .iter()
            .take(5)
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect();
        let step = if entries.is_empty() {
            StepName::ReaddirplusRoot.problem(format!("READDIRPLUS: the export {} is empty", o.export), "the server serves an empty directory: if it should show a FUSE tree, it was started on the directory beneath the FUSE mount, or before the FUSE mount was there, or without allow_other (run mountshare doctor path DIR on the server)")
        } else {
            StepName::ReaddirplusRoot.ok(format!(
                "{}{} entries ({}{})",
                if more { "more than " } else { "" },
                entries.len(),
                names.join(", "),
                if entries.len() > names.len() {
                    ", ..."
                } else {
                    ""
                }
            ))
        };
        self.report(step.took(took));
        Some(entries)
    }

    /// `read_file`: READ the start of the first regular file found from the root's entries.
    async fn read_file(&mut self, nfs: &NfsClient, root_entries: Vec<EntryPlus3>) {
        let start = Instant::now();
        let step = match find_file(nfs, root_entries, self.o.timeout).await {
            Ok(Some((path, fh, size))) => {
                let count = size.clamp(1, 4096) as u32;
                let res = nfs
                    .read(&Read3Args {
                        file: fh,
                        offset: 0,
                        count,
                    })
                    .await
                    .and_then(|res| res.ok().map_err(ClientError::from));
                let took = start.elapsed();
                let step = match res {
                    Ok(ok) if ok.data.len() == count as usize || (ok.eof && ok.data.len() as u64 == size) => StepName::ReadFile.ok(format!("READ of {path}: {} bytes{}", ok.data.len(), if ok.data.len() as u64 == size { " (the whole file)".to_owned() } else { format!(" (of {})", mountshare_units::human_bytes(size)) })),
                    Ok(ok) => StepName::ReadFile.note(format!("READ of {path}: {} bytes returned for {count} asked (file of {size} bytes)", ok.data.len())),
                    Err(e) => StepName::ReadFile.problem(format!("READ of {path}: {}", e.describe()), "the server cannot read its own file (a failing FUSE backend, or files not readable by the server's uid): see its log"),
                };
                step.took(took)
            }
            Ok(None) => StepName::ReadFile
                .note("no regular file found in the first directories: READ not tried"),
            Err(e) => StepName::ReadFile.problem(
                format!("looking for a file to READ: {}", e.describe()),
                "the server fails to list a subdirectory: see its log",
            ),
        };
        self.report(step);
    }
}

/// A port number a portmapper gave, when it is one (0 means not registered).
fn port16(p: u32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p > 0)
}

/// A MOUNT client on `addr`, once MOUNT v3 answered NULL there.
async fn mount_at(addr: SocketAddr, t: Duration) -> Result<MountClient, String> {
    let (s, _) = connect(addr, t).await?;
    let client = MountClient::new(rpc(s, t));
    client.null().await.map_err(|e| e.describe())?;
    Ok(client)
}

/// Ask the portmapper at `addr`: NULL, GETPORT of NFS v3 and MOUNT v3 over TCP, DUMP.
async fn ask_portmapper(
    addr: SocketAddr,
    t: Duration,
) -> Result<(PortmapperView, Duration), String> {
    let start = Instant::now();
    let (s, _) = connect(addr, t).await?;
    let pm = PortmapClient::new(rpc(s, t));
    pm.null().await.map_err(|e| e.describe())?;
    let nfs = pm
        .getport(NFS_PROGRAM, NFS_V3, IPPROTO_TCP)
        .await
        .map_err(|e| e.describe())?;
    let mnt = pm
        .getport(MOUNT_PROGRAM, MOUNT_V3, IPPROTO_TCP)
        .await
        .map_err(|e| e.describe())?;
    let registrations = match pm.dump().await {
        Ok(list) => list
            .0
            .iter()
            .map(|m| Registration {
                program: m.prog,
                name: program_name(m.prog),
                version: m.vers,
                protocol: match m.prot {
                    IPPROTO_TCP => "tcp",
                    IPPROTO_UDP => "udp",
                    _ => "?",
                },
                port: m.port,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok((
        PortmapperView {
            address: addr.to_string(),
            answers: true,
            nfs_v3_tcp: Some(nfs),
            mount_v3_tcp: Some(mnt),
            registrations,
        },
        start.elapsed(),
    ))
}

/// Up to `cap` entries of `dir` (without `.` and `..`); true when there were more.
async fn list_dir(
    nfs: &NfsClient,
    dir: &NfsFh3,
    cap: usize,
) -> Result<(Vec<EntryPlus3>, bool), ClientError> {
    let mut pager = nfs.readdirplus_pager(dir);
    let mut out = Vec::new();
    while let Some(page) = pager.next_page().await? {
        out.extend(
            page.into_iter()
                .filter(|e| e.name != b"." && e.name != b".."),
        );
        if out.len() >= cap {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

/// The first regular file, breadth first from the root's entries, over at most 64 directories.
async fn find_file(
    nfs: &NfsClient,
    root_entries: Vec<EntryPlus3>,
    t: Duration,
) -> Result<Option<(String, NfsFh3, u64)>, ClientError> {
    let mut queue: VecDeque<(String, Vec<EntryPlus3>)> = VecDeque::new();
    queue.push_back((String::new(), root_entries));
    let mut listed = 1;
    let deadline = Instant::now() + t;
    while let Some((prefix, entries)) = queue.pop_front() {
        let mut dirs = Vec::new();
        for e in entries {
            let name = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
            let (Some(attr), Some(fh)) = (e.name_attributes.0, e.name_handle.0) else {
                continue;
            };
            match attr.ftype {
                Ftype3::Reg => return Ok(Some((name, fh, attr.size))),
                Ftype3::Dir => dirs.push((name, fh)),
                _ => {}
            }
        }
        for (name, fh) in dirs {
            if listed >= 64 || Instant::now() >= deadline {
                return Ok(None);
            }
            listed += 1;
            let (sub, _) = list_dir(nfs, &fh, 4096).await?;
            queue.push_back((name, sub));
        }
    }
    Ok(None)
}

impl ServerReport {
    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "mountshare doctor server {} (export {})",
            self.server, self.export
        );
        let _ = writeln!(out);
        out.push_str(&render_steps(&self.steps));
        if let Some(pm) = &self.portmapper {
            if !pm.registrations.is_empty() {
                let regs: Vec<String> = pm
                    .registrations
                    .iter()
                    .map(|g| format!("{} v{} {} {}", g.name, g.version, g.protocol, g.port))
                    .collect();
                let _ = writeln!(
                    out,
                    "\nportmapper at {} lists: {}",
                    pm.address,
                    regs.join("; ")
                );
            }
        }
        if let Some(l) = &self.mount_lines {
            let caveat = if self.problems > 0 {
                " (once the problems above are fixed)"
            } else {
                ""
            };
            let _ = writeln!(out, "\nMount lines for this server{caveat}:");
            let _ = writeln!(out, "  kernel:\n    {}", l.kernel);
            let _ = writeln!(
                out,
                "  mount(2), as mountshare attach makes it:\n    source={} fstype={} flags={}\n    data={}",
                l.mount2.source,
                l.mount2.fstype,
                l.mount2.flags.join("|"),
                l.mount2.data
            );
            let _ = writeln!(out, "  mountshare attach:\n    {}", l.attach);
            let _ = writeln!(out, "  Kubernetes PersistentVolume:");
            for line in l.persistent_volume.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", verdict_line(self.problems));
        out
    }
}

/// True when a step of this name came out with this verdict (for callers and tests).
pub fn has(report: &ServerReport, step: &str, verdict: Verdict) -> bool {
    report
        .steps
        .iter()
        .any(|s| s.step == step && s.verdict == verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ServerOptions {
        ServerOptions {
            host: "127.0.0.1".into(),
            port: 2049,
            export: "/".into(),
            timeout: Duration::from_secs(5),
            portmap_port: 111,
            mount_port: None,
            target: "/mnt/dfs".into(),
        }
    }

    fn skipped_when_missing(missing: Need) -> Vec<(String, String)> {
        let o = options();
        let mut r = ServerReport::empty(&o);
        Walk { o: &o, r: &mut r }.skip_needing(missing);
        assert!(r.steps.iter().all(|s| s.verdict == Verdict::Skipped));
        r.steps
            .iter()
            .map(|s| (s.step.to_owned(), s.summary.clone()))
            .collect()
    }

    #[test]
    fn step_names_are_the_identifiers_reports_carry() {
        let names: Vec<String> = StepName::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "resolve",
                "tcp_connect",
                "nfs_null",
                "mount_null",
                "portmapper",
                "mount_lookup",
                "export_list",
                "mnt",
                "getattr_root",
                "readdirplus_root",
                "read_file"
            ]
        );
    }

    /// Skipped steps are reported together where the need turned out missing, so the steps
    /// needing one thing must follow each other: nothing that still runs may sit between them.
    #[test]
    fn the_steps_needing_one_thing_are_consecutive() {
        for need in [
            Need::Connection,
            Need::RpcAnswer,
            Need::Nfs,
            Need::Mount,
            Need::RootHandle,
            Need::RootAttributes,
            Need::RootListing,
        ] {
            let at: Vec<usize> = (0..StepName::ALL.len())
                .filter(|&i| StepName::ALL[i].needs().contains(&need))
                .collect();
            assert!(!at.is_empty(), "{need:?} is needed by no step");
            assert_eq!(at.len(), at[at.len() - 1] - at[0] + 1, "{need:?}: {at:?}");
        }
    }

    #[test]
    fn no_connection_skips_both_nulls_but_not_the_portmapper() {
        let skipped = skipped_when_missing(Need::Connection);
        let names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["nfs_null", "mount_null"]);
        assert!(skipped
            .iter()
            .all(|(_, why)| why == "not tried: no TCP connection"));
    }

    #[test]
    fn no_nfs_skips_everything_after_the_portmapper() {
        let skipped = skipped_when_missing(Need::Nfs);
        let names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "mount_lookup",
                "export_list",
                "mnt",
                "getattr_root",
                "readdirplus_root",
                "read_file"
            ]
        );
        assert!(skipped
            .iter()
            .all(|(_, why)| why == "not tried: NFS does not answer on the given port"));
    }

    #[test]
    fn a_failed_step_skips_the_later_ones_naming_it() {
        for (missing, steps, why) in [
            (
                Need::RpcAnswer,
                &["mount_null"][..],
                "not tried: port 2049 does not answer RPC",
            ),
            (
                Need::Mount,
                &[
                    "export_list",
                    "mnt",
                    "getattr_root",
                    "readdirplus_root",
                    "read_file",
                ][..],
                "not tried: no MOUNT service",
            ),
            (
                Need::RootHandle,
                &["getattr_root", "readdirplus_root", "read_file"][..],
                "not tried: MNT failed",
            ),
            (
                Need::RootAttributes,
                &["readdirplus_root", "read_file"][..],
                "not tried: GETATTR failed",
            ),
            (
                Need::RootListing,
                &["read_file"][..],
                "not tried: READDIRPLUS failed",
            ),
        ] {
            let skipped = skipped_when_missing(missing);
            let names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, steps, "{missing:?}");
            assert!(
                skipped.iter().all(|(_, w)| w == why),
                "{missing:?}: {skipped:?}"
            );
        }
    }
}
