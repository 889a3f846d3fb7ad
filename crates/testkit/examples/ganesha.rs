//! nfs-ganesha exactly as the tests run it ([`Ganesha::start`], with the rpcbind it needs), for
//! scripts that measure against it (scripts/bench-vs-ganesha.sh).
//!
//! `ganesha EXPORT NFS_PORT MOUNT_PORT` exports EXPORT read-only on 127.0.0.1, prints `ready`
//! once both ports answer, and stops ganesha (and the rpcbind it started) when its standard
//! input closes.

use mountshare_testkit::ganesha::Ganesha;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (export, nfs_port, mount_port) = match args.as_slice() {
        [export, nfs, mnt] => match (nfs.parse::<u16>(), mnt.parse::<u16>()) {
            (Ok(nfs), Ok(mnt)) => (Path::new(export), nfs, mnt),
            _ => return usage(),
        },
        _ => return usage(),
    };
    let ganesha = match Ganesha::start(export, nfs_port, mount_port) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("ganesha: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("ready");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(ganesha);
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: ganesha EXPORT NFS_PORT MOUNT_PORT");
    ExitCode::from(2)
}
