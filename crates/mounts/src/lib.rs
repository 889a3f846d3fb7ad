//! What `attach`, `doctor`, `bench` and `serve` all need to know about mounts: what
//! `/proc/PID/mountinfo` says is mounted where and whether it is FUSE ([`mountinfo`]), what an
//! NFS mount is made of (server address, export, options; [`options`]), and how to call into a
//! mount that may hang without hanging with it ([`watchdog`]). These only parse what they are
//! given and run the caller's calls.
//!
//! [`fuse`] is the exception, and the one module that touches the system: it finds the kernel's
//! FUSE connection behind a directory (statx, `/proc/self/mountinfo`) and raises its limits in
//! sysfs.

pub mod fuse;
pub mod mountinfo;
pub mod options;
pub mod watchdog;
