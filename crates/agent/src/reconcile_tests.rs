//! Reconcile logic against the recording fake: one test per state of the target.

use super::*;
use crate::fake::{Call, FakeOps, SERVER_IP, TARGET};

fn agent(ops: FakeOps) -> Reconciler<FakeOps> {
    let cfg = Config::new(
        "nfs.media.svc:2049".parse().unwrap(),
        "/".into(),
        TARGET.into(),
    );
    Reconciler::new(ops, cfg, Metrics::new(), 7)
}

fn ours() -> String {
    format!("{SERVER_IP}:/")
}

fn mount_call(placement: Placement) -> impl Fn(&Call) -> bool {
    move |c| matches!(c, Call::Mount { placement: p, .. } if *p == placement)
}

#[test]
fn healthy_existing_mount_is_adopted_without_mounting() {
    let ops = FakeOps::pod(true);
    let id = ops.add_nfs(&ours(), true);
    let mut a = agent(ops);
    a.tick(Instant::now());
    assert_eq!(a.state(), State::Healthy);
    assert!(a.is_ready());
    assert!(a.reason().contains("adopted"), "{}", a.reason());
    assert!(a.ops().calls().contains(&Call::Probe(id)));
    assert_eq!(
        a.ops().actions(),
        vec![],
        "adoption must not mount, unmount or chmod"
    );
}

#[test]
fn hostpath_bind_alone_is_absent_then_mounted_after_protecting_the_bare_dir() {
    let mut a = agent(FakeOps::pod(true));
    let now = Instant::now();
    a.tick(now);
    assert_eq!(a.state(), State::Absent);
    assert!(!a.is_ready());
    let actions = a.ops().actions();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(
        actions[0],
        Call::Protect,
        "the bare dir is protected before the first mount"
    );
    match &actions[1] {
        Call::Mount {
            source,
            placement,
            data,
        } => {
            assert_eq!(source, &ours());
            assert_eq!(*placement, Placement::Top);
            assert!(
                data.contains("port=2049,mountport=2049")
                    && data.contains("nolock")
                    && data.contains("soft")
            );
        }
        other => panic!("expected a mount, got {other:?}"),
    }
    a.tick(now + Duration::from_secs(1));
    assert_eq!(a.state(), State::Healthy);
    assert!(a.is_ready());
    assert_eq!(a.ops().nfs_stack().len(), 1);
}

#[test]
fn stale_mount_is_replaced_beneath_then_the_dead_one_detached() {
    let ops = FakeOps::pod(true);
    let dead = ops.add_nfs(&ours(), false);
    let mut a = agent(ops);
    let now = Instant::now();
    a.tick(now);
    assert!(!a.is_ready());
    assert_eq!(a.state(), State::Unresponsive);
    let calls = a.ops().calls();
    let probe = calls.iter().position(|c| *c == Call::Probe(dead)).unwrap();
    let mount = calls
        .iter()
        .position(mount_call(Placement::Beneath))
        .expect("a mount beneath");
    let umount = calls
        .iter()
        .position(|c| *c == Call::UmountLazy)
        .expect("a lazy detach");
    assert!(
        probe < mount && mount < umount,
        "probe, then mount beneath, then detach: {calls:?}"
    );
    // The dead mount is gone, one live mount of ours remains, with no protect (a mount existed).
    let stack = a.ops().nfs_stack();
    assert_eq!(stack.len(), 1);
    assert_ne!(stack[0].0, dead);
    assert!(!a.ops().actions().contains(&Call::Protect));
    a.tick(now + Duration::from_secs(1));
    assert_eq!(a.state(), State::Healthy);
    assert!(a.is_ready());
    assert!(a
        .metrics
        .encode()
        .contains("mountshare_attach_remounts_total 1"));
}

#[test]
fn wrong_source_is_replaced_by_ours() {
    let ops = FakeOps::pod(true);
    ops.add_nfs("10.9.9.9:/other", true);
    let mut a = agent(ops);
    let now = Instant::now();
    a.tick(now);
    assert_eq!(a.state(), State::WrongSource);
    assert!(a.reason().contains("10.9.9.9:/other"), "{}", a.reason());
    let actions = a.ops().actions();
    assert!(
        mount_call(Placement::Beneath)(&actions[0]) && actions[1] == Call::UmountLazy,
        "{actions:?}"
    );
    assert_eq!(
        a.ops()
            .nfs_stack()
            .iter()
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>(),
        vec![ours()]
    );
    a.tick(now + Duration::from_secs(1));
    assert!(a.is_ready());
}

#[test]
fn wrong_source_reason_names_each_expected_source_once() {
    let ops = FakeOps::pod(true);
    ops.add_nfs("10.9.9.9:/other", true);
    let cfg = Config::new(
        format!("{SERVER_IP}:2049").parse().unwrap(),
        "/".into(),
        TARGET.into(),
    );
    let mut a = Reconciler::new(ops, cfg, Metrics::new(), 7);
    a.tick(Instant::now());
    assert_eq!(a.state(), State::WrongSource);
    assert!(
        a.reason().ends_with(&format!("expected {}", ours())),
        "--server given as an address: {}",
        a.reason()
    );
}

#[test]
fn stacked_mounts_with_a_live_top_are_ready_and_left_alone() {
    let ops = FakeOps::pod(true);
    ops.add_nfs(&ours(), false);
    ops.add_nfs(&ours(), true);
    let mut a = agent(ops);
    a.tick(Instant::now());
    assert_eq!(a.state(), State::Stacked);
    assert!(a.is_ready());
    assert!(
        a.reason().contains("adopted"),
        "a restarted agent says it adopted a stacked mount too: {}",
        a.reason()
    );
    assert_eq!(a.ops().actions(), vec![]);
    assert!(a
        .metrics
        .encode()
        .contains("mountshare_attach_nfs_stack_depth 2"));
}

#[test]
fn unreachable_server_backs_off_growing_to_the_cap_and_mounts_once_back() {
    let ops = FakeOps::pod(true);
    ops.world.borrow_mut().reachable = false;
    let mut a = agent(ops);
    let start = Instant::now();
    let mut now = start;
    let mut attempts = Vec::new();
    // Tick often; only ticks past the back-off try to connect.
    for _ in 0..4000 {
        a.ops().clear_calls();
        a.tick(now);
        if a.ops()
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Connect(_)))
        {
            attempts.push(now);
        }
        now += Duration::from_millis(250);
    }
    assert_eq!(a.state(), State::Unreachable);
    assert!(!a.is_ready());
    assert!(a.reason().contains("Connection refused"), "{}", a.reason());
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > 10, "{gaps:?}");
    assert!(
        gaps[0] <= Duration::from_millis(1250),
        "first retry soon: {gaps:?}"
    );
    assert!(
        gaps.iter()
            .all(|g| *g <= Duration::from_secs(60) + Duration::from_millis(250)),
        "capped: {gaps:?}"
    );
    assert!(
        gaps[gaps.len() - 1] >= Duration::from_secs(30),
        "grew to the cap: {gaps:?}"
    );
    assert_eq!(
        a.ops()
            .actions()
            .iter()
            .filter(|c| matches!(c, Call::Mount { .. }))
            .count(),
        0
    );
    // The server comes back: the next attempt mounts, and the agent becomes ready.
    a.ops().world.borrow_mut().reachable = true;
    let at = a.next_attempt().unwrap();
    a.tick(at);
    a.tick(at + Duration::from_secs(1));
    assert_eq!(a.state(), State::Healthy);
    assert!(a.is_ready());
    assert!(a
        .metrics
        .encode()
        .contains("mountshare_attach_consecutive_failures 0"));
}

#[test]
fn dead_mount_and_dead_server_is_unreachable_and_nothing_is_stacked() {
    let ops = FakeOps::pod(true);
    ops.add_nfs(&ours(), false);
    ops.world.borrow_mut().reachable = false;
    let mut a = agent(ops);
    a.tick(Instant::now());
    assert_eq!(a.state(), State::Unreachable);
    assert_eq!(
        a.ops().actions(),
        vec![],
        "never mount against a server that refuses connections"
    );
    assert_eq!(a.ops().nfs_stack().len(), 1);
}

#[test]
fn private_target_is_not_ready_and_never_mounted() {
    let mut a = agent(FakeOps::pod(false));
    a.tick(Instant::now());
    assert_eq!(a.state(), State::NotShared);
    assert!(!a.is_ready());
    assert!(
        a.reason().contains("mountPropagation: Bidirectional"),
        "{}",
        a.reason()
    );
    assert!(a.reason().contains("private"), "{}", a.reason());
    assert_eq!(a.ops().actions(), vec![]);
}

#[test]
fn without_mount_beneath_the_fresh_mount_goes_on_top_and_is_not_detached() {
    let ops = FakeOps::pod(true);
    let dead = ops.add_nfs(&ours(), false);
    ops.world.borrow_mut().beneath_supported = false;
    let mut a = agent(ops);
    let now = Instant::now();
    a.tick(now);
    let actions = a.ops().actions();
    assert!(
        mount_call(Placement::Beneath)(&actions[0]) && mount_call(Placement::Top)(&actions[1]),
        "{actions:?}"
    );
    assert!(
        !actions.contains(&Call::UmountLazy),
        "detaching would remove the fresh mount: {actions:?}"
    );
    a.tick(now + Duration::from_secs(1));
    assert_eq!(a.state(), State::Stacked);
    assert!(a.is_ready());
    assert_eq!(a.ops().nfs_stack()[0].0, dead);
    // A later heal does not try beneath again.
    a.ops().kill_all();
    a.ops().clear_calls();
    a.tick(now + Duration::from_secs(10));
    assert_eq!(
        a.ops()
            .actions()
            .iter()
            .filter(|c| mount_call(Placement::Beneath)(c))
            .count(),
        0
    );
}

#[test]
fn a_dns_outage_does_not_unready_a_working_mount() {
    let ops = FakeOps::pod(true);
    ops.add_nfs(&ours(), true);
    let mut a = agent(ops);
    let now = Instant::now();
    a.tick(now);
    a.ops().world.borrow_mut().resolve = Err("Temporary failure in name resolution".into());
    a.tick(now + Duration::from_secs(5));
    assert_eq!(a.state(), State::Healthy);
    assert!(a.is_ready());
}

#[test]
fn failed_mount_is_retried_with_backoff_and_reported() {
    let ops = FakeOps::pod(true);
    ops.world.borrow_mut().mount_error = Some("Permission denied".into());
    let mut a = agent(ops);
    let now = Instant::now();
    a.tick(now);
    assert!(a.reason().contains("Permission denied"));
    assert!(a.next_attempt().is_some_and(|at| at > now));
    a.ops().clear_calls();
    a.tick(now);
    assert!(
        a.ops()
            .actions()
            .iter()
            .all(|c| !matches!(c, Call::Mount { .. })),
        "held back by back-off"
    );
    assert!(a.metrics.encode().contains("Permission denied"));
}

#[test]
fn exit_leaves_the_mount_unless_asked_to_unmount() {
    let ops = FakeOps::pod(true);
    ops.add_nfs(&ours(), true);
    let mut a = agent(ops);
    a.tick(Instant::now());
    a.shutdown();
    assert_eq!(a.ops().actions(), vec![]);
    assert_eq!(a.ops().nfs_stack().len(), 1);

    let ops = FakeOps::pod(true);
    ops.add_nfs(&ours(), true);
    let mut a = agent(ops);
    a.cfg.unmount_on_exit = true;
    a.tick(Instant::now());
    a.shutdown();
    assert_eq!(a.ops().actions(), vec![Call::UmountLazy]);
    assert!(a.ops().nfs_stack().is_empty());
    assert!(!a.is_ready());
}
