//! What `--listen-health` shows a user, over HTTP against a running server on loopback:
//! `/metrics` counts exactly the calls a client made (by procedure and status, with their
//! latencies and the bytes read) and the connections the listener counted, and `/readyz` turns
//! 503 while the exported directory stops answering and 200 again once it recovers.
mod common;

use common::*;
use mountshare_client::proto::nfs3::*;
use mountshare_fs::fault::{Fault, Op};
use mountshare_fs::RelPath;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET `path`: (status code, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

/// The samples of a scrape: `name{labels}` -> value.
async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn calls(program: &str, procedure: &str, status: &str) -> String {
    format!(
        "mountshare_serve_calls_total{{program=\"{program}\",procedure=\"{procedure}\",status=\"{status}\"}}"
    )
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

/// Ask `/readyz` until it answers `want` (at most a minute; each answer is printed on failure).
async fn wait_ready(addr: SocketAddr, want: u16) -> String {
    let mut last = (0, String::new());
    for _ in 0..600 {
        last = get(addr, "/readyz").await;
        if last.0 == want {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered {want}; last: {} {}", last.0, last.1);
}

fn with_health(c: &mut mountshare_server::ServerConfig) {
    c.health.listen = Some("127.0.0.1:0".parse().unwrap());
    c.health.probe_interval = Duration::from_millis(50);
    c.health.probe_timeout = Duration::from_millis(300);
}

#[tokio::test]
async fn metrics_count_the_calls_a_client_made() {
    let (t, _outside) = sample_tree();
    let server = TestServer::start_with(
        std::sync::Arc::new(mountshare_fs::LocalFs::open(t.path()).unwrap()),
        with_health,
    )
    .await;
    let health = server.health.expect("--listen-health is served");
    assert_eq!(get(health, "/livez").await.0, 200);
    wait_ready(health, 200).await;

    let m = server.mount().await;
    let before = scrape(health).await;
    for _ in 0..3 {
        m.nfs.getattr_of(&m.root).await.unwrap();
    }
    for _ in 0..2 {
        assert_eq!(
            lookup_status(&m, &m.root, b"missing").await,
            NfsStat3::NoEnt
        );
    }
    let dir = m.nfs.lookup_name(&m.root, b"dir").await.unwrap().object;
    let file = m.nfs.lookup_name(&dir, b"file").await.unwrap().object;
    for _ in 0..2 {
        assert_eq!(m.nfs.read_all(&file).await.unwrap(), b"hello world");
    }
    let stale = fh(vec![1, 3, 0, 0, 0, 0, 0, 0, 0, 1]);
    let r = m
        .nfs
        .getattr(&GetAttr3Args { object: stale })
        .await
        .unwrap();
    assert_ne!(r.status(), NfsStat3::Ok);
    let after = scrape(health).await;

    assert_eq!(
        delta(&before, &after, &calls("nfs", "GETATTR", "NFS3_OK")),
        3.0
    );
    assert_eq!(
        delta(&before, &after, &calls("nfs", "LOOKUP", "NFS3ERR_NOENT")),
        2.0
    );
    assert_eq!(
        delta(&before, &after, &calls("nfs", "LOOKUP", "NFS3_OK")),
        2.0
    );
    let reads = delta(&before, &after, &calls("nfs", "READ", "NFS3_OK"));
    assert!(reads >= 2.0, "each read_all is at least one READ: {reads}");
    assert_eq!(
        delta(&before, &after, "mountshare_serve_read_bytes_total"),
        22.0,
        "two reads of an 11-byte file"
    );
    let failed_getattr: f64 = ["NFS3ERR_STALE", "NFS3ERR_BADHANDLE"]
        .iter()
        .map(|s| delta(&before, &after, &calls("nfs", "GETATTR", s)))
        .sum();
    assert_eq!(failed_getattr, 1.0, "the forged handle");
    assert_eq!(
        delta(
            &before,
            &after,
            "mountshare_serve_call_duration_seconds_count{program=\"nfs\",procedure=\"GETATTR\"}"
        ),
        4.0
    );
    assert_eq!(
        delta(&before, &after, &calls("mount", "MNT", "MNT3_OK")),
        0.0,
        "nothing else was counted"
    );
    assert_eq!(before[&calls("mount", "MNT", "MNT3_OK")], 1.0, "the mount");
    assert_eq!(after["mountshare_serve_calls_in_flight"], 0.0);
    assert_eq!(after["mountshare_serve_ready"], 1.0);
    assert_eq!(after["mountshare_serve_backend_stuck_calls"], 0.0);
    assert!(after["mountshare_serve_cache_entries{cache=\"handles\"}"] >= 2.0);
    assert!(after.contains_key("mountshare_serve_connections_open"));
    assert!(after.contains_key("mountshare_serve_connections_refused_total{reason=\"allow_list\"}"));
    for reason in ["limit", "per_address"] {
        let series = format!("mountshare_serve_connections_evicted_total{{reason=\"{reason}\"}}");
        assert_eq!(after.get(&series), Some(&0.0), "{series}");
    }
    server.stop().await;
}

#[tokio::test]
async fn readyz_turns_503_while_the_export_root_does_not_answer_and_200_after() {
    let (t, _outside) = sample_tree();
    let fs = faulty(t.path());
    let server = TestServer::start_with(fs.clone(), with_health).await;
    let _release = fs.releaser();
    let health = server.health.expect("--listen-health is served");
    let why = wait_ready(health, 200).await;
    assert!(why.contains("answered a stat"), "{why}");

    // The exported directory stops answering: every stat of its root hangs.
    fs.inject(Op::Stat, Fault::hold().at(&RelPath::root()));
    let why = wait_ready(health, 503).await;
    assert!(
        why.contains("did not answer a stat within 300 ms") || why.contains("still stuck"),
        "{why}"
    );
    assert_eq!(get(health, "/livez").await.0, 200, "alive all the same");
    let m = scrape(health).await;
    assert_eq!(m["mountshare_serve_ready"], 0.0);
    assert!(m["mountshare_serve_root_probe_failures_total{reason=\"timeout\"}"] >= 1.0);

    // It recovers: the hung stats return, and new ones are answered.
    fs.clear(Op::Stat);
    fs.release(Op::Stat);
    let why = wait_ready(health, 200).await;
    assert!(why.contains("answered a stat"), "{why}");
    server.stop().await;
}

/// The connection metrics are the listener's own counts: a connection refused by the
/// allow-list shows up as refused, a client that mounted as open.
#[tokio::test]
async fn metrics_show_the_connections_the_listener_counted() {
    let (t, _outside) = sample_tree();
    let only: mountshare_server::Cidr = "127.0.0.1/32".parse().unwrap();
    let srv = TestServer::start_with(
        std::sync::Arc::new(mountshare_fs::LocalFs::open(t.path()).unwrap()),
        |c| {
            with_health(c);
            c.allow = mountshare_server::AllowList::only(vec![only]);
        },
    )
    .await;
    let health = srv.health.unwrap();
    let before = scrape(health).await;
    assert_eq!(
        before.get("mountshare_serve_connections_closed_unread_total"),
        Some(&0.0)
    );
    // From outside the allow-list: closed by the server at once.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut outside = sock.connect(srv.addr).await.unwrap();
    let mut b = [0u8; 64];
    while tokio::time::timeout(Duration::from_secs(30), outside.read(&mut b))
        .await
        .expect("the server closes a connection from outside the allow-list")
        .is_ok_and(|n| n > 0)
    {}
    let m = srv.mount().await;
    m.nfs.getattr_of(&m.root).await.unwrap();
    let after = scrape(health).await;
    assert_eq!(
        after.get("mountshare_serve_connections_refused_total{reason=\"allow_list\"}"),
        Some(&1.0),
        "{after:?}"
    );
    assert_eq!(srv.observer.connections().refused_allow_list, 1);
    assert!(
        after
            .get("mountshare_serve_connections_open")
            .is_some_and(|&n| n >= 1.0),
        "the mounted client's connection is open: {after:?}"
    );
    drop(m);
}
