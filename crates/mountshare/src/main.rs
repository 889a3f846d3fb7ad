//! The `mountshare` binary: command-line parsing and wiring of the library crates.

mod attach;
mod bench;
mod doctor;
mod serve;
mod supervise;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Share a directory (FUSE-backed or not) with Linux kernel NFS clients, and keep it mounted on nodes.
#[derive(Parser, Debug)]
#[command(name = "mountshare", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a directory read-only over NFSv3 (with MOUNT and PORTMAP on the same port).
    Serve(serve::ServeArgs),
    /// Keep an NFS export mounted at a host path and heal it without restarting consumers.
    Attach(attach::AttachArgs),
    /// Say which link of the chain is broken: what is mounted at a path, or how an NFS server answers.
    Doctor(doctor::DoctorArgs),
    /// Measure any NFSv3 server: sequential reads, metadata operations, directory walks.
    Bench(bench::BenchArgs),
}

/// Log to stderr through `tracing`, for `serve` and `attach`; `RUST_LOG` overrides the default
/// `info` level. In colour only on a terminal, and not when `NO_COLOR` is set: log files and
/// `kubectl logs` get plain text.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// `HOST[:PORT]` for `doctor server` and `bench --server`, with an error that names no flag
/// (`doctor server` takes it as an argument).
pub(crate) fn parse_server(s: &str) -> Result<mountshare_mounts::options::ServerAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?}: expected HOST or HOST:PORT (IPv6 as [ADDR]:PORT)"))
}

/// A report (`doctor`'s, `bench`'s) as pretty-printed JSON, for `--json`.
pub(crate) fn to_json<T: serde::Serialize>(report: &T) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Attach(args) => attach::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mountshare: {err:#}");
            ExitCode::from(2)
        }
    }
}
