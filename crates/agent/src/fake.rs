//! A recording fake of [`MountOps`]: an in-memory mount table with stacking, propagation flags,
//! dead mounts and an unreachable server, so the reconcile logic is tested without a kernel.

use crate::ops::{MountOps, OpsError, Placement, ProbeResult};
use mountshare_mounts::mountinfo::escape;
use mountshare_mounts::options::MountSpec;
use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A call the reconciler made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Resolve,
    Connect(SocketAddr),
    Probe(u64),
    Mount {
        source: String,
        placement: Placement,
        data: String,
    },
    UmountLazy,
    Protect,
}

#[derive(Debug, Clone)]
pub struct FakeMount {
    pub id: u64,
    pub parent: u64,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub shared: Option<u64>,
}

#[derive(Debug)]
pub struct World {
    pub mounts: Vec<FakeMount>,
    pub next_id: u64,
    pub calls: Vec<Call>,
    pub resolve: Result<Vec<SocketAddr>, String>,
    pub reachable: bool,
    pub dead: HashSet<u64>,
    pub beneath_supported: bool,
    pub mount_error: Option<String>,
    pub bare_mode: u32,
}

#[derive(Debug)]
pub struct FakeOps {
    pub world: RefCell<World>,
}

pub const TARGET: &str = "/mnt/decypharr dfs";
pub const SERVER_IP: &str = "10.43.0.10";

impl FakeOps {
    /// A pod's view: root, and the hostPath bind of TARGET onto itself with the given sharing.
    pub fn pod(shared: bool) -> Self {
        let world = World {
            mounts: vec![
                FakeMount {
                    id: 20,
                    parent: 1,
                    mount_point: "/".into(),
                    fstype: "overlay".into(),
                    source: "overlay".into(),
                    shared: None,
                },
                FakeMount {
                    id: 30,
                    parent: 20,
                    mount_point: TARGET.into(),
                    fstype: "ext4".into(),
                    source: "/dev/sda1".into(),
                    shared: shared.then_some(7),
                },
            ],
            next_id: 100,
            calls: Vec::new(),
            resolve: Ok(vec![format!("{SERVER_IP}:2049").parse().unwrap()]),
            reachable: true,
            dead: HashSet::new(),
            beneath_supported: true,
            mount_error: None,
            bare_mode: 0o755,
        };
        Self {
            world: RefCell::new(world),
        }
    }

    fn top_at(w: &World, path: &Path) -> Option<usize> {
        let at: Vec<usize> = (0..w.mounts.len())
            .filter(|&i| w.mounts[i].mount_point == path)
            .collect();
        at.iter()
            .copied()
            .find(|&i| !at.iter().any(|&j| w.mounts[j].parent == w.mounts[i].id))
    }

    /// Put an NFS mount on top of TARGET, as if left by an earlier agent or another tool.
    pub fn add_nfs(&self, source: &str, alive: bool) -> u64 {
        let mut w = self.world.borrow_mut();
        let parent = Self::top_at(&w, Path::new(TARGET))
            .map(|i| w.mounts[i].id)
            .unwrap();
        let id = w.next_id;
        w.next_id += 1;
        w.mounts.push(FakeMount {
            id,
            parent,
            mount_point: TARGET.into(),
            fstype: "nfs".into(),
            source: source.into(),
            shared: Some(id),
        });
        if !alive {
            w.dead.insert(id);
        }
        id
    }

    /// The NFS mounts stacked at TARGET, bottom first, as (id, source).
    pub fn nfs_stack(&self) -> Vec<(u64, String)> {
        let w = self.world.borrow();
        let mut out = Vec::new();
        let mut cur = Self::top_at(&w, Path::new(TARGET));
        while let Some(i) = cur {
            let m = &w.mounts[i];
            if m.fstype == "nfs" {
                out.push((m.id, m.source.clone()));
            }
            cur = w
                .mounts
                .iter()
                .position(|p| p.id == m.parent && p.mount_point == m.mount_point);
        }
        out.reverse();
        out
    }

    pub fn calls(&self) -> Vec<Call> {
        self.world.borrow().calls.clone()
    }

    /// Calls that change something (mount, unmount, chmod), in order.
    pub fn actions(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Mount { .. } | Call::UmountLazy | Call::Protect))
            .collect()
    }

    pub fn clear_calls(&self) {
        self.world.borrow_mut().calls.clear();
    }

    pub fn kill_all(&self) {
        let mut w = self.world.borrow_mut();
        let ids: Vec<u64> = w
            .mounts
            .iter()
            .filter(|m| m.fstype == "nfs")
            .map(|m| m.id)
            .collect();
        w.dead.extend(ids);
    }
}

impl MountOps for FakeOps {
    fn mountinfo(&self) -> Result<Vec<u8>, OpsError> {
        let w = self.world.borrow();
        let mut out = Vec::new();
        for m in &w.mounts {
            out.extend(format!("{} {} 0:{} / ", m.id, m.parent, m.id).as_bytes());
            out.extend(escape(m.mount_point.as_os_str().as_bytes()));
            out.extend(b" rw,relatime");
            if let Some(g) = m.shared {
                out.extend(format!(" shared:{g}").as_bytes());
            }
            out.extend(format!(" - {} {} rw\n", m.fstype, m.source).as_bytes());
        }
        Ok(out)
    }

    fn resolve(&self, _host: &str, _port: u16) -> Result<Vec<SocketAddr>, OpsError> {
        let mut w = self.world.borrow_mut();
        w.calls.push(Call::Resolve);
        w.resolve.clone().map_err(|message| OpsError::Failed {
            op: "resolve",
            message,
        })
    }

    fn connect(&self, addr: SocketAddr, _timeout: Duration) -> Result<(), OpsError> {
        let mut w = self.world.borrow_mut();
        w.calls.push(Call::Connect(addr));
        if w.reachable {
            Ok(())
        } else {
            Err(OpsError::Failed {
                op: "connect",
                message: format!("{addr}: Connection refused"),
            })
        }
    }

    fn probe(&self, _target: &Path, mount_id: u64, deadline: Duration) -> ProbeResult {
        let mut w = self.world.borrow_mut();
        w.calls.push(Call::Probe(mount_id));
        if w.dead.contains(&mount_id) {
            ProbeResult::TimedOut { deadline }
        } else {
            ProbeResult::Ok {
                elapsed: Duration::from_millis(2),
            }
        }
    }

    fn mount_nfs(
        &self,
        spec: &MountSpec,
        target: &Path,
        placement: Placement,
    ) -> Result<(), OpsError> {
        let mut w = self.world.borrow_mut();
        w.calls.push(Call::Mount {
            source: spec.source.clone(),
            placement,
            data: spec.data_string(),
        });
        if let Some(message) = w.mount_error.clone() {
            return Err(OpsError::Failed {
                op: "mount",
                message,
            });
        }
        if placement == Placement::Beneath && !w.beneath_supported {
            return Err(OpsError::BeneathUnsupported {
                message: "Invalid argument".into(),
            });
        }
        let top = Self::top_at(&w, target).expect("fake: target exists");
        let id = w.next_id;
        w.next_id += 1;
        let parent = match placement {
            Placement::Top => w.mounts[top].id,
            Placement::Beneath => {
                let p = w.mounts[top].parent;
                w.mounts[top].parent = id;
                p
            }
        };
        w.mounts.push(FakeMount {
            id,
            parent,
            mount_point: target.into(),
            fstype: "nfs".into(),
            source: spec.source.clone(),
            shared: Some(id),
        });
        Ok(())
    }

    fn umount_lazy(&self, target: &Path) -> Result<(), OpsError> {
        let mut w = self.world.borrow_mut();
        w.calls.push(Call::UmountLazy);
        let top = Self::top_at(&w, target).expect("fake: target exists");
        w.mounts.remove(top);
        Ok(())
    }

    fn protect_bare_dir(&self, _target: &Path) -> Result<bool, OpsError> {
        let mut w = self.world.borrow_mut();
        w.calls.push(Call::Protect);
        let changed = w.bare_mode != 0;
        w.bare_mode = 0;
        Ok(changed)
    }
}
