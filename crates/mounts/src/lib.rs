//! What `attach`, `doctor`, `bench` and `serve` all need to know about mounts: what
//! `/proc/PID/mountinfo` says is mounted where ([`mountinfo`]), what an NFS mount is made of
//! (server address, export, options; [`options`]), and how to call into a mount that may hang
//! without hanging with it ([`watchdog`]).

pub mod mountinfo;
pub mod options;
pub mod watchdog;
