//! `mountshare doctor`: `path DIR` explains what is mounted at a directory; `server HOST[:PORT]`
//! walks an NFSv3 server step by step and prints mount lines that work for it. Exit 0 when
//! healthy, 1 when problems were found, 2 when the doctor could not run.

use anyhow::Context;
use mountshare_doctor::{path, server};
use mountshare_mounts::mountinfo::MountTable;
use mountshare_mounts::options::{normalize_export, ServerAddr};
use mountshare_units::parse_duration;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Explain what is mounted at DIR: the stack of mounts, the file system on top (NFS, FUSE or
    /// only a bind mount), propagation and peer groups, FUSE allow_other; stat and list it
    /// within a deadline.
    Path(PathArgs),
    /// Walk an NFSv3 server as a kernel client would (TCP, NULL, portmapper, EXPORT, MNT,
    /// GETATTR, READDIRPLUS, READ), then print mount lines that work for it.
    Server(ServerArgs),
}

#[derive(clap::Args, Debug)]
struct PathArgs {
    /// The directory to explain.
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How long the stat and the readdir of DIR may each take.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Read the mount table from FILE instead of /proc/self/mountinfo: /proc/PID/mountinfo shows
    /// another process's (a container's) view, and DIR is then probed through /proc/PID/root.
    /// Any other file is analysed without probing. Also taken from $MOUNTSHARE_MOUNTINFO.
    #[arg(long, value_name = "FILE")]
    mountinfo: Option<PathBuf>,
    /// Another mount table to compare DIR with, e.g. /proc/PID/mountinfo of the container that
    /// made the mount: does DIR show the same file system there, and can mounts propagate?
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// The NFS server, HOST[:PORT] (default port 2049).
    #[arg(value_parser = crate::parse_server, value_name = "HOST[:PORT]")]
    server: ServerAddr,
    /// The export to mount.
    #[arg(long, default_value = "/", value_name = "PATH")]
    export: String,
    /// How long each step may take.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The directory the printed mount lines mount at.
    #[arg(long, default_value = "/mnt/dfs", value_name = "DIR")]
    target: String,
    /// Try MOUNT on this port when it is not on the NFS port and no portmapper names one.
    #[arg(long, value_name = "PORT")]
    mount_port: Option<u16>,
    /// Where to ask a portmapper (for tests; kernels always ask on 111).
    #[arg(long, default_value_t = 111, hide = true)]
    portmap_port: u16,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Path(a) => run_path(a),
        What::Server(a) => run_server(a),
    }
}

fn emit(json: bool, as_json: impl FnOnce() -> String, as_text: impl FnOnce() -> String) {
    if json {
        println!("{}", as_json());
    } else {
        print!("{}", as_text());
    }
}

fn exit_for(healthy: bool) -> ExitCode {
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `/proc/PID/mountinfo` → `/proc/PID/root`.
fn proc_root(file: &std::path::Path) -> Option<PathBuf> {
    let s = file.to_str()?;
    let pid = s.strip_prefix("/proc/")?.strip_suffix("/mountinfo")?;
    if pid == "self" || pid == "thread-self" || pid.parse::<u32>().is_ok() {
        Some(PathBuf::from(format!("/proc/{pid}/root")))
    } else {
        None
    }
}

fn run_path(a: PathArgs) -> anyhow::Result<ExitCode> {
    let file = a
        .mountinfo
        .clone()
        .or_else(|| std::env::var_os("MOUNTSHARE_MOUNTINFO").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/proc/self/mountinfo"));
    let text = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let table =
        MountTable::parse(&text).with_context(|| format!("cannot parse {}", file.display()))?;
    let dir = path::clean_path(&a.dir).map_err(anyhow::Error::msg)?;
    let mut report = path::analyze(&table, &dir, &file.display().to_string());
    if let Some(other) = &a.compare {
        let text =
            std::fs::read(other).with_context(|| format!("cannot read {}", other.display()))?;
        let table = MountTable::parse(&text)
            .with_context(|| format!("cannot parse {}", other.display()))?;
        path::compare(&mut report, &table, &other.display().to_string());
    }
    match proc_root(&file) {
        Some(root) => {
            let probed = if root == std::path::Path::new("/proc/self/root") {
                dir.clone()
            } else {
                root.join(dir.strip_prefix("/").unwrap_or(&dir))
            };
            path::probe(&mut report, &probed, a.timeout);
        }
        None => {
            report.findings.push(mountshare_doctor::Step::skipped(
                "stat",
                format!(
                    "not tried: the mount table comes from {}, not from a process",
                    file.display()
                ),
            ));
        }
    }
    emit(a.json, || crate::to_json(&report), || report.render());
    Ok(exit_for(report.healthy))
}

fn run_server(a: ServerArgs) -> anyhow::Result<ExitCode> {
    let export = normalize_export(&a.export)?;
    let opts = server::ServerOptions {
        host: a.server.host.clone(),
        port: a.server.port,
        export,
        timeout: a.timeout,
        portmap_port: a.portmap_port,
        mount_port: a.mount_port,
        target: a.target.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(server::diagnose(&opts));
    emit(a.json, || crate::to_json(&report), || report.render());
    Ok(exit_for(report.healthy))
}
