//! `mountshare serve`: run the NFSv3 server over a directory.
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Directory to export (clients mount it as HOST:/).
    pub dir: std::path::PathBuf,
}

pub fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
