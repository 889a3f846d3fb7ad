//! What `attach`, `doctor`, `bench` and `serve` all need to know about mounts: what
//! `/proc/PID/mountinfo` says is mounted where and whether it is FUSE ([`mountinfo`]), what an
//! NFS mount is made of (server address, export, options; [`options`]), and how to call into a
//! mount that may hang without hanging with it ([`watchdog`]). These only parse what they are
//! given and run the caller's calls.
//!
//! Two modules are the exception and touch the system: [`fuse`] finds the kernel's FUSE
//! connection behind a directory (statx, `/proc/self/mountinfo`) and raises its limits in sysfs
//! (the only one that changes anything); [`process`] finds where the FUSE mount at a directory
//! is now, in our mount namespace or another process's (reading `/proc`).

pub mod fuse;
pub mod mountinfo;
pub mod options;
pub mod process;
pub mod watchdog;
