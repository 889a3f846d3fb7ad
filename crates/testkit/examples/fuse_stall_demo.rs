//! The FUSE-layer stall, measured on the host with no NFS involved: with 40 reads hung in a FUSE
//! daemon that keeps the kernel's default `max_background` (12, like rclone and go-fuse), how
//! long does `md5sum` of a healthy 5 MiB file on the same mount take; and after the connection is
//! tuned by `mountshare_mounts::fuse`?
//!
//! Run it through `scripts/fuse-stall-demo.sh` (root, /dev/fuse). It prints figures, asserts
//! nothing.
//!
//! ```text
//! fuse_stall_demo [--hung N] [--cap SECONDS]
//! ```

use mountshare_mounts::fuse::{self, FuseConnection, DEFAULT_MAX_BACKGROUND};
use mountshare_testkit::hangfs::{hangfs_binary, HangFs, HangFsOptions};
use mountshare_testkit::tree::TreeBuilder;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn main() {
    let mut hung = 40usize;
    let mut cap = Duration::from_secs(30);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--hung", Some(n)) if n > 0 => hung = n as usize,
            ("--cap", Some(s)) if s > 0 => cap = Duration::from_secs(s),
            _ => {
                eprintln!("usage: fuse_stall_demo [--hung N] [--cap SECONDS]");
                std::process::exit(2);
            }
        }
    }
    let bin = hangfs_binary().expect("the hangfs binary");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let tree = TreeBuilder::new(&source).unwrap();
    for i in 0..hung {
        tree.file(format!("hang/h{i:03}.bin"), 1 << 20, i as u64)
            .unwrap();
    }
    tree.file("hang/big.bin", 4 << 20, 99).unwrap();
    tree.file("ok/healthy-a.bin", 5 << 20, 1).unwrap();
    tree.file("ok/healthy-b.bin", 5 << 20, 2).unwrap();
    let options = HangFsOptions {
        hang: vec!["hang/*".into()],
        ..HangFsOptions::default().kernel_default_max_background()
    };

    // 1. Kernel default max_background (12).
    let mut fs = HangFs::start(&bin, &source, &mnt, options.clone()).unwrap();
    let conn = FuseConnection::find_path(&mnt).unwrap();
    println!(
        "connection {}: {}",
        conn.dir().display(),
        conn.limits().unwrap()
    );
    let readers = start_readers(&mnt, hung);
    let in_daemon = fs.wait_hung(hung.min(12), Duration::from_secs(60)).unwrap();
    // The readers beyond 12 wait in the kernel; let them all get there.
    for _ in 0..3000 {
        if conn.waiting().unwrap() as usize >= hung {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "default: {hung} readers of hanging files, {in_daemon} of their reads in the daemon, \
         {} requests waiting on the connection",
        conn.waiting().unwrap()
    );
    let mut md5 = spawn_md5sum(&mnt.join("ok/healthy-a.bin"));
    let t0 = Instant::now();
    let finished = wait_child(&mut md5, cap);
    match finished {
        true => println!(
            "default: md5sum of a healthy 5 MiB file took {}",
            ms(t0.elapsed())
        ),
        false => {
            let outcome = fuse::tune_path(&mnt, DEFAULT_MAX_BACKGROUND);
            let t1 = Instant::now();
            let done = wait_child(&mut md5, Duration::from_secs(60));
            println!(
                "default: md5sum of a healthy 5 MiB file had not finished after {} s; \
                 tuning it then ({outcome}) let it finish {} later{}",
                cap.as_secs(),
                ms(t1.elapsed()),
                if done { "" } else { " (or not at all)" }
            );
        }
    }
    fs.release_all().unwrap();
    join(readers);
    fs.stop();

    // 2. The same, the connection tuned as soon as it is mounted (what serve will do).
    let mut fs = HangFs::start(&bin, &source, &mnt, options).unwrap();
    let outcome = fuse::tune_path(&mnt, DEFAULT_MAX_BACKGROUND);
    println!("tuned: {outcome}");
    let readers = start_readers(&mnt, hung);
    let in_daemon = fs.wait_hung(hung, Duration::from_secs(60)).unwrap();
    let conn = FuseConnection::find_path(&mnt).unwrap();
    println!(
        "tuned: {hung} readers of hanging files, {in_daemon} of their reads in the daemon, \
         {} requests waiting on the connection",
        conn.waiting().unwrap()
    );
    let mut md5 = spawn_md5sum(&mnt.join("ok/healthy-b.bin"));
    let t0 = Instant::now();
    if wait_child(&mut md5, cap) {
        println!(
            "tuned: md5sum of a healthy 5 MiB file took {}",
            ms(t0.elapsed())
        );
    } else {
        println!(
            "tuned: md5sum of a healthy 5 MiB file had not finished after {} s",
            cap.as_secs()
        );
    }
    fs.release_all().unwrap();
    join(readers);

    // 3. How many background requests one stuck 1 MiB pread holds (what the server's stuck
    //    READs cost the connection).
    let before = fs.hung().unwrap();
    let big = mnt.join("hang/big.bin");
    fs.hang("hang/*").unwrap();
    let reader = std::thread::spawn(move || {
        let file = File::open(big).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let _ = file.read_at(&mut buf, 0);
    });
    fs.wait_hung(before + 1, Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "one stuck 1 MiB pread holds {} FUSE read requests in the daemon",
        fs.hung().unwrap() - before
    );
    fs.release_all().unwrap();
    reader.join().unwrap();
    fs.stop();
}

fn start_readers(mnt: &Path, n: usize) -> Vec<JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let path: PathBuf = mnt.join(format!("hang/h{i:03}.bin"));
            std::thread::spawn(move || {
                let _ = std::fs::read(path);
            })
        })
        .collect()
}

fn join(readers: Vec<JoinHandle<()>>) {
    for r in readers {
        let _ = r.join();
    }
}

fn spawn_md5sum(path: &Path) -> std::process::Child {
    Command::new("md5sum")
        .arg(path)
        .stdout(Stdio::null())
        .spawn()
        .expect("run md5sum")
}

/// Waits up to `limit` for the child; true when it exited (successfully).
fn wait_child(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
