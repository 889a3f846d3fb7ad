//! How fresh the Linux kernel client's view of a `mountshare serve` export is, and what that costs
//! the server, with the shipped mount options (`lookupcache=positive,acdirmin=1,acdirmax=2`)
//! beside the kernel's defaults (`acdirmin=30,acdirmax=60,lookupcache=all`). Run by
//! scripts/bench-fresh.sh:
//!
//! ```text
//! freshness --bin MOUNTSHARE --work DIR [--folders 10000] [--rounds 3] [--idle 30] [--cap 90]
//!           [--scan-gap 0] [--refresh 2s]
//! ```
//!
//! It builds, in a temporary directory below DIR, `__all__/item-NNNNN/video.mkv` (FOLDERS folders
//! of one small file) and `media/item-NNNNN.mkv -> ../__all__/item-NNNNN/video.mkv` (as a media
//! folder holds them), and serves it with two `mountshare serve` processes, one per option set,
//! so that each set's calls are counted apart (`/metrics`). One VM boots and mounts each server
//! four times, with `nosharecache` so that each mount has its own caches: one for the scans, and
//! one for each of the three things the delay rounds watch, so that watching one never tells the
//! client about the change on behalf of another (a LOOKUP's reply carries the directory's
//! attributes, which would make the client drop its listing and negative entries at once).
//!
//! 1. Scans: `find -L media -type f` (one readdir, and one `stat` per file through its symlink,
//!    as a media server's library scan does) twice on each set's scan mount, SCAN_GAP seconds
//!    apart; the duration, the NFS calls by procedure and the directory listings the server made.
//! 2. Idle: IDLE seconds with the guest doing nothing; calls and listings per second.
//! 3. Delay, ROUNDS rounds: every watching mount lists `__all__` and looks up the missing
//!    `__all__/new-R/video.mkv`; the host then makes `__all__/new-R/` and `__all__/new2-R/` (each
//!    with a `video.mkv`) and tells the guest, which polls every 0.1 s and reports the
//!    milliseconds until (a) `ls __all__` shows `new-R`, (b) the never-looked-up
//!    `__all__/new2-R/video.mkv` opens, (c) the missed `__all__/new-R/video.mkv` opens; each
//!    capped at CAP seconds.
//!
//! The report goes to stdout, the guest's console and progress to stderr.

use mountshare_testkit::server::{free_ports, wait_for_port, ServerProcess};
use mountshare_testkit::tempfile;
use mountshare_testkit::vm::{self, Vm, VmConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(60);
/// The mount options every set shares (the port is added per server).
const BASE_OPTIONS: &str = "vers=3,port={p},mountport={p},tcp,nolock,soft";
/// The option sets compared: a name and what it adds to [`BASE_OPTIONS`].
const SETS: [(&str, &str); 2] = [
    ("shipped", "lookupcache=positive,acdirmin=1,acdirmax=2"),
    ("defaults", ""),
];
const CONDITIONS: [(&str, &str); 3] = [
    ("a", "ls __all__ shows new-R"),
    ("b", "never-looked-up __all__/new2-R/video.mkv opens"),
    ("c", "missed __all__/new-R/video.mkv opens"),
];

struct Params {
    bin: PathBuf,
    work: PathBuf,
    folders: usize,
    rounds: usize,
    idle: u64,
    cap: u64,
    scan_gap: u64,
    refresh: String,
}

const USAGE: &str = "usage: freshness --bin MOUNTSHARE --work DIR [--folders N] [--rounds R] \
    [--idle SECONDS] [--cap SECONDS] [--scan-gap SECONDS] [--refresh DURATION]";

fn params() -> Result<Params, String> {
    let mut p = Params {
        bin: PathBuf::new(),
        work: PathBuf::new(),
        folders: 10_000,
        rounds: 3,
        idle: 30,
        cap: 90,
        scan_gap: 0,
        refresh: "2s".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} takes a number, not {v:?}"))
        };
        match flag.as_str() {
            "--bin" => p.bin = PathBuf::from(value),
            "--work" => p.work = PathBuf::from(value),
            "--folders" => p.folders = number(value)? as usize,
            "--rounds" => p.rounds = number(value)? as usize,
            "--idle" => p.idle = number(value)?,
            "--cap" => p.cap = number(value)?,
            "--scan-gap" => p.scan_gap = number(value)?,
            "--refresh" => p.refresh = value.clone(),
            _ => return Err(format!("unknown argument {flag}; {USAGE}")),
        }
    }
    if p.bin.as_os_str().is_empty() || p.work.as_os_str().is_empty() {
        return Err(USAGE.into());
    }
    if p.folders == 0 || p.rounds == 0 || p.cap == 0 {
        return Err("--folders, --rounds and --cap must be at least 1".into());
    }
    Ok(p)
}

fn build_tree(root: &Path, folders: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(root.join("__all__"))?;
    std::fs::create_dir_all(root.join("media"))?;
    for i in 0..folders {
        let name = format!("item-{i:05}");
        let dir = root.join("__all__").join(&name);
        std::fs::create_dir(&dir)?;
        std::fs::write(dir.join("video.mkv"), b"video\n")?;
        std::os::unix::fs::symlink(
            format!("../__all__/{name}/video.mkv"),
            root.join("media").join(format!("{name}.mkv")),
        )?;
    }
    Ok(())
}

/// The counters of one server's `/metrics` that the report uses.
#[derive(Debug, Default, Clone)]
struct Snap {
    /// NFS calls by procedure, summed over status.
    calls: BTreeMap<String, u64>,
    listings_first: u64,
    listings_refresh: u64,
    changes: u64,
}

impl Snap {
    fn since(&self, before: &Snap) -> Snap {
        Snap {
            calls: self
                .calls
                .iter()
                .map(|(k, v)| (k.clone(), v - before.calls.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect(),
            listings_first: self.listings_first - before.listings_first,
            listings_refresh: self.listings_refresh - before.listings_refresh,
            changes: self.changes - before.changes,
        }
    }
    fn total(&self) -> u64 {
        self.calls.values().sum()
    }
    fn listings(&self) -> u64 {
        self.listings_first + self.listings_refresh
    }
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

fn parse_metrics(text: &str) -> Snap {
    let mut snap = Snap::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let value = value as u64;
        let (name, labels) = key.split_once('{').unwrap_or((key, ""));
        match name {
            "mountshare_serve_calls_total" if label(labels, "program") == Some("nfs") => {
                let procedure = label(labels, "procedure").unwrap_or("?").to_string();
                *snap.calls.entry(procedure).or_default() += value;
            }
            "mountshare_serve_dir_listings_total" => match label(labels, "reason") {
                Some("first") => snap.listings_first += value,
                Some("refresh") => snap.listings_refresh += value,
                _ => {}
            },
            "mountshare_serve_dir_changes_total" => snap.changes += value,
            _ => {}
        }
    }
    snap
}

fn metrics(health: u16) -> Result<Snap, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, health));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("ask {addr} for /metrics: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("read /metrics from {addr}: {e}"))?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP reply from {addr}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "/metrics of {addr}: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(parse_metrics(body))
}

struct OptionSet {
    name: &'static str,
    options: String,
    server: ServerProcess,
    health: u16,
}

fn guest_script(p: &Params, sets: &[OptionSet]) -> String {
    let mut s = String::from(
        r#"cs() { read u _ </proc/uptime; echo "${u%.*}${u#*.}"; }
check() {
    case $2 in
    a) ls "/mnt/$1-a/__all__" 2>/dev/null | grep -qx "new-$r" ;;
    b) cat "/mnt/$1-b/__all__/new2-$r/video.mkv" >/dev/null 2>&1 ;;
    c) cat "/mnt/$1-c/__all__/new-$r/video.mkv" >/dev/null 2>&1 ;;
    esac
}
"#,
    );
    let names: Vec<&str> = sets.iter().map(|s| s.name).collect();
    let names = names.join(" ");
    for set in sets {
        let options = vm::kernel_mount_options(&set.options);
        for m in ["scan", "a", "b", "c"] {
            s += &format!(
                "nfs_mount '{options},nosharecache' '{}:/' /mnt/{}-{m}\n",
                vm::HOST_IP,
                set.name
            );
        }
    }
    s += &format!(
        r#"grep ' /mnt/' /proc/mounts | while read -r _ mnt _ opts _; do say "@@MNT $mnt $opts"; done
say "@@MNT end"
for set in {names}; do
    for pass in 1 2; do
        [ "$pass" = 2 ] && sleep {gap}
        say "@@PHASE scan $set $pass"
        host_wait
        t0=$(cs)
        n=$(find -L "/mnt/$set-scan/media" -type f | wc -l)
        say "@@SCAN $set $pass $(( ($(cs) - t0) * 10 )) $n"
    done
done
say "@@PHASE idle"
host_wait
for r in $(seq 1 {rounds}); do
    for set in {names}; do
        for c in a b c; do
            ls "/mnt/$set-$c/__all__" >/dev/null
            if cat "/mnt/$set-$c/__all__/new-$r/video.mkv" >/dev/null 2>&1; then
                say "@@FAIL new-$r exists before the round"; exit 1
            fi
        done
    done
    say "@@ARMED $r"
    host_wait
    t0=$(cs)
    left={left}
    polls=0
    while [ "$left" -gt 0 ] && [ $(( ($(cs) - t0) * 10 )) -le {cap_ms} ]; do
        polls=$((polls + 1))
        for set in {names}; do
            for c in a b c; do
                [ -e "/tmp/seen-$r-$set-$c" ] && continue
                if check "$set" "$c"; then
                    touch "/tmp/seen-$r-$set-$c"
                    say "@@R seen $set $c $(( ($(cs) - t0) * 10 ))"
                    left=$((left - 1))
                fi
            done
        done
        usleep 100000
    done
    say "@@R end $polls $(( ($(cs) - t0) * 10 ))"
done
"#,
        gap = p.scan_gap,
        rounds = p.rounds,
        left = sets.len() * CONDITIONS.len(),
        cap_ms = p.cap * 1000,
    );
    s
}

struct Scan {
    ms: u64,
    files: u64,
    cost: Snap,
}

struct Round {
    /// (set, condition) -> ms, for what was seen within the cap.
    seen: BTreeMap<(String, String), u64>,
    polls: u64,
    ms: u64,
    /// Each set's server calls from the host's mkdir to the end of the round.
    cost: Vec<Snap>,
}

fn field<T: std::str::FromStr>(line: &str, i: usize) -> Result<T, String> {
    line.split_whitespace()
        .nth(i)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("cannot read field {i} of the guest's line {line:?}"))
}

fn run(p: &Params) -> Result<(), String> {
    let started = Instant::now();
    std::fs::create_dir_all(&p.work).map_err(|e| format!("create {}: {e}", p.work.display()))?;
    let work = tempfile::Builder::new()
        .prefix("freshness-")
        .tempdir_in(&p.work)
        .map_err(|e| format!("create a directory below {}: {e}", p.work.display()))?;
    let root = work.path().join("tree");
    eprintln!(
        "freshness: building {} folders and symlinks in {}",
        p.folders,
        root.display()
    );
    build_tree(&root, p.folders).map_err(|e| format!("build the tree: {e}"))?;

    let ports = free_ports(2 * SETS.len());
    let mut sets = Vec::new();
    for (i, (name, extra)) in SETS.iter().enumerate() {
        let (nfs, health) = (ports[2 * i], ports[2 * i + 1]);
        let health_addr = format!("127.0.0.1:{health}");
        let server = ServerProcess::start(
            &p.bin,
            &root,
            SocketAddr::from((Ipv4Addr::LOCALHOST, nfs)),
            &[
                "--listen-health",
                &health_addr,
                "--refresh-interval",
                &p.refresh,
            ],
        )
        .map_err(|e| format!("start mountshare serve for {name}: {e}"))?;
        wait_for_port(SocketAddr::from((Ipv4Addr::LOCALHOST, health)), MINUTE)
            .map_err(|e| format!("the health port of {name}: {e}"))?;
        let mut options = BASE_OPTIONS.replace("{p}", &nfs.to_string());
        if !extra.is_empty() {
            options = format!("{options},{extra}");
        }
        sets.push(OptionSet {
            name,
            options,
            server,
            health,
        });
    }

    let script = guest_script(p, &sets);
    let mut guest = Vm::boot(VmConfig {
        name: "fresh".into(),
        script,
        memory_mb: 1024,
        ..VmConfig::default()
    })
    .map_err(|e| format!("boot the VM: {e}"))?;

    let mut mounted = Vec::new();
    loop {
        let line = guest
            .wait_for("@@MNT ", 5 * MINUTE)
            .map_err(|e| e.to_string())?;
        if line == "@@MNT end" {
            break;
        }
        mounted.push(line["@@MNT ".len()..].to_string());
    }
    if mounted.len() != 4 * sets.len() {
        return Err(format!("the guest mounted {mounted:?}"));
    }

    // Scans.
    let scan_timeout = 30 * MINUTE;
    let mut scans: BTreeMap<(String, u32), Scan> = BTreeMap::new();
    for set in &sets {
        for pass in 1..=2u32 {
            guest
                .wait_for(&format!("@@PHASE scan {} {pass}", set.name), scan_timeout)
                .map_err(|e| e.to_string())?;
            eprintln!("freshness: scan {pass} of {}", set.name);
            let before = metrics(set.health)?;
            guest.send_line("go").map_err(|e| e.to_string())?;
            let line = guest
                .wait_for("@@SCAN ", scan_timeout)
                .map_err(|e| e.to_string())?;
            let cost = metrics(set.health)?.since(&before);
            scans.insert(
                (set.name.to_string(), pass),
                Scan {
                    ms: field(&line, 3)?,
                    files: field(&line, 4)?,
                    cost,
                },
            );
        }
    }

    // Idle.
    guest
        .wait_for("@@PHASE idle", scan_timeout)
        .map_err(|e| e.to_string())?;
    eprintln!("freshness: idle for {} s", p.idle);
    let before: Vec<Snap> = sets
        .iter()
        .map(|s| metrics(s.health))
        .collect::<Result<_, _>>()?;
    let idle_start = Instant::now();
    std::thread::sleep(Duration::from_secs(p.idle));
    let idle_secs = idle_start.elapsed().as_secs_f64();
    let idle: Vec<Snap> = sets
        .iter()
        .zip(&before)
        .map(|(s, b)| metrics(s.health).map(|a| a.since(b)))
        .collect::<Result<_, _>>()?;
    guest.send_line("go").map_err(|e| e.to_string())?;

    // Delay rounds.
    let mut rounds = Vec::new();
    for r in 1..=p.rounds {
        guest
            .wait_for(&format!("@@ARMED {r}"), scan_timeout)
            .map_err(|e| e.to_string())?;
        for dir in [format!("new-{r}"), format!("new2-{r}")] {
            let d = root.join("__all__").join(dir);
            std::fs::create_dir(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
            std::fs::write(d.join("video.mkv"), b"video\n")
                .map_err(|e| format!("write into {}: {e}", d.display()))?;
        }
        let before: Vec<Snap> = sets
            .iter()
            .map(|s| metrics(s.health))
            .collect::<Result<_, _>>()?;
        guest.send_line("go").map_err(|e| e.to_string())?;
        eprintln!("freshness: round {r}: new-{r} and new2-{r} made");
        let mut seen = BTreeMap::new();
        loop {
            let line = guest
                .wait_for("@@R ", Duration::from_secs(p.cap) + 10 * MINUTE)
                .map_err(|e| e.to_string())?;
            if line.starts_with("@@R end ") {
                let cost = sets
                    .iter()
                    .zip(&before)
                    .map(|(s, b)| metrics(s.health).map(|a| a.since(b)))
                    .collect::<Result<_, _>>()?;
                rounds.push(Round {
                    seen,
                    polls: field(&line, 2)?,
                    ms: field(&line, 3)?,
                    cost,
                });
                break;
            }
            seen.insert(
                (field::<String>(&line, 2)?, field::<String>(&line, 3)?),
                field(&line, 4)?,
            );
        }
    }
    let status = guest
        .wait_exit(5 * MINUTE)
        .map_err(|e| format!("the guest did not finish: {e}"))?;
    if status != 0 {
        return Err(format!("the guest script failed ({status})"));
    }
    for set in &mut sets {
        let _ = set.server.terminate(MINUTE);
    }

    report(p, &sets, &mounted, &scans, &idle, idle_secs, &rounds);
    println!();
    println!(
        "Whole run: {:.0} s. {}; the guest is qemu TCG with 1 CPU.",
        started.elapsed().as_secs_f64(),
        kernel_line()
    );
    Ok(())
}

fn kernel_line() -> String {
    let kernel = vm::VmHost::find()
        .ok()
        .and_then(|h| {
            h.kernel.file_name().map(|n| {
                n.to_string_lossy()
                    .trim_start_matches("vmlinuz-")
                    .to_string()
            })
        })
        .unwrap_or_else(|| "?".into());
    format!(
        "Guest kernel {kernel}, {} host cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

fn ms(v: Option<u64>, cap: u64) -> String {
    match v {
        Some(v) => v.to_string(),
        None => format!(">{}", cap * 1000),
    }
}

/// The median, with "not seen within the cap" as the largest values.
fn median(mut v: Vec<Option<u64>>) -> Option<u64> {
    v.sort_by_key(|x| x.unwrap_or(u64::MAX));
    v.get(v.len() / 2).copied().flatten()
}

fn per_s(n: u64, ms: u64) -> f64 {
    if ms == 0 {
        0.0
    } else {
        n as f64 * 1000.0 / ms as f64
    }
}

fn report(
    p: &Params,
    sets: &[OptionSet],
    mounted: &[String],
    scans: &BTreeMap<(String, u32), Scan>,
    idle: &[Snap],
    idle_secs: f64,
    rounds: &[Round],
) {
    println!(
        "Freshness: mountshare serve --refresh-interval {}, the Linux kernel NFS client in a VM",
        p.refresh
    );
    println!(
        "Tree: {n} folders __all__/item-NNNNN/video.mkv (6 bytes each), {n} symlinks \
         media/item-NNNNN.mkv -> ../__all__/item-NNNNN/video.mkv",
        n = p.folders
    );
    println!("Option sets, each on a server of its own, mounted 4 times with nosharecache:");
    for set in sets {
        println!("  {:<9} {}", set.name, set.options);
    }
    println!("As the guest mounted them (/proc/mounts):");
    for m in mounted {
        println!("  {m}");
    }

    println!();
    println!(
        "1. Delay from the host's mkdir until the guest sees it, ms (polled every 0.1 s plus \
         the checks' own time; cap {} s)",
        p.cap
    );
    for (c, what) in CONDITIONS {
        println!("   {c}: {what}");
    }
    let mut head = format!("{:<8}", "round");
    for set in sets {
        for (c, _) in CONDITIONS {
            head += &format!(" {:>12}", format!("{} {c}", set.name));
        }
    }
    println!("{head} {:>12}", "poll period");
    let get =
        |r: &Round, set: &str, c: &str| r.seen.get(&(set.to_string(), c.to_string())).copied();
    for (i, r) in rounds.iter().enumerate() {
        let mut row = format!("{:<8}", i + 1);
        for set in sets {
            for (c, _) in CONDITIONS {
                row += &format!(" {:>12}", ms(get(r, set.name, c), p.cap));
            }
        }
        let period = r.ms.checked_div(r.polls).unwrap_or(0);
        println!("{row} {:>9} ms", period);
    }
    let mut medians: BTreeMap<(&str, &str), Option<u64>> = BTreeMap::new();
    let mut row = format!("{:<8}", "median");
    for set in sets {
        for (c, _) in CONDITIONS {
            let m = median(rounds.iter().map(|r| get(r, set.name, c)).collect());
            medians.insert((set.name, c), m);
            row += &format!(" {:>12}", ms(m, p.cap));
        }
    }
    println!("{row}");
    println!("Server calls while the guest polled (from the mkdir until all was seen or the cap):");
    for (i, r) in rounds.iter().enumerate() {
        for (set, cost) in sets.iter().zip(&r.cost) {
            println!(
                "  round {} {:<9} {:.1} s: {}; listings {}/{} (first/refresh), changes {}",
                i + 1,
                set.name,
                r.ms as f64 / 1000.0,
                by_procedure(cost),
                cost.listings_first,
                cost.listings_refresh,
                cost.changes
            );
        }
    }

    println!();
    println!(
        "2. Server cost, idle: {idle_secs:.0} s after the scans with nothing running on the guest"
    );
    println!(
        "{:<9} {:>8} {:>8} {:>9} {:>11}  calls by procedure",
        "set", "calls", "calls/s", "listings", "listings/s"
    );
    for (set, cost) in sets.iter().zip(idle) {
        println!(
            "{:<9} {:>8} {:>8.2} {:>9} {:>11.2}  {}",
            set.name,
            cost.total(),
            cost.total() as f64 / idle_secs,
            cost.listings(),
            cost.listings() as f64 / idle_secs,
            by_procedure(cost)
        );
    }

    println!();
    println!(
        "3. Server cost, a library scan: `find -L media -type f` on the guest (a readdir of media, \
         one stat per file through its symlink), twice{}",
        if p.scan_gap == 0 {
            " in a row".to_string()
        } else {
            format!(", {} s apart", p.scan_gap)
        }
    );
    let mut procedures: BTreeSet<String> = BTreeSet::new();
    for s in scans.values() {
        procedures.extend(s.cost.calls.keys().cloned());
    }
    let mut head = format!(
        "{:<9} {:>4} {:>8} {:>6} {:>8} {:>8}",
        "set", "scan", "seconds", "files", "calls", "calls/s"
    );
    for proc_ in &procedures {
        head += &format!(" {:>11}", proc_);
    }
    println!("{head} {:>15} {:>7}", "listings f/r", "changes");
    for set in sets {
        for pass in 1..=2u32 {
            let Some(s) = scans.get(&(set.name.to_string(), pass)) else {
                continue;
            };
            let mut row = format!(
                "{:<9} {:>4} {:>8.1} {:>6} {:>8} {:>8.0}",
                set.name,
                pass,
                s.ms as f64 / 1000.0,
                s.files,
                s.cost.total(),
                per_s(s.cost.total(), s.ms)
            );
            for proc_ in &procedures {
                let n = s.cost.calls.get(proc_).copied().unwrap_or(0);
                row += &format!(" {:>11}", format!("{n} ({:.0}/s)", per_s(n, s.ms)));
            }
            println!(
                "{row} {:>15} {:>7}",
                format!("{}/{}", s.cost.listings_first, s.cost.listings_refresh),
                s.cost.changes
            );
        }
    }

    println!();
    println!("Summary (delays: medians of {} rounds, ms)", rounds.len());
    println!(
        "| option set | delay a (ls) | delay b (new path) | delay c (missed path) | idle calls/s | \
         scan calls/s (1st / 2nd) | scan s (1st / 2nd) | calls per file (2nd scan) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (set, cost) in sets.iter().zip(idle) {
        let scan = |pass: u32| scans.get(&(set.name.to_string(), pass));
        let (Some(s1), Some(s2)) = (scan(1), scan(2)) else {
            continue;
        };
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} / {:.0} | {:.1} / {:.1} | {:.2} |",
            set.name,
            ms(medians[&(set.name, "a")], p.cap),
            ms(medians[&(set.name, "b")], p.cap),
            ms(medians[&(set.name, "c")], p.cap),
            cost.total() as f64 / idle_secs,
            per_s(s1.cost.total(), s1.ms),
            per_s(s2.cost.total(), s2.ms),
            s1.ms as f64 / 1000.0,
            s2.ms as f64 / 1000.0,
            s2.cost.total() as f64 / s2.files.max(1) as f64,
        );
    }

    println!();
    println!("Load model:");
    println!(
        "- The server makes calls and listings only when a client asks: idle clients cost nothing \
         whatever their options (section 2). A directory is listed from the backend again at most \
         once per {} while clients ask about it, whatever the number of calls.",
        p.refresh
    );
    for set in sets {
        let (Some(s1), Some(s2)) = (
            scans.get(&(set.name.to_string(), 1)),
            scans.get(&(set.name.to_string(), 2)),
        ) else {
            continue;
        };
        println!(
            "- {}: a scan of {} files costs the server {} calls when cold and {} when repeated \
             ({:.2} per file; {} and {} backend listings). Scanning every T seconds \
             therefore adds about {} / T calls/s (for scans as close together as these two); \
             new folders show in ls after {} ms, on a never-looked-up path after {} ms, on a \
             path that was missed before after {} ms (medians).",
            set.name,
            s2.files,
            s1.cost.total(),
            s2.cost.total(),
            s2.cost.total() as f64 / s2.files.max(1) as f64,
            s1.cost.listings(),
            s2.cost.listings(),
            s2.cost.total(),
            ms(medians[&(set.name, "a")], p.cap),
            ms(medians[&(set.name, "b")], p.cap),
            ms(medians[&(set.name, "c")], p.cap),
        );
    }
    println!(
        "- The second scan starts {}: attributes the first one fetched that are still within \
         the set's timeouts (defaults: directories 30-60 s, files 3-60 s; shipped: directories \
         1-2 s, files 3-60 s) are answered from the client's cache, so with the defaults its \
         cost depends on how long the first scan took. --scan-gap (SCAN_GAP) above 60 shows the \
         steady state of scans further apart.",
        if p.scan_gap == 0 {
            "right after the first".to_string()
        } else {
            format!("{} s after the first", p.scan_gap)
        }
    );
}

fn by_procedure(s: &Snap) -> String {
    if s.calls.is_empty() {
        return "-".into();
    }
    let mut v: Vec<(&String, &u64)> = s.calls.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> ExitCode {
    let p = match params() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("freshness: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&p) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("freshness: {e}");
            ExitCode::FAILURE
        }
    }
}
