//! The `mountshare` binary: command-line parsing and wiring of the library crates.

mod attach;
mod bench;
mod doctor;
mod install;
mod serve;
mod supervise;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::OnceLock;

/// Share a directory (FUSE-backed or not) with Linux kernel NFS clients, and keep it mounted on nodes.
#[derive(Parser, Debug)]
#[command(name = "mountshare", version, about)]
struct Cli {
    /// Log lines as plain text (no colours unless stderr is a terminal) or as one JSON object
    /// per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Set once from `--log-format` before any subcommand runs.
static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a directory read-only over NFSv3 (with MOUNT and PORTMAP on the same port).
    Serve(Box<serve::ServeArgs>),
    /// Keep an NFS export mounted at a host path and heal it without restarting consumers.
    Attach(attach::AttachArgs),
    /// Say which link of the chain is broken: what is mounted at a path, or how an NFS server answers.
    Doctor(doctor::DoctorArgs),
    /// Measure any NFSv3 server: sequential reads, metadata operations, directory walks.
    Bench(bench::BenchArgs),
    /// Copy this executable into DIR (atomically, mode 0755): for init containers without `cp`.
    Install(install::InstallArgs),
}

/// Log to stderr through `tracing`; `RUST_LOG` overrides the default `info` level. Text has
/// ANSI colours only when stderr is a terminal and `NO_COLOR` is unset, so `kubectl logs` and
/// log collectors get plain lines; `--log-format json` gives one JSON object per line.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match LOG_FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => {
            let no_colour = matches!(std::env::var_os("NO_COLOR"), Some(v) if !v.is_empty());
            let colour = std::io::stderr().is_terminal() && !no_colour;
            builder.with_ansi(colour).try_init()
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
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
    let _ = LOG_FORMAT.set(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Attach(args) => attach::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Install(args) => install::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mountshare: {err:#}");
            ExitCode::from(2)
        }
    }
}
