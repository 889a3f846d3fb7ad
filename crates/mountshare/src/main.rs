//! The `mountshare` binary: command-line parsing and wiring of the library crates.

mod attach;
mod serve;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Attach(args) => attach::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mountshare: {err:#}");
            ExitCode::from(2)
        }
    }
}
