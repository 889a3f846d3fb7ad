//! `mountshare serve` as a user runs it: clear one-line errors for a bad command line, a clean
//! exit on SIGTERM, a read that carries on across `kill -9` and a restart, and a health port
//! that answers while `--run` still waits for its FUSE mount.
use mountshare_client::proto::nfs3::{NfsFh3, Read3Args};
use mountshare_client::{Mounted, NfsClient};
use mountshare_testkit::server::ServerProcess;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");

/// Run `mountshare serve ARGS` expecting it to fail; returns its stderr.
fn serve_fails(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one clear line, got: {stderr}");
    lines[0]
}

#[test]
fn missing_directory_is_one_clear_line() {
    let line = one_line(&serve_fails(&[
        "/nonexistent/dir",
        "--listen",
        "127.0.0.1:0",
    ]))
    .to_owned();
    assert!(
        line.contains("/nonexistent/dir") && line.contains("No such file"),
        "{line}"
    );
}

#[test]
fn a_file_is_not_a_directory() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let p = f.path().to_str().unwrap();
    let line = one_line(&serve_fails(&[p, "--listen", "127.0.0.1:0"])).to_owned();
    assert!(line.contains("not a directory"), "{line}");
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let d = tempfile::tempdir().unwrap();
    let line = one_line(&serve_fails(&[
        d.path().to_str().unwrap(),
        "--listen",
        &addr,
    ]))
    .to_owned();
    assert!(line.contains(&addr) && line.contains("in use"), "{line}");
}

#[test]
fn a_bad_listen_address_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let err = serve_fails(&[d.path().to_str().unwrap(), "--listen", "not-an-address"]);
    assert!(err.contains("--listen"), "{err}");
}

#[test]
fn a_sloppy_allow_block_says_what_was_meant() {
    let d = tempfile::tempdir().unwrap();
    let err = serve_fails(&[d.path().to_str().unwrap(), "--allow", "10.42.1.0/16"]);
    assert!(
        err.contains("--allow") && err.contains("did you mean 10.42.0.0/16"),
        "{err}"
    );
}

#[test]
fn sigterm_exits_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let mut srv = ServerProcess::start_local(BIN, d.path(), &[]).unwrap();
    let status = srv.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "exit status {status:?}\n{}", srv.log());
    assert!(srv.log().contains("drained"), "{}", srv.log());
}

/// GET `path` from 127.0.0.1:`port`: the status line, or nothing if nothing answers.
fn http_status(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().next().map(str::to_string)
}

#[test]
fn the_health_port_is_alive_and_not_ready_while_run_waits_for_its_mount() {
    let d = tempfile::tempdir().unwrap();
    let port = mountshare_testkit::free_port();
    let nfs = mountshare_testkit::free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(d.path())
        .args(["--listen", &format!("127.0.0.1:{nfs}")])
        .args(["--listen-health", &format!("127.0.0.1:{port}")])
        .args(["--run", "--", "sleep", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut live = None;
    for _ in 0..300 {
        live = http_status(port, "/livez");
        if live.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = http_status(port, "/readyz");
    // SIGTERM: serve passes it on to its child and exits with it.
    let pid = rustix::process::Pid::from_child(&child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::Term);
    let _ = child.wait();
    assert_eq!(
        live.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "alive while waiting"
    );
    assert_eq!(
        ready.as_deref(),
        Some("HTTP/1.1 503 Service Unavailable"),
        "not ready: nothing is served yet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_carries_on_across_kill_9_and_a_restart() {
    let d = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(d.path().join("movie.mkv"), &data).unwrap();
    let mut srv = ServerProcess::start_local(BIN, d.path(), &[]).unwrap();
    let addr = srv.addr();
    let m = Mounted::connect(addr, "/").await.unwrap();
    let fh: NfsFh3 = m.nfs.lookup_path(&m.root, "movie.mkv").await.unwrap();
    let mut got = Vec::new();
    let chunk = 1u32 << 20;
    while got.len() < data.len() / 2 {
        let r = m
            .nfs
            .read(&Read3Args {
                file: fh.clone(),
                offset: got.len() as u64,
                count: chunk,
            })
            .await
            .unwrap()
            .ok()
            .unwrap();
        got.extend_from_slice(&r.data);
    }
    // Half-way: the server dies hard and comes back on the same port with no state.
    srv.kill9().unwrap();
    srv.restart().unwrap();
    // The client reconnects (as the kernel does) and goes on with the handle it holds.
    let c = NfsClient::connect(addr).await.unwrap();
    while got.len() < data.len() {
        let r = c
            .read(&Read3Args {
                file: fh.clone(),
                offset: got.len() as u64,
                count: chunk,
            })
            .await
            .unwrap()
            .ok()
            .expect("no ESTALE or EIO after the restart");
        got.extend_from_slice(&r.data);
        if r.eof {
            break;
        }
    }
    assert!(
        got == data,
        "the bytes read across the restart match the file"
    );
    assert_eq!(srv.starts(), 2);
}
