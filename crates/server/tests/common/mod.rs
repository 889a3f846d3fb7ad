//! Shared setup for the server's integration tests: a server on 127.0.0.1 over a temporary tree,
//! driven by the in-repo client.
#![allow(dead_code)]

use mountshare_client::proto::nfs3::*;
use mountshare_client::{ConnectOptions, Mounted};
use mountshare_fs::fault::{FaultFs, Op};
use mountshare_fs::{Backend, LocalFs};
use mountshare_server::{Server, ServerConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; stops when dropped or with [`TestServer::stop`].
pub struct TestServer {
    pub addr: SocketAddr,
    pub observer: mountshare_server::Observer,
    /// Where `/livez`, `/readyz` and `/metrics` are served, when configured.
    pub health: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(dir: &Path) -> TestServer {
        Self::start_with(Arc::new(LocalFs::open(dir).unwrap()), |_| {}).await
    }

    pub async fn start_with(
        backend: Arc<dyn Backend>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        configure(&mut config);
        let server = Server::bind(config, backend).await.unwrap();
        let addr = server.local_addr();
        let observer = server.observer();
        let health = server.health_addr();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            observer,
            health,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stop and wait until the server has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    pub async fn mount(&self) -> Mounted {
        Mounted::connect(self.addr, "/").await.unwrap()
    }

    pub async fn mount_as(&self, uid: u32, gid: u32) -> Mounted {
        let opts = ConnectOptions {
            cred: mountshare_client::proto::rpc::OpaqueAuth::sys(
                &mountshare_client::proto::rpc::AuthSys {
                    stamp: 0,
                    machinename: b"test".to_vec(),
                    uid,
                    gid,
                    gids: Vec::new(),
                },
            ),
            ..ConnectOptions::default()
        };
        Mounted::connect_with(self.addr, "/", opts).await.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A small tree: `dir/file` ("hello world"), `dir/sub/`, `dir/link -> file`, `secret` (0600,
/// owned by root), and links pointing outside the tree (`escape-dir`, `escape-file`).
pub fn sample_tree() -> (tempfile::TempDir, tempfile::TempDir) {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("passwd"), b"outside").unwrap();
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    std::fs::write(root.join("dir/file"), b"hello world").unwrap();
    symlink("file", root.join("dir/link")).unwrap();
    std::fs::write(root.join("secret"), b"top secret").unwrap();
    std::fs::set_permissions(root.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    symlink(outside.path(), root.join("escape-dir")).unwrap();
    symlink(outside.path().join("passwd"), root.join("escape-file")).unwrap();
    (t, outside)
}

pub fn fh(data: Vec<u8>) -> NfsFh3 {
    NfsFh3 { data }
}

pub fn dirop(dir: &NfsFh3, name: &[u8]) -> DirOpArgs3 {
    DirOpArgs3 {
        dir: dir.clone(),
        name: name.to_vec(),
    }
}

/// LOOKUP `name` in `dir` and return the result's status.
pub async fn lookup_status(m: &Mounted, dir: &NfsFh3, name: &[u8]) -> NfsStat3 {
    m.nfs
        .lookup(&Lookup3Args {
            what: dirop(dir, name),
        })
        .await
        .unwrap()
        .status()
}

/// The tree at `dir` behind a [`FaultFs`]: every call passes until the test injects a fault.
pub fn faulty(dir: &Path) -> Arc<FaultFs<LocalFs>> {
    Arc::new(FaultFs::new(LocalFs::open(dir).unwrap()))
}

/// Wait, off the executor, until `n` calls of `op` are held in `fs`. A test whose calls never
/// get there fails after a minute instead of hanging.
pub async fn wait_held(fs: &Arc<FaultFs<LocalFs>>, op: Op, n: usize) {
    let fs = fs.clone();
    let held =
        tokio::task::spawn_blocking(move || fs.wait_held_timeout(op, n, Duration::from_secs(60)))
            .await
            .unwrap();
    assert!(held, "{n} calls of {op:?} never reached the file system");
}
