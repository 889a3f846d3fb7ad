//! A qemu VM running the host's Debian kernel, so tests can use the real Linux kernel NFS client.
//!
//! [`Vm::boot`] builds an initramfs (busybox-static, the virtio-net and NFS modules, the test's
//! script and any extra files), boots it under TCG (never KVM) with user-mode networking, and
//! returns once the guest's network is up. The guest reaches the host's loopback at
//! [`HOST_IP`] (10.0.2.2), so a server listening on 127.0.0.1 serves the guest.
//!
//! The guest script runs under `set -e` with these shell functions available:
//!
//! | function | does |
//! |---|---|
//! | `say TEXT` | prints a line on the console, also from inside a pipeline |
//! | `host_wait` | blocks until the host calls [`Vm::send_line`]; the line is in `$HOST_LINE` |
//! | `nfs_mount OPTIONS SOURCE DIR` | `mount(2)` of type nfs with OPTIONS passed verbatim to the kernel |
//! | `emit NAME FILE` | sends FILE's bytes to the host, read with [`Vm::wait_blob`] |
//! | `emit_listing NAME DIR` | sends the tree below DIR, read with [`Vm::wait_listing`] |
//! | `emit_ls NAME DIR` | sends `ls -lan --full-time DIR`, compare with [`host_ls`] |
//! | `emit_names NAME DIR` | prints `@@NAMES NAME <count> <md5>` of `ls -1A DIR \| sort`, see [`crate::tree::names_digest`] |
//!
//! The console is streamed to the test's output (prefixed with `[vm]`). When the script ends, the
//! guest prints `@@EXIT <status>` and powers off; [`Vm::wait_exit`] returns that status. qemu is
//! killed when the [`Vm`] is dropped, and every wait has a deadline.
//!
//! Missing qemu, kernel, modules or busybox-static make [`Vm::boot`] fail with a clear message.
//! Set `MOUNTSHARE_SKIP_VM=1` to skip VM tests instead (see [`skip_requested`]).

use crate::cpio::Cpio;
use crate::error::{Error, IoContext, Result};
use crate::host::installed;
use crate::tree::{parse_stat_listing, Listing};
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The address of the host (its loopback) as the guest sees it.
pub const HOST_IP: &str = "10.0.2.2";
/// The guest's own address.
pub const GUEST_IP: &str = "10.0.2.15";

/// Kernel modules loaded in the guest, in dependency order.
pub const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "sunrpc",
    "grace",
    "lockd",
    "netfs",
    "fscache",
    "nfs",
    "nfs_acl",
    "nfsv3",
];

/// True when `MOUNTSHARE_SKIP_VM=1`: VM tests then print that they were skipped and return.
pub fn skip_requested() -> bool {
    std::env::var("MOUNTSHARE_SKIP_VM").is_ok_and(|v| v == "1")
}

/// For the first line of a VM test: returns true (after saying so) when VM tests are to be skipped.
pub fn skip(test: &str) -> bool {
    if skip_requested() {
        eprintln!("{test}: skipped because MOUNTSHARE_SKIP_VM=1");
        true
    } else {
        false
    }
}

/// The kernel NFS mount options for a server on the host: the given options plus the server's
/// address for NFS and MOUNT (`addr=`, `mountaddr=`), which `mount.nfs` would otherwise add.
///
/// `kernel_mount_options("vers=3,port=2049,mountport=2049,tcp,nolock,soft")`.
pub fn kernel_mount_options(options: &str) -> String {
    format!("{options},addr={HOST_IP},mountaddr={HOST_IP}")
}

/// Where qemu, the kernel, its modules and busybox are on this host.
#[derive(Debug, Clone)]
pub struct VmHost {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub modules_dir: PathBuf,
    pub busybox: PathBuf,
}

impl VmHost {
    /// Finds the prerequisites, or says exactly what is missing and how to install it.
    /// `MOUNTSHARE_VM_KERNEL` overrides the kernel (its modules must be in `/lib/modules/<version>`).
    pub fn find() -> Result<Self> {
        let qemu = which("qemu-system-x86_64").ok_or_else(|| {
            Error::Missing(
                "qemu-system-x86_64 is not in PATH (apt-get install qemu-system-x86)".into(),
            )
        })?;
        let kernel = match std::env::var_os("MOUNTSHARE_VM_KERNEL") {
            Some(k) => PathBuf::from(k),
            None => newest_kernel()?,
        };
        if !kernel.is_file() {
            return Err(Error::Missing(format!(
                "kernel {} does not exist (apt-get install linux-image-amd64)",
                kernel.display()
            )));
        }
        let name = kernel
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let version = name.strip_prefix("vmlinuz-").ok_or_else(|| {
            Error::Missing(format!(
                "cannot tell the version of kernel {}",
                kernel.display()
            ))
        })?;
        let modules_dir = PathBuf::from("/lib/modules").join(version);
        if !modules_dir.is_dir() {
            return Err(Error::Missing(format!(
                "no modules for kernel {version} in {} (apt-get install linux-image-amd64)",
                modules_dir.display()
            )));
        }
        let busybox = installed(
            &["/bin/busybox", "/usr/bin/busybox"],
            "busybox is not installed (apt-get install busybox-static)",
        )?;
        let bytes = fs::read(&busybox).ctx(|| format!("read {}", busybox.display()))?;
        if bytes.windows(14).any(|w| w == b"/lib64/ld-linu") {
            return Err(Error::Missing(format!(
                "{} is dynamically linked; the VM needs the static one (apt-get install busybox-static)",
                busybox.display()
            )));
        }
        Ok(Self {
            qemu,
            kernel,
            modules_dir,
            busybox,
        })
    }

    /// The content of a module of the guest kernel, decompressed.
    fn module(&self, name: &str) -> Result<Vec<u8>> {
        let file = find_module(&self.modules_dir, name)?.ok_or_else(|| {
            Error::Missing(format!(
                "module {name}.ko not found below {}",
                self.modules_dir.display()
            ))
        })?;
        let fname = file.to_string_lossy();
        let tool = if fname.ends_with(".ko.xz") {
            Some("xz")
        } else if fname.ends_with(".ko.zst") {
            Some("zstd")
        } else if fname.ends_with(".ko.gz") {
            Some("gzip")
        } else {
            None
        };
        match tool {
            None => fs::read(&file).ctx(|| format!("read {}", file.display())),
            Some(tool) => {
                let out = Command::new(tool)
                    .arg("-dc")
                    .arg(&file)
                    .output()
                    .ctx(|| format!("run {tool} -dc {}", file.display()))?;
                if !out.status.success() {
                    return Err(Error::Process(format!(
                        "{tool} -dc {} failed",
                        file.display()
                    )));
                }
                Ok(out.stdout)
            }
        }
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn newest_kernel() -> Result<PathBuf> {
    let mut kernels: Vec<PathBuf> = fs::read_dir("/boot")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("vmlinuz-"))
                })
                .collect()
        })
        .unwrap_or_default();
    kernels.sort();
    kernels.pop().ok_or_else(|| {
        Error::Missing("no kernel /boot/vmlinuz-* (apt-get install linux-image-amd64)".into())
    })
}

fn find_module(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let Ok(read) = fs::read_dir(dir) else {
        return Ok(None);
    };
    for entry in read {
        let entry = entry.ctx(|| format!("read {}", dir.display()))?;
        let path = entry.path();
        let ft = entry
            .file_type()
            .ctx(|| format!("stat {}", path.display()))?;
        if ft.is_dir() {
            if let Some(found) = find_module(&path, name)? {
                return Ok(Some(found));
            }
        } else if let Some(fname) = path.file_name().and_then(|n| n.to_str()) {
            if let Some(stem) = fname.split(".ko").next() {
                if stem == name && fname.len() > stem.len() {
                    return Ok(Some(path));
                }
            }
        }
    }
    Ok(None)
}

/// A file to put into the guest's initramfs.
#[derive(Debug, Clone)]
pub enum ExtraFile {
    /// A copy of a host file (symlinks are followed) at `guest` with the host file's mode.
    Host { host: PathBuf, guest: String },
    /// Given bytes at `guest` with `mode`.
    Bytes {
        guest: String,
        data: Vec<u8>,
        mode: u32,
    },
}

/// A host program (such as the `mountshare` binary) at `guest` in the VM, with the shared
/// libraries `ldd` names for it at the same paths as on the host, so it runs in the guest.
pub fn binary_with_libraries(host: &Path, guest: &str) -> Result<Vec<ExtraFile>> {
    if !host.is_file() {
        return Err(Error::NotFound(host.to_path_buf()));
    }
    let mut files = vec![ExtraFile::Host {
        host: host.to_path_buf(),
        guest: guest.to_string(),
    }];
    let out = Command::new("ldd")
        .arg(host)
        .output()
        .ctx(|| format!("run ldd {}", host.display()))?;
    // A static binary makes ldd fail ("not a dynamic executable"): it needs no libraries.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            files.push(ExtraFile::Host {
                host: PathBuf::from(path),
                guest: path.to_string(),
            });
        }
    }
    Ok(files)
}

/// What a guest needs to run Debian's `mount.nfs`: the binary, its shared libraries,
/// `/etc/netconfig`, `/etc/protocols` and `/etc/services`. Without the first two files
/// `mount.nfs` fails with "Protocol not supported". It is installed as `/sbin/mount.nfs`.
pub fn mount_nfs_files() -> Result<Vec<ExtraFile>> {
    let helper = installed(
        &["/sbin/mount.nfs", "/usr/sbin/mount.nfs"],
        "mount.nfs is not installed (apt-get install nfs-common)",
    )?;
    let mut files = binary_with_libraries(&helper, "/sbin/mount.nfs")?;
    let netconfig = PathBuf::from("/etc/netconfig");
    if !netconfig.is_file() {
        return Err(Error::Missing(
            "/etc/netconfig is missing (apt-get install libtirpc-common)".into(),
        ));
    }
    files.push(ExtraFile::Host {
        host: netconfig,
        guest: "/etc/netconfig".into(),
    });
    // getprotobyname("tcp") reads /etc/protocols; without it mount.nfs also says
    // "Protocol not supported".
    for (path, package) in [("/etc/protocols", "netbase"), ("/etc/services", "netbase")] {
        if !Path::new(path).is_file() {
            return Err(Error::Missing(format!(
                "{path} is missing (apt-get install {package})"
            )));
        }
        files.push(ExtraFile::Host {
            host: PathBuf::from(path),
            guest: path.to_string(),
        });
    }
    Ok(files)
}

/// How to boot a VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// A name for the console prefix and errors.
    pub name: String,
    /// The guest script (busybox `sh`, run under `set -e` with the functions listed in the module
    /// documentation).
    pub script: String,
    /// Guest RAM.
    pub memory_mb: u32,
    /// Guest CPUs (TCG runs each on a host thread).
    pub cpus: u32,
    /// Files to add to the initramfs.
    pub extra_files: Vec<ExtraFile>,
    /// Modules of the guest kernel to load after [`MODULES`], in this order (e.g. `macvlan`).
    pub extra_modules: Vec<String>,
    /// How long the guest may take to boot and bring up its network.
    pub boot_timeout: Duration,
    /// Print the console to stderr as it comes.
    pub echo_console: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            name: "vm".into(),
            script: String::new(),
            memory_mb: 1024,
            cpus: 1,
            extra_files: Vec::new(),
            extra_modules: Vec::new(),
            boot_timeout: Duration::from_secs(120),
            echo_console: true,
        }
    }
}

const GUEST_LIB: &str = r#"
say() { echo "$*" >/dev/console; }
host_wait() { IFS= read -r HOST_LINE <&7; }
nfs_mount() { mkdir -p "$3" && mount -t nfs -o "$1" "$2" "$3"; }
emit() {
    echo "@@BLOB $1" >/dev/console
    xxd -p "$2" >/dev/console || return 1
    echo "@@END $1" >/dev/console
}
emit_listing() {
    ( cd "$2" &&
      find . -mindepth 1 -exec stat -c '%f %s %h %u %g %Y %n' {} + >/tmp/.listing.stat &&
      find . -type f -exec md5sum {} + >/tmp/.listing.md5 &&
      find . -type l >/tmp/.listing.l &&
      while IFS= read -r l; do echo "$l" && readlink "$l" || exit 1; done </tmp/.listing.l >/tmp/.listing.links
    ) || { say "emit_listing $1: listing $2 failed"; return 1; }
    emit "$1.stat" /tmp/.listing.stat && emit "$1.md5" /tmp/.listing.md5 && emit "$1.links" /tmp/.listing.links
}
emit_ls() {
    ls -lan --full-time "$2" >/tmp/.ls.out || { say "emit_ls $1: ls $2 failed"; return 1; }
    emit "$1" /tmp/.ls.out
}
emit_names() {
    ls -1A "$2" >/tmp/.names.out || { say "emit_names $1: ls $2 failed"; return 1; }
    say "@@NAMES $1 $(wc -l </tmp/.names.out) $(sort </tmp/.names.out | md5sum | cut -d' ' -f1)"
}
"#;

fn init_script(extra_modules: &[String]) -> String {
    let modules: Vec<&str> = MODULES
        .iter()
        .copied()
        .chain(extra_modules.iter().map(String::as_str))
        .collect();
    let modules = modules.join(" ");
    format!(
        r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    insmod /lib/testkit-modules/$m.ko || echo "@@INIT insmod $m failed"
done
ip link set lo up
ip link set eth0 up
ip addr add {GUEST_IP}/24 dev eth0
ip route add default via {HOST_IP}
i=0
while [ "$(cat /sys/class/net/eth0/operstate 2>/dev/null)" != up ]; do
    i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.1
done
echo "@@INIT eth0 $(cat /sys/class/net/eth0/operstate 2>/dev/null)"
dmesg -n 1
stty -F /dev/ttyS1 raw -echo
exec 7</dev/ttyS1
echo "@@READY"
sh -c '. /lib/testkit.sh; set -e; . /test.sh'
rc=$?
dmesg | grep -iE 'nfs|rpc|lockd' | tail -n 20 | sed 's/^/@@DMESG /'
echo "@@EXIT $rc"
sync
poweroff -f
reboot -f
"#
    )
}

fn build_initramfs(host: &VmHost, config: &VmConfig) -> Result<Vec<u8>> {
    let mut c = Cpio::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut ensure_dirs = |c: &mut Cpio, path: &str| {
        let mut acc = String::new();
        let comps: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for comp in &comps[..comps.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(comp);
            if dirs.insert(acc.clone()) {
                c.dir(&acc);
            }
        }
    };
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "lib", "lib64", "etc", "proc", "sys", "dev", "tmp",
        "mnt", "run", "root", "var",
    ] {
        ensure_dirs(&mut c, &format!("{d}/x"));
    }
    c.char_dev("dev/console", 0o600, 5, 1);
    c.char_dev("dev/null", 0o666, 1, 3);
    let busybox = fs::read(&host.busybox).ctx(|| format!("read {}", host.busybox.display()))?;
    c.file("bin/busybox", 0o755, &busybox);
    // One symlink per applet, but never over a file the test adds (mount.nfs, say).
    let extra_paths: BTreeSet<String> = config
        .extra_files
        .iter()
        .map(|f| match f {
            ExtraFile::Host { guest, .. } | ExtraFile::Bytes { guest, .. } => {
                guest.trim_start_matches('/').to_string()
            }
        })
        .collect();
    for applet in busybox_applets(&host.busybox)? {
        let link = format!("bin/{applet}");
        if applet != "busybox" && !extra_paths.contains(&link) {
            c.symlink(&link, "busybox");
        }
    }
    c.symlink("etc/mtab", "/proc/self/mounts");
    ensure_dirs(&mut c, "lib/testkit-modules/x");
    for m in MODULES
        .iter()
        .copied()
        .chain(config.extra_modules.iter().map(String::as_str))
    {
        c.file(
            &format!("lib/testkit-modules/{m}.ko"),
            0o644,
            &host.module(m)?,
        );
    }
    c.file("init", 0o755, init_script(&config.extra_modules).as_bytes());
    c.file("lib/testkit.sh", 0o644, GUEST_LIB.as_bytes());
    c.file("test.sh", 0o644, config.script.as_bytes());
    for f in &config.extra_files {
        match f {
            ExtraFile::Host { host, guest } => {
                let data = fs::read(host).ctx(|| format!("read {}", host.display()))?;
                let mode = fs::metadata(host)
                    .ctx(|| format!("stat {}", host.display()))
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))?;
                ensure_dirs(&mut c, guest);
                c.file(guest, mode, &data);
            }
            ExtraFile::Bytes { guest, data, mode } => {
                ensure_dirs(&mut c, guest);
                c.file(guest, *mode, data);
            }
        }
    }
    Ok(c.finish())
}

fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .ctx(|| format!("run {} --list", busybox.display()))?;
    if !out.status.success() {
        return Err(Error::Process(format!(
            "{} --list failed",
            busybox.display()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .collect())
}

#[derive(Default)]
struct ConsoleState {
    lines: Vec<String>,
    eof: bool,
}

#[derive(Default)]
struct Console {
    state: Mutex<ConsoleState>,
    cond: Condvar,
}

/// A running guest. Dropping it kills qemu.
pub struct Vm {
    name: String,
    child: Child,
    console: Arc<Console>,
    cursor: usize,
    ctl: UnixStream,
    exit: Option<i32>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("name", &self.name).finish()
    }
}

impl Vm {
    /// Boots a guest and waits (up to `boot_timeout`) until its network is up and its script starts.
    pub fn boot(config: VmConfig) -> Result<Vm> {
        let host = VmHost::find()?;
        let dir = tempfile::Builder::new()
            .prefix("mountshare-vm-")
            .tempdir()
            .ctx(|| "create a temporary directory".to_string())?;
        let initrd = dir.path().join("initramfs.cpio");
        fs::write(&initrd, build_initramfs(&host, &config)?)
            .ctx(|| format!("write {}", initrd.display()))?;
        let ctl_path = dir.path().join("ctl.sock");
        let mut cmd = Command::new(&host.qemu);
        cmd.args(["-accel", "tcg", "-cpu", "max", "-machine", "pc"])
            .args(["-m", &config.memory_mb.to_string()])
            .args(["-smp", &config.cpus.to_string()])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-no-reboot",
                "-display",
                "none",
            ])
            .arg("-kernel")
            .arg(&host.kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=4"])
            .args(["-serial", "stdio"])
            .arg("-serial")
            .arg(format!("unix:{},server=on,wait=off", ctl_path.display()))
            .args(["-netdev", "user,id=n0"])
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .ctx(|| format!("start {}", host.qemu.display()))?;
        let console = Arc::new(Console::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_reader(
            stdout,
            console.clone(),
            format!("[{}]", config.name),
            config.echo_console,
        );
        spawn_reader(
            stderr,
            console.clone(),
            format!("[{} qemu]", config.name),
            true,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let ctl = loop {
            match UnixStream::connect(&ctl_path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Io {
                        context: format!(
                            "connect to qemu's second serial port {}",
                            ctl_path.display()
                        ),
                        source: e,
                    });
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(Error::Process(format!(
                            "qemu exited at once ({status}); console:\n{}",
                            tail(&console, 40)
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let mut vm = Vm {
            name: config.name.clone(),
            child,
            console,
            cursor: 0,
            ctl,
            exit: None,
            _dir: dir,
        };
        let started = Instant::now();
        vm.wait_for("@@READY", config.boot_timeout)?;
        eprintln!("[{}] booted in {:.1?}", vm.name, started.elapsed());
        Ok(vm)
    }

    /// The next console line after the ones already consumed, waiting until `deadline`.
    fn next_line(&mut self, deadline: Instant, waiting_for: &str) -> Result<String> {
        let mut state = self.console.state.lock().expect("console lock");
        loop {
            if self.cursor < state.lines.len() {
                let line = state.lines[self.cursor].clone();
                self.cursor += 1;
                if let Some(code) = line.strip_prefix("@@EXIT ") {
                    self.exit = code.trim().parse().ok();
                }
                return Ok(line);
            }
            if state.eof {
                drop(state);
                return Err(Error::Process(format!(
                    "{}: qemu exited while waiting for {waiting_for}; last console lines:\n{}",
                    self.name,
                    tail(&self.console, 40)
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                return Err(Error::Timeout(format!(
                    "{}: no {waiting_for} on the console; last lines:\n{}",
                    self.name,
                    tail(&self.console, 40)
                )));
            }
            state = self
                .console
                .cond
                .wait_timeout(state, deadline - now)
                .expect("console lock")
                .0;
        }
    }

    /// Waits for a console line starting with `marker` and returns it; lines before it are
    /// consumed. Fails early if the guest script exits or qemu dies first.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.next_line(deadline, marker)?;
            if line.starts_with(marker) {
                return Ok(line);
            }
            if line.starts_with("@@EXIT ") && !marker.starts_with("@@EXIT") {
                return Err(Error::Process(format!(
                    "{}: the guest script ended ({line}) before {marker}; last lines:\n{}",
                    self.name,
                    tail(&self.console, 40)
                )));
            }
        }
    }

    /// Sends one line to the guest, where `host_wait` returns it in `$HOST_LINE`.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        assert!(!line.contains('\n'), "one line at a time");
        self.ctl
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| self.ctl.flush())
            .ctx(|| format!("{}: send a line to the guest", self.name))
    }

    /// Waits for the bytes the guest sent with `emit NAME FILE`.
    pub fn wait_blob(&mut self, name: &str, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let start = format!("@@BLOB {name}");
        self.wait_for(&start, timeout)?;
        let end = format!("@@END {name}");
        let mut data = Vec::new();
        loop {
            let line = self.next_line(deadline, &end)?;
            if line == end {
                return Ok(data);
            }
            let line = line.trim();
            if line.len() % 2 != 0 || !line.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Parse {
                    what: format!("blob {name}"),
                    detail: format!("not a hex line: {line:?}"),
                });
            }
            for i in (0..line.len()).step_by(2) {
                data.push(u8::from_str_radix(&line[i..i + 2], 16).expect("checked hex"));
            }
        }
    }

    /// Waits for the tree the guest sent with `emit_listing NAME DIR`.
    pub fn wait_listing(&mut self, name: &str, timeout: Duration) -> Result<Listing> {
        let deadline = Instant::now() + timeout;
        let left = |d: Instant| d.saturating_duration_since(Instant::now());
        let stat = self.wait_blob(&format!("{name}.stat"), left(deadline))?;
        let md5 = self.wait_blob(&format!("{name}.md5"), left(deadline))?;
        let links = self.wait_blob(&format!("{name}.links"), left(deadline))?;
        parse_stat_listing(&stat, &md5, &links)
    }

    /// Waits for `emit_names NAME DIR` and returns the entry count and the md5 of the sorted names.
    pub fn wait_names(&mut self, name: &str, timeout: Duration) -> Result<(usize, String)> {
        let line = self.wait_for(&format!("@@NAMES {name} "), timeout)?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, _, count, md5] => Ok((
                count.parse().map_err(|_| Error::Parse {
                    what: "names line".into(),
                    detail: line.clone(),
                })?,
                md5.to_string(),
            )),
            _ => Err(Error::Parse {
                what: "names line".into(),
                detail: line.clone(),
            }),
        }
    }

    /// Waits for the guest script to end and qemu to exit; returns the script's exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        if self.exit.is_none() {
            let line = self.wait_for("@@EXIT ", timeout)?;
            self.exit = Some(
                line["@@EXIT ".len()..]
                    .trim()
                    .parse()
                    .map_err(|_| Error::Parse {
                        what: "exit line".into(),
                        detail: line.clone(),
                    })?,
            );
        }
        let code = self.exit.expect("set above");
        let grace = deadline.max(Instant::now() + Duration::from_secs(30));
        while Instant::now() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(code);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(code)
    }

    /// Every console line so far.
    pub fn console(&self) -> Vec<String> {
        self.console
            .state
            .lock()
            .expect("console lock")
            .lines
            .clone()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` console lines, leaving out the hex lines of blobs.
fn tail(console: &Console, n: usize) -> String {
    let state = console.state.lock().expect("console lock");
    let lines: Vec<&str> = state
        .lines
        .iter()
        .map(String::as_str)
        .filter(|l| !is_hex_line(l))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn is_hex_line(line: &str) -> bool {
    line.len() >= 32 && line.bytes().all(|b| b.is_ascii_hexdigit())
}

fn spawn_reader(
    pipe: impl Read + Send + 'static,
    console: Arc<Console>,
    prefix: String,
    echo: bool,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    let line = String::from_utf8_lossy(&buf).replace('\r', "");
                    if echo && !is_hex_line(&line) {
                        eprintln!("{prefix} {line}");
                    }
                    let mut state = console.state.lock().expect("console lock");
                    state.lines.push(line);
                    console.cond.notify_all();
                }
            }
        }
        let mut state = console.state.lock().expect("console lock");
        state.eof = true;
        console.cond.notify_all();
    });
}

/// `busybox ls -lan --full-time DIR` on the host, in UTC and the C locale, as the guest's `emit_ls`
/// produces it.
pub fn host_ls(dir: &Path) -> Result<Vec<u8>> {
    let host = VmHost::find()?;
    let out = Command::new(&host.busybox)
        .args(["ls", "-lan", "--full-time"])
        .arg(dir)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .output()
        .ctx(|| "run busybox ls".to_string())?;
    if !out.status.success() {
        return Err(Error::Process(format!(
            "busybox ls {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

/// The lines of `ls -la` output without the `..` entry (whose attributes belong to whatever the
/// directory is mounted on), for comparing a host's and a client's `ls -la`.
pub fn ls_lines_without_parent(ls: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(ls)
        .lines()
        .filter(|l| !l.ends_with(" .."))
        .map(str::to_string)
        .collect()
}
