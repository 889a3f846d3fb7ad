//! `mountshare bench --server HOST[:PORT]`: load any NFSv3 server through the in-repo client
//! and print MB/s, ops/s and latency percentiles. Exit 0 when every operation succeeded, 1 when
//! some failed, 2 when the bench could not run.

use anyhow::{bail, Context};
use mountshare_bench::workload::{self, Limits, Setup};
use mountshare_bench::BenchReport;
use mountshare_mounts::options::{normalize_export, ServerAddr};
use mountshare_units::{parse_duration, parse_size};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

fn parse_read_size(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= mountshare_client::proto::nfs3::MAX_DATA_LEN)
        .ok_or_else(|| format!("{s:?}: at most 1MiB"))
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// With --file: read those files; without: walk the export, then read its largest file.
    Auto,
    /// Sequential READ of the --file paths.
    Read,
    /// A GETATTR/LOOKUP mix over the entries of --dir.
    Meta,
    /// A full READDIRPLUS walk of --dir.
    Walk,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The NFS server, HOST[:PORT] (default port 2049).
    #[arg(long, value_parser = crate::parse_server, value_name = "HOST[:PORT]")]
    server: ServerAddr,
    /// The export to mount.
    #[arg(long, default_value = "/", value_name = "PATH")]
    export: String,
    /// MOUNT port, when it is not on the NFS port and no portmapper on 111 names it.
    #[arg(long, value_name = "PORT")]
    mount_port: Option<u16>,
    #[arg(long, value_enum, default_value_t = Workload::Auto)]
    workload: Workload,
    /// A file to read, as a path below the export (repeatable; read in turn).
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<String>,
    /// The directory of the meta and walk workloads, below the export.
    #[arg(long, default_value = "/", value_name = "PATH")]
    dir: String,
    /// Bytes per READ (at most 1MiB, and at most the server's rtmax).
    #[arg(long, default_value = "1MiB", value_parser = parse_read_size, value_name = "SIZE")]
    read_size: u32,
    /// Requests outstanding per connection.
    #[arg(long, default_value_t = 8, value_name = "N")]
    in_flight: usize,
    /// TCP connections to the NFS port.
    #[arg(long, default_value_t = 1, value_name = "N")]
    connections: usize,
    /// Fixed-duration mode: issue requests for this long (e.g. 10s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,
    /// Fixed-bytes mode: read exactly this many bytes (e.g. 1GiB), going round the files.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    bytes: Option<u64>,
    /// Operations of the meta workload (default 10000 unless --duration).
    #[arg(long, value_name = "N")]
    ops: Option<u64>,
    /// Limit on each call.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Where to ask a portmapper for MOUNT (for tests; 111 everywhere else).
    #[arg(long, default_value_t = 111, hide = true)]
    portmap_port: u16,
}

/// The default workload's bounds: a walk and a read of the largest file each stop after this.
const DEFAULT_PHASE_TIME: Duration = Duration::from_secs(10);
const DEFAULT_READ_BYTES: u64 = 1 << 30;
const DEFAULT_WALK_ENTRIES: u64 = 1_000_000;

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let export = normalize_export(&args.export)?;
    if args.in_flight == 0 || args.in_flight > 1024 {
        bail!("--in-flight must be between 1 and 1024");
    }
    if args.connections == 0 || args.connections > 64 {
        bail!("--connections must be between 1 and 64");
    }
    let workload = match args.workload {
        Workload::Auto if !args.files.is_empty() => Workload::Read,
        Workload::Read if args.files.is_empty() => {
            bail!("--workload read needs at least one --file")
        }
        w => w,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let host = args.server.host.as_str();
        let nfs: SocketAddr = tokio::net::lookup_host((host, args.server.port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;
        let mount_port = match args.mount_port {
            Some(p) => p,
            None => {
                let limit = args.timeout.min(Duration::from_secs(10));
                mountshare_client::find_mount_port(nfs, args.portmap_port, limit).await?
            }
        };
        let setup = Setup {
            nfs,
            mount_port,
            export: export.clone(),
            timeout: args.timeout,
            connections: args.connections,
            in_flight: args.in_flight,
        };
        let sess = workload::open(&setup).await.map_err(anyhow::Error::msg)?;
        let read_size = args.read_size.min(sess.rtmax);
        let mut phases = Vec::new();
        match workload {
            Workload::Read => {
                let mut files = Vec::new();
                for f in &args.files {
                    files.push(workload::resolve_file(&sess, f).await.map_err(anyhow::Error::msg)?);
                }
                let limits = Limits { bytes: args.bytes, duration: args.duration, ..Limits::default() };
                phases.push(workload::read(&sess, files, read_size, limits).await);
            }
            Workload::Meta => {
                let dir = workload::resolve_dir(&sess, &args.dir).await.map_err(anyhow::Error::msg)?;
                let limits = Limits { ops: args.ops, duration: args.duration, ..Limits::default() };
                phases.push(workload::meta(&sess, dir, &args.dir, limits).await);
            }
            Workload::Walk => {
                let dir = workload::resolve_dir(&sess, &args.dir).await.map_err(anyhow::Error::msg)?;
                let limits = Limits { duration: args.duration, ..Limits::default() };
                phases.push(workload::walk(&sess, dir, &args.dir, limits).await.0);
            }
            Workload::Auto => {
                let dir = workload::resolve_dir(&sess, &args.dir).await.map_err(anyhow::Error::msg)?;
                let limits = Limits {
                    duration: Some(args.duration.unwrap_or(DEFAULT_PHASE_TIME)),
                    entries: Some(DEFAULT_WALK_ENTRIES),
                    ..Limits::default()
                };
                let (walked, largest) = workload::walk(&sess, dir, &args.dir, limits).await;
                phases.push(walked);
                match largest {
                    Some(f) if f.size > 0 => {
                        let limits = Limits {
                            bytes: Some(args.bytes.unwrap_or(f.size.min(DEFAULT_READ_BYTES))),
                            duration: Some(args.duration.unwrap_or(DEFAULT_PHASE_TIME)),
                            ..Limits::default()
                        };
                        phases.push(workload::read(&sess, vec![f], read_size, limits).await);
                    }
                    _ => eprintln!("mountshare: no non-empty regular file found: the read workload was skipped"),
                }
            }
        }
        Ok::<_, anyhow::Error>(BenchReport {
            server: args.server.to_string(),
            nfs_port: nfs.port(),
            mount_port,
            export,
            connections: args.connections,
            in_flight: args.in_flight,
            read_size,
            phases,
        })
    })?;
    if args.json {
        println!("{}", crate::to_json(&report));
    } else {
        print!("{}", report.render());
    }
    Ok(if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
