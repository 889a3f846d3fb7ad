//! A wide tree for memory benchmarks (scripts/bench-rss.sh): `wide_tree ROOT DIRS FILES` makes
//! DIRS directories `dir-000`, `dir-001`, ... below ROOT, each holding FILES empty files, so
//! the tree has DIRS * FILES + DIRS entries. A directory that already holds FILES entries is
//! left as it is, so running it again is cheap.

use mountshare_testkit::tree::TreeBuilder;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, dirs, files] = args.as_slice() else {
        eprintln!("usage: wide_tree ROOT DIRS FILES");
        return ExitCode::from(2);
    };
    let (Ok(dirs), Ok(files)) = (dirs.parse::<usize>(), files.parse::<usize>()) else {
        eprintln!("usage: wide_tree ROOT DIRS FILES (DIRS and FILES are numbers)");
        return ExitCode::from(2);
    };
    let tree = match TreeBuilder::new(root) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("wide_tree: {e}");
            return ExitCode::FAILURE;
        }
    };
    for d in 0..dirs {
        let name = format!("dir-{d:03}");
        let full = std::fs::read_dir(tree.path(&name)).is_ok_and(|r| r.count() == files);
        if full {
            continue;
        }
        if let Err(e) = tree.many_empty(&name, files) {
            eprintln!("wide_tree: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("{}: {dirs} directories of {files} files", root);
    ExitCode::SUCCESS
}
