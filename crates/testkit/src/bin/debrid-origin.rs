//! debrid-origin: the test kit's debrid-like HTTP origin as a process, for benchmark scripts.
//!
//! ```text
//! debrid-origin --root DIR [--listen 127.0.0.1:PORT] [--ttfb-ms N] [--ttfb-on-head]
//!               [--mbit N] [--hang GLOB]... [--hang-secs N] [--trace]
//! ```
//!
//! Prints `listening http://127.0.0.1:PORT/` once it accepts connections, then serves until
//! killed. `--mbit` caps each response (megabits per second); `--hang GLOB` makes requests of
//! matching paths (`/dir/*`) hang, for `--hang-secs` seconds each or, without it, until killed.
//! `--trace` prints every request to stderr.
use mountshare_testkit::origin::{HangFor, Origin, OriginOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("debrid-origin: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut root: Option<PathBuf> = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let mut options = OriginOptions::default();
    let mut hang = Vec::new();
    let mut hang_secs: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |v: String, name: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{name} needs a number, not {v:?}"))
        };
        match arg.as_str() {
            "--root" => root = Some(PathBuf::from(value("--root")?)),
            "--listen" => {
                let v = value("--listen")?;
                listen = v
                    .parse()
                    .map_err(|_| format!("--listen: not an address: {v:?}"))?;
            }
            "--ttfb-ms" => {
                options.ttfb = Duration::from_millis(number(value("--ttfb-ms")?, "--ttfb-ms")?)
            }
            "--ttfb-on-head" => options.ttfb_on_head = true,
            "--trace" => options.trace = true,
            "--mbit" => {
                let mbit = number(value("--mbit")?, "--mbit")?;
                options.bandwidth = (mbit > 0).then(|| mbit.saturating_mul(1_000_000) / 8);
            }
            "--hang" => hang.push(value("--hang")?),
            "--hang-secs" => hang_secs = Some(number(value("--hang-secs")?, "--hang-secs")?),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    let root = root.ok_or("--root is required")?;
    let origin = Origin::start_on(&root, options, listen).map_err(|e| e.to_string())?;
    let how_long = hang_secs.map_or(HangFor::Released, |s| HangFor::Time(Duration::from_secs(s)));
    for glob in &hang {
        origin.hang(glob, how_long);
    }
    println!("listening {}", origin.url());
    loop {
        std::thread::park();
    }
}
