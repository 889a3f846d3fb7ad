//! `mountshare install DIR`: copy this very executable into DIR, atomically, for an init
//! container that has no shell and no `cp` (the image holds nothing but the binary).
//!
//! The copy is written to a temporary file in DIR, flushed to disk, made mode 0755 and renamed
//! over `DIR/NAME`, so a reader (the container that runs it next) sees either the old file or
//! the whole new one, never a half-written binary; renaming also works while an older copy is
//! being executed, where writing into it in place would fail with "Text file busy".
use anyhow::{bail, Context};
use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Directory to install into (it must exist: an emptyDir shared with the next container).
    pub dir: PathBuf,
    /// File name of the copy in DIR.
    #[arg(long, default_value = "mountshare", value_name = "NAME")]
    pub name: String,
}

pub fn run(args: InstallArgs) -> anyhow::Result<ExitCode> {
    if args.name.is_empty() || args.name.contains('/') || args.name == "." || args.name == ".." {
        bail!("--name {:?}: must be a plain file name", args.name);
    }
    let dest = install(Path::new("/proc/self/exe"), &args.dir, &args.name)?;
    println!(
        "installed mountshare {} at {}",
        env!("CARGO_PKG_VERSION"),
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Copy `source` to `dir/name` through a temporary file in `dir` and a rename.
fn install(source: &Path, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let dest = dir.join(name);
    let tmp = dir.join(format!(".{name}.install-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        let mut from = File::open(source).with_context(|| format!("open {}", source.display()))?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        std::io::copy(&mut from, &mut to)
            .with_context(|| format!("copy {} to {}", source.display(), tmp.display()))?;
        to.flush()?;
        // The mode is set explicitly: the umask must not take the execute bits away.
        to.set_permissions(Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", tmp.display()))?;
        to.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("rename {} to {}", tmp.display(), dest.display()))?;
        // The new name is durable once the directory is.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_atomically_with_mode_0755_over_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"new binary").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("mountshare"), b"old").unwrap();
        std::fs::set_permissions(out.join("mountshare"), Permissions::from_mode(0o600)).unwrap();

        let dest = install(&src, &out, "mountshare").unwrap();
        assert_eq!(dest, out.join("mountshare"));
        assert_eq!(std::fs::read(&dest).unwrap(), b"new binary");
        assert_eq!(std::fs::metadata(&dest).unwrap().mode() & 0o7777, 0o755);
        let names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["mountshare"], "no temporary file is left behind");
    }

    #[test]
    fn a_missing_directory_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"x").unwrap();
        let err = install(&src, &dir.path().join("nope"), "mountshare").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err:#}");
        let err = install(&dir.path().join("absent"), dir.path(), "m").unwrap_err();
        assert!(format!("{err:#}").contains("open"), "{err:#}");
        assert!(!dir.path().join("m").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
