//! Freshness of directories (issue 15) with the Linux kernel NFS client, in a qemu VM, mounted
//! as the agent mounts (`vers=3,port=P,mountport=P,tcp,nolock,soft,lookupcache=positive,
//! acdirmin=1,acdirmax=2`), over `mountshare serve --refresh-interval 2s` of the test kit's
//! hangfs, whose directories report times the way Decypharr's do:
//!
//! 1. **Constant times** (`--dir-times frozen`, Decypharr's FUSE): the guest lists `__all__` and
//!    stats a name that is not there yet; the host adds three folders (`new1`, `missed`, `new3`);
//!    `ls` must show all three, `new3/file` (a name never looked up) must open, and
//!    `missed/file` (the name looked up before it existed) must open, each within
//!    [`SEEN_BOUND`] (the goal is 10 s; a TCG guest on two shared cores is slow). Without
//!    freshness the client never sees the new names in `ls`: the directory's attributes never
//!    change, so it keeps its cached listing.
//!    Then a folder chosen so that `__all__`'s times go *down* is added: `ls` must show it too
//!    (the client takes any other ctime for a change, a smaller one included).
//! 2. **Moving times** (`--dir-times moving`, Decypharr's WebDAV, where a directory's time is
//!    the time of the request): for 10 s the guest stats and lists a directory that does not
//!    change: its mtime and ctime as the guest sees them stay the same, the server gets no
//!    READDIR or READDIRPLUS after the first listing, and finds no changed listing.
//! 3. **Polling**: nothing changes while the guest lists `__all__` every 0.2 s for 12 s with
//!    `ls` (which stats every folder in it), then reads only its names for 12 s more; the server
//!    lists each directory the client asks about from the backend at most once per refresh
//!    interval (plus 2 in all).
//! 4. **Emptying**: `__all__` lists empty on the host for 3.5 s (swapped with an empty folder,
//!    then back) while the guest lists it every 0.2 s; no listing in the guest is empty, and the
//!    server held back the shrunk listing (`mountshare_serve_dir_shrinks_held_total`).
//!
//! One VM runs the four, each against its own hangfs mount and its own server (whose counters
//! are read from `/metrics` on its `--listen-health` port). The times measured are printed
//! (`-- --nocapture`).
//!
//! Needs root, /dev/fuse and the `hangfs` binary of mountshare-testkit built with the same
//! profile (`cargo build --release -p mountshare-testkit --bin hangfs`, then `cargo test
//! --release -p mountshare --test vm_freshness -- --nocapture`). `MOUNTSHARE_SKIP_VM=1` skips it.

use mountshare_testkit::hangfs::{DirTimes, Fixture, HangFs, HangFsOptions};
use mountshare_testkit::server::{free_port, ServerProcess};
use mountshare_testkit::tree::TreeBuilder;
use mountshare_testkit::vm::{self, Vm, VmConfig};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");
const MINUTE: Duration = Duration::from_secs(60);
/// The mount options the agent ships, before the server's address.
const MOUNT_OPTIONS: &str =
    "vers=3,port={p},mountport={p},tcp,nolock,soft,lookupcache=positive,acdirmin=1,acdirmax=2";
/// The server's refresh interval, passed explicitly.
const REFRESH: Duration = Duration::from_secs(2);
/// A new name must be seen within this (the goal is 10 s).
const SEEN_BOUND: Duration = Duration::from_secs(30);
/// The guest gives up looking for new names after this.
const GIVE_UP_MS: u64 = 60_000;
/// Scenario 2 stats and lists for this long; scenario 3 polls for this long.
const MOVING_MS: u64 = 10_000;
const POLL_MS: u64 = 12_000;
/// Scenario 4: how long `__all__` lists empty on the host.
const EMPTY_FOR: Duration = Duration::from_millis(3500);
/// The folders of `__all__` at the start.
const ENTRIES: [&str; 3] = ["Alpha (2001)", "Beta (2002)", "Gamma (2003)"];
/// The folders scenario 1 adds.
const ADDED: [&str; 3] = ["new1", "missed", "new3"];

/// One scenario's backend and server: a hangfs mount of a tree with `__all__/` holding
/// [`ENTRIES`], and `mountshare serve` of it with its metrics on `health`. (Fields drop in
/// order: the server, then the FUSE mount, then its directories.)
struct Backend {
    server: ServerProcess,
    _fs: HangFs,
    fixture: Fixture,
    health: u16,
}

impl Backend {
    fn start(name: &str, dir_times: DirTimes) -> Backend {
        let fixture = Fixture::new(
            &format!("mountshare-vm-fresh-{name}-"),
            env!("CARGO_TARGET_TMPDIR"),
        );
        let t = TreeBuilder::new(&fixture.source).unwrap();
        for (i, entry) in ENTRIES.iter().enumerate() {
            t.bytes(
                format!("__all__/{entry}/{entry}.mkv"),
                format!("{i}\n").as_bytes(),
            )
            .unwrap();
        }
        t.bytes("movies/link.mkv", b"m").unwrap();
        let fs = HangFs::start(
            &fixture.hangfs,
            &fixture.source,
            &fixture.mnt,
            HangFsOptions::default().dir_times(dir_times),
        )
        .expect("mount hangfs");
        let health = free_port();
        let server = ServerProcess::start_local(
            BIN,
            &fixture.mnt,
            &[
                "--listen-health",
                &format!("127.0.0.1:{health}"),
                "--refresh-interval",
                &format!("{}s", REFRESH.as_secs()),
            ],
        )
        .expect("start mountshare serve");
        Backend {
            server,
            _fs: fs,
            fixture,
            health,
        }
    }

    fn source(&self) -> &Path {
        &self.fixture.source
    }

    fn mount_options(&self) -> String {
        vm::kernel_mount_options(&MOUNT_OPTIONS.replace("{p}", &self.server.port().to_string()))
    }

    fn metrics(&self) -> Metrics {
        Metrics(http_get(self.health, "/metrics").expect("GET /metrics from the server"))
    }
}

/// GET `path` from 127.0.0.1:`port`: the body of a 200 answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// A scrape of `/metrics` (Prometheus text).
struct Metrics(String);

impl Metrics {
    /// The sum of the samples of `name` whose labels include every one of `labels`
    /// (`procedure="READDIR"`); 0 when there is none. (Counters only: whole numbers.)
    fn sum(&self, name: &str, labels: &[&str]) -> u64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name && labels.iter().all(|want| rest.contains(want))
            })
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    fn listings(&self) -> u64 {
        self.sum("mountshare_serve_dir_listings_total", &[])
    }

    fn changes(&self) -> u64 {
        self.sum("mountshare_serve_dir_changes_total", &[])
    }

    fn shrinks_held(&self) -> u64 {
        self.sum("mountshare_serve_dir_shrinks_held_total", &[])
    }

    /// READDIR and READDIRPLUS calls answered.
    fn readdirs(&self) -> u64 {
        self.sum(
            "mountshare_serve_calls_total",
            &[r#"procedure="READDIRPLUS""#],
        ) + self.sum("mountshare_serve_calls_total", &[r#"procedure="READDIR""#])
    }

    fn describe(&self) -> String {
        format!(
            "listings {} (first {}, refresh {}), changes {}, shrinks held {}, READDIR+READDIRPLUS calls {}",
            self.listings(),
            self.sum(
                "mountshare_serve_dir_listings_total",
                &[r#"reason="first""#]
            ),
            self.sum(
                "mountshare_serve_dir_listings_total",
                &[r#"reason="refresh""#]
            ),
            self.changes(),
            self.shrinks_held(),
            self.readdirs()
        )
    }
}

/// Failures are collected so that one run reports every check that failed, not only the first.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    #[track_caller]
    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}

/// The `N`th whitespace-separated field of `line`, as a number.
fn field(line: &str, n: usize) -> u64 {
    line.split_ascii_whitespace()
        .nth(n)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("field {n} of {line:?}"))
}

/// Exchange two directories atomically (`renameat2(RENAME_EXCHANGE)`): a listing of either
/// sees the one or the other, never nothing.
fn exchange(a: &Path, b: &Path) {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .unwrap_or_else(|e| panic!("exchange {} and {}: {e}", a.display(), b.display()));
}

/// The guest's part. `@OPTS1@`..`@OPTS4@` are the mount options of the four servers.
/// Times are milliseconds of /proc/uptime (centiseconds there).
const GUEST: &str = r#"set -o pipefail
now_ms() { echo $(( $(cut -d' ' -f1 /proc/uptime | tr -d .) * 10 )); }
has_all() {
    ls -1 "$1" >/tmp/names 2>/dev/null || return 1
    for n in new1 missed new3; do grep -qx "$n" /tmp/names || return 1; done
}
nfs_mount '@OPTS1@' '@HOST@:/' /mnt/s1
nfs_mount '@OPTS2@' '@HOST@:/' /mnt/s2
nfs_mount '@OPTS3@' '@HOST@:/' /mnt/s3
nfs_mount '@OPTS4@' '@HOST@:/' /mnt/s4
say "@@MOUNTED"

# 1. Constant times.
host_wait
ls /mnt/s1/__all__ >/dev/null
if [ -e /mnt/s1/__all__/missed ]; then say "@@ERROR missed exists before it is added"; fi
say "@@P1_LISTED $(ls /mnt/s1/__all__ | wc -l)"
host_wait
t0=$(now_ms)
ls_ms= new_ms= missed_ms=
while :; do
    t=$(( $(now_ms) - t0 ))
    if [ -z "$new_ms" ] && cat /mnt/s1/__all__/new3/file >/dev/null 2>&1; then
        new_ms=$t; say "@@SEEN open-new3 $t"
    fi
    if [ -z "$missed_ms" ] && cat /mnt/s1/__all__/missed/file >/dev/null 2>&1; then
        missed_ms=$t; say "@@SEEN open-missed $t"
    fi
    if [ -z "$ls_ms" ] && has_all /mnt/s1/__all__; then
        ls_ms=$t; say "@@SEEN ls $t"
    fi
    if [ -n "$ls_ms" ] && [ -n "$new_ms" ] && [ -n "$missed_ms" ]; then break; fi
    if [ $t -gt @GIVE_UP_MS@ ]; then break; fi
    usleep 200000
done
say "@@P1_DONE ls=${ls_ms:-never} open-new3=${new_ms:-never} open-missed=${missed_ms:-never}"
# 1b. A change to a smaller ctime is seen too (the host picks the name that makes it smaller).
host_wait
ls /mnt/s1/__all__ >/dev/null
say "@@P1B_BEFORE $(stat -c '%z' /mnt/s1/__all__)"
host_wait
down=$HOST_LINE
t0=$(now_ms) down_ms=
while [ $(( $(now_ms) - t0 )) -lt @GIVE_UP_MS@ ]; do
    if ls -1 /mnt/s1/__all__ 2>/dev/null | grep -qx "$down"; then down_ms=$(( $(now_ms) - t0 )); break; fi
    usleep 200000
done
say "@@P1B_DONE ${down_ms:-never} $(stat -c '%z' /mnt/s1/__all__)"

# 2. Moving times.
host_wait
ls /mnt/s2/__all__ >/dev/null
first=$(stat -c '%Y %Z %y %z' /mnt/s2/__all__)
say "@@P2_LISTED $first"
host_wait
t0=$(now_ms) n=0 moved=0
while [ $(( $(now_ms) - t0 )) -lt @MOVING_MS@ ]; do
    s=$(stat -c '%Y %Z %y %z' /mnt/s2/__all__)
    if [ "$s" != "$first" ]; then moved=$((moved + 1)); say "@@P2_MOVED $s"; fi
    ls /mnt/s2/__all__ >/dev/null
    n=$((n + 1))
    usleep 200000
done
say "@@P2_DONE $n $moved"

# 3. Polling: `ls /mnt/s3/__all__` (which also stats each entry), then the names alone from
# inside __all__ (a glob: one directory asked about, no other).
host_wait
ls /mnt/s3/__all__ >/dev/null
say "@@P3_LISTED"
host_wait
t0=$(now_ms) n=0
while [ $(( $(now_ms) - t0 )) -lt @POLL_MS@ ]; do
    ls /mnt/s3/__all__ >/dev/null
    n=$((n + 1))
    usleep 200000
done
say "@@P3_DONE $n"
host_wait
cd /mnt/s3/__all__
set -- *
say "@@P3_LISTED $#"
host_wait
t0=$(now_ms) n=0
while [ $(( $(now_ms) - t0 )) -lt @POLL_MS@ ]; do
    set -- *
    n=$((n + 1))
    usleep 200000
done
cd /
say "@@P3_DONE $n"

# 4. Emptying: each line of /tmp/counts holds the names readdir gave (a glob) and the lines of
# ls, which also stats each entry.
host_wait
ls /mnt/s4/__all__ >/dev/null
( while [ ! -e /tmp/stop ]; do
      set -- /mnt/s4/__all__/*
      if [ "$1" = '/mnt/s4/__all__/*' ]; then names=0; else names=$#; fi
      lines=$(ls /mnt/s4/__all__ 2>>/tmp/ls.err | wc -l) || true
      echo "$names $lines" >>/tmp/counts
      if [ "$names" -lt @FULL@ ] || [ "$lines" -lt @FULL@ ]; then say "@@P4_SHORT $names $lines"; fi
      usleep 200000
  done ) &
say "@@P4_LOOPING"
host_wait
touch /tmp/stop
wait
min() { sort -n | head -n 1; }
say "@@P4_DONE $(wc -l </tmp/counts) $(cut -d' ' -f1 /tmp/counts | min) $(cut -d' ' -f2 /tmp/counts | min)"
say "@@P4_ERRORS $(head -c 300 /tmp/ls.err 2>/dev/null | tr '\n' '|')"
umount /mnt/s1 /mnt/s2 /mnt/s3 /mnt/s4
"#;

/// The times `serve` gives a directory holding `names`.
fn times_of(names: &[String]) -> (i64, u32) {
    let bytes: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    mountshare_server::listing_times(&bytes)
}

#[test]
fn directories_stay_fresh_for_the_kernel_client() {
    if vm::skip("directories_stay_fresh_for_the_kernel_client") {
        return;
    }
    let constant = Backend::start("constant", DirTimes::Frozen);
    let moving = Backend::start("moving", DirTimes::Moving);
    let polling = Backend::start("polling", DirTimes::Frozen);
    let emptying = Backend::start("emptying", DirTimes::Frozen);
    let script = GUEST
        .replace("@OPTS1@", &constant.mount_options())
        .replace("@OPTS2@", &moving.mount_options())
        .replace("@OPTS3@", &polling.mount_options())
        .replace("@OPTS4@", &emptying.mount_options())
        .replace("@HOST@", vm::HOST_IP)
        .replace("@GIVE_UP_MS@", &GIVE_UP_MS.to_string())
        .replace("@MOVING_MS@", &MOVING_MS.to_string())
        .replace("@POLL_MS@", &POLL_MS.to_string())
        .replace("@FULL@", &ENTRIES.len().to_string());
    let mut guest = Vm::boot(VmConfig {
        name: "fresh".into(),
        script,
        memory_mb: 512,
        ..VmConfig::default()
    })
    .expect(
        "boot the VM (qemu-system-x86, linux-image-amd64 and busybox-static must be installed)",
    );
    guest
        .wait_for("@@MOUNTED", 5 * MINUTE)
        .expect("the guest mounted the four servers");
    let mut checks = Checks::default();

    // 1. Constant directory times: new names show up.
    guest.send_line("constant").unwrap();
    let listed = guest.wait_for("@@P1_LISTED ", MINUTE).unwrap();
    assert_eq!(field(&listed, 1), ENTRIES.len() as u64, "{listed}");
    for name in ADDED {
        let dir = constant.source().join("__all__").join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("file"), format!("{name}\n")).unwrap();
    }
    let added = Instant::now();
    guest.send_line("added").unwrap();
    let done = guest
        .wait_for("@@P1_DONE ", Duration::from_millis(GIVE_UP_MS) + 2 * MINUTE)
        .unwrap();
    println!(
        "constant times: after three folders were added, first seen in the guest (ms): {}; \
         {:.1} s as the host saw it",
        &done["@@P1_DONE ".len()..],
        added.elapsed().as_secs_f64()
    );
    println!("constant times: server {}", constant.metrics().describe());
    for what in ["ls", "open-new3", "open-missed"] {
        let seen = done
            .split_ascii_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{what}=")))
            .and_then(|ms| ms.parse::<u64>().ok());
        checks.check(
            seen.is_some_and(|ms| Duration::from_millis(ms) <= SEEN_BOUND),
            || {
                format!(
                    "constant directory times: {what} did not see the new folders within \
                     {SEEN_BOUND:?} (seen after: {seen:?} ms): {done}"
                )
            },
        );
    }
    checks.check(
        !guest.console().iter().any(|l| l.starts_with("@@ERROR")),
        || "the guest saw `missed` before it was added".into(),
    );

    // 1b. The Linux client takes a smaller ctime for a change as well (NFSv3 has no ordered
    // change attribute: a reply to a call sent after the last update is applied, whatever its
    // times): a folder whose listing makes `__all__`'s times go down is seen like any other.
    guest.send_line("down").unwrap();
    let before = guest.wait_for("@@P1B_BEFORE ", MINUTE).unwrap();
    let mut names: Vec<String> = ENTRIES
        .iter()
        .chain(&ADDED)
        .map(|n| n.to_string())
        .collect();
    let now = times_of(&names);
    let down = (0..1000)
        .map(|k| format!("down-{k}"))
        .find(|n| {
            names.push(n.clone());
            let lower = times_of(&names) < now;
            names.pop();
            lower
        })
        .expect("a name that lowers the directory's times");
    std::fs::create_dir(constant.source().join("__all__").join(&down)).unwrap();
    guest.send_line(&down).unwrap();
    let done = guest
        .wait_for(
            "@@P1B_DONE ",
            Duration::from_millis(GIVE_UP_MS) + 2 * MINUTE,
        )
        .unwrap();
    let before = before["@@P1B_BEFORE ".len()..].trim().to_owned();
    let rest = &done["@@P1B_DONE ".len()..];
    let (seen, after) = rest.split_once(' ').unwrap_or((rest, ""));
    println!(
        "smaller ctime: {down} seen in ls after {seen} ms; __all__'s ctime went from {before}          to {after}"
    );
    checks.check(
        seen.parse::<u64>()
            .is_ok_and(|ms| Duration::from_millis(ms) <= SEEN_BOUND),
        || format!("a change to a smaller ctime was not seen within {SEEN_BOUND:?}: {done}"),
    );
    // Same format, same zone: the strings order as the times do.
    checks.check(after.trim() < before.as_str(), || {
        format!("__all__'s ctime did not go down: {before} -> {after}")
    });

    // 2. Moving directory times: no change seen, no re-read.
    guest.send_line("moving").unwrap();
    let listed = guest.wait_for("@@P2_LISTED ", MINUTE).unwrap();
    let before = moving.metrics();
    guest.send_line("go").unwrap();
    let done = guest
        .wait_for("@@P2_DONE ", Duration::from_millis(MOVING_MS) + 2 * MINUTE)
        .unwrap();
    let after = moving.metrics();
    let (stats, moved) = (field(&done, 1), field(&done, 2));
    println!(
        "moving times: {stats} stats and listings in {MOVING_MS} ms, {moved} saw another time \
         than the first ({}); READDIR+READDIRPLUS calls {} after the first listing, {} at the \
         end; server {}",
        &listed["@@P2_LISTED ".len()..],
        before.readdirs(),
        after.readdirs(),
        after.describe()
    );
    checks.check(moved == 0, || {
        format!(
            "moving backend times: the directory's mtime or ctime changed in the guest {moved} \
             times in {stats} stats (first {listed}); see the @@P2_MOVED lines"
        )
    });
    checks.check(before.readdirs() >= 1, || {
        format!(
            "moving backend times: the first listing made no READDIR or READDIRPLUS: {}",
            before.describe()
        )
    });
    checks.check(after.readdirs() == before.readdirs(), || {
        format!(
            "moving backend times: the client listed the directory again: READDIR+READDIRPLUS \
             calls {} after the first listing, {} after {stats} stats and listings",
            before.readdirs(),
            after.readdirs()
        )
    });
    checks.check(after.changes() == 0, || {
        format!(
            "moving backend times: the server found changed listings: {}",
            after.describe()
        )
    });

    // 3. Polling: listings from the backend at most once per interval for each directory the
    // client asks about. `ls /mnt/s3/__all__` asks about the root (the lookup of `__all__`),
    // `__all__`, and each of its folders (ls stats them, and the client asks for the attributes
    // of a folder when its own 1 to 2 s run out); the glob inside `__all__` about `__all__` alone.
    guest.send_line("polling").unwrap();
    for (what, in_use) in [
        ("ls /mnt/s3/__all__", 2 + ENTRIES.len() as u64),
        ("a glob in __all__", 1),
    ] {
        guest.wait_for("@@P3_LISTED", MINUTE).unwrap();
        let before = polling.metrics();
        let began = Instant::now();
        guest.send_line("go").unwrap();
        let done = guest
            .wait_for("@@P3_DONE ", Duration::from_millis(POLL_MS) + 2 * MINUTE)
            .unwrap();
        let period = began.elapsed();
        let after = polling.metrics();
        let listings = after.listings() - before.listings();
        let bound = in_use * (period.as_secs() / REFRESH.as_secs()) + 2;
        println!(
            "polling with {what}: {} polls in {:.1} s made {listings} listings from the backend \
             (bound {bound}: directories asked about {in_use}, one listing each per {REFRESH:?}, \
             plus 2); server before {}; after {}",
            field(&done, 1),
            period.as_secs_f64(),
            before.describe(),
            after.describe()
        );
        checks.check(listings <= bound, || {
            format!(
                "polling an unchanged __all__ with {what} for {:.1} s made {listings} listings \
                 from the backend, more than {bound} (directories asked about {in_use}, one \
                 listing each per {REFRESH:?}, plus 2): before {}; after {}",
                period.as_secs_f64(),
                before.describe(),
                after.describe()
            )
        });
        checks.check(after.changes() == 0, || {
            format!(
                "polling with {what}: the server found changed listings: {}",
                after.describe()
            )
        });
        if in_use > 1 {
            guest.send_line("next").unwrap();
        }
    }

    // 4. Emptying: __all__ lists empty on the host for a while; never in the guest.
    let all = emptying.source().join("__all__");
    let empty = emptying
        .source()
        .parent()
        .expect("the fixture's base")
        .join("empty");
    std::fs::create_dir(&empty).unwrap();
    guest.send_line("emptying").unwrap();
    guest.wait_for("@@P4_LOOPING", MINUTE).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let before = emptying.metrics();
    exchange(&all, &empty);
    let emptied = Instant::now();
    std::thread::sleep(EMPTY_FOR);
    exchange(&all, &empty);
    let empty_for = emptied.elapsed();
    assert_eq!(
        std::fs::read_dir(&all).unwrap().count(),
        ENTRIES.len(),
        "__all__ restored"
    );
    std::thread::sleep(Duration::from_secs(3));
    guest.send_line("stop").unwrap();
    let done = guest.wait_for("@@P4_DONE ", 2 * MINUTE).unwrap();
    let errors = guest.wait_for("@@P4_ERRORS", MINUTE).unwrap();
    let after = emptying.metrics();
    let (listings, min_names, min_ls) = (field(&done, 1), field(&done, 2), field(&done, 3));
    let short = guest
        .console()
        .iter()
        .filter(|l| l.starts_with("@@P4_SHORT "))
        .count();
    let entry_errors = format!(
        "LOOKUP answered NFS3ERR_NOENT {} times, GETATTR answered other than NFS3_OK {} times",
        after.sum(
            "mountshare_serve_calls_total",
            &[r#"procedure="LOOKUP""#, r#"status="NFS3ERR_NOENT""#]
        ) - before.sum(
            "mountshare_serve_calls_total",
            &[r#"procedure="LOOKUP""#, r#"status="NFS3ERR_NOENT""#]
        ),
        after.sum("mountshare_serve_calls_total", &[r#"procedure="GETATTR""#])
            - after.sum(
                "mountshare_serve_calls_total",
                &[r#"procedure="GETATTR""#, r#"status="NFS3_OK""#]
            )
            - (before.sum("mountshare_serve_calls_total", &[r#"procedure="GETATTR""#])
                - before.sum(
                    "mountshare_serve_calls_total",
                    &[r#"procedure="GETATTR""#, r#"status="NFS3_OK""#]
                ))
    );
    println!(
        "emptying: __all__ listed empty on the host for {:.1} s; {listings} listings in the guest, \
         {short} short: the fewest names readdir gave {min_names}, the fewest entries ls showed \
         {min_ls} (of {}); {errors}; meanwhile {entry_errors}; server before {}; after {}",
        empty_for.as_secs_f64(),
        ENTRIES.len(),
        before.describe(),
        after.describe()
    );
    checks.check(min_names > 0, || {
        format!(
            "emptying: a listing (readdir) in the guest was empty: the fewest names \
             {min_names} in {listings} listings, {short} short; see the @@P4_SHORT lines"
        )
    });
    checks.check(min_ls > 0, || {
        format!(
            "emptying: an ls in the guest showed no entry: ls stats each name readdir gave, and \
             the stats failed; the fewest entries {min_ls} in {listings} listings, {short} short \
             (@@P4_SHORT names entries); {errors}; {entry_errors}"
        )
    });
    checks.check(after.shrinks_held() > before.shrinks_held(), || {
        format!(
            "emptying: the server held back no shrunk listing: before {}; after {}",
            before.describe(),
            after.describe()
        )
    });

    let status = guest.wait_exit(2 * MINUTE).unwrap();
    checks.check(status == 0, || {
        format!("the guest script exited with {status}")
    });
    checks.finish();
    for mut backend in [constant, moving, polling, emptying] {
        backend.server.terminate(MINUTE).ok();
    }
}
