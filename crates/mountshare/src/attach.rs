//! `mountshare attach`: the node agent that keeps an export mounted at a host path.
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct AttachArgs {}

pub fn run(_args: AttachArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
