//! Errors become wire statuses in one place, src/error.rs. This reads the crate's own sources and
//! fails when any other module (a) looks at an error's kind (an errno, an `FsError` variant, an
//! `io::ErrorKind`) in a file that also names an NFS or MOUNT status, or (b) inspects a status it
//! was given (a `match` arm, `matches!`, `==`/`!=` on one) to turn it into another.
use std::path::{Path, PathBuf};

/// Names that reveal an error's kind.
const ERROR_KINDS: &[&str] = &["Errno", "ErrorKind", "raw_os_error", "errno", "FsError::"];
/// The wire status types.
const STATUSES: &[&str] = &["NfsStat3", "MountStat3"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments, string and character literals blanked out (line breaks kept), so
/// that only code is scanned.
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
                out.push(' ');
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&b, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(b[i..j.min(b.len())].iter().map(|&c| blank(c)));
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{..}'.
            let mut j = i + 2;
            while j < b.len() && b[j] != '\'' {
                j += 1;
            }
            out.extend(std::iter::repeat_n(' ', j + 1 - i));
            i = j + 1;
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            // Everything else, lifetimes included, is code.
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// Whether `word` occurs in `line` as a name (not inside a longer identifier).
fn positions(line: &str, word: &str) -> Vec<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word)
        .filter(|(at, _)| {
            let before = line[..*at].chars().next_back();
            let after = line[at + word.len()..].chars().next();
            !before.is_some_and(is_ident) && (word.ends_with("::") || !after.is_some_and(is_ident))
        })
        .map(|(at, _)| at)
        .collect()
}

/// Everything in `code` that maps an error or remaps a status outside error.rs.
fn violations(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let names_status = STATUSES.iter().any(|s| !positions(code, s).is_empty());
    for (n, line) in code.lines().enumerate() {
        let n = n + 1;
        if names_status {
            for kind in ERROR_KINDS {
                if !positions(line, kind).is_empty() {
                    found.push(format!(
                        "line {n}: looks at an error's kind (`{kind}`) in a file that builds statuses"
                    ));
                }
            }
        }
        for status in STATUSES {
            for at in positions(line, status) {
                let after = &line[at..];
                let before = &line[..at];
                if after.contains("=>") {
                    found.push(format!(
                        "line {n}: a match arm on a status (`{status}` before `=>`)"
                    ));
                }
                if before.contains("matches!") {
                    found.push(format!("line {n}: `matches!` on a status"));
                }
                let compared = |s: &str| s.contains("==") || s.contains("!=");
                if compared(before.trim_end().rsplit(' ').next().unwrap_or(""))
                    || compared(after.split(';').next().unwrap_or(""))
                {
                    found.push(format!("line {n}: a status compared with `==`/`!=`"));
                }
            }
        }
    }
    found
}

#[test]
fn only_error_rs_turns_errors_into_statuses() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("nfs.rs"))
            && files.iter().any(|f| f.ends_with("mount.rs")),
        "the handlers are where they were: {files:?}"
    );
    let mut report = Vec::new();
    for file in &files {
        if file.ends_with("error.rs") {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for v in violations(&code) {
            report.push(format!("{}: {v}", file.display()));
        }
    }
    assert!(
        report.is_empty(),
        "errors must become statuses in src/error.rs only (give the case a named function \
         there):\n{}",
        report.join("\n")
    );
}

/// The scan itself catches what it is meant to, and is not fooled by comments or strings.
#[test]
fn the_scan_catches_mappings_and_ignores_comments() {
    let mapped = "use mountshare_proto::nfs3::NfsStat3;\n\
                  fn f(e: &FsError) -> NfsStat3 {\n\
                      if e.errno() == Some(5) { return NfsStat3::Io }\n\
                      NfsStat3::NoEnt\n\
                  }\n";
    assert!(!violations(&code_only(mapped)).is_empty(), "errno check");
    let variant = "fn f(e: &FsError) -> MountStat3 {\n\
                   match e { FsError::NameTooLong => MountStat3::NameTooLong, _ => MountStat3::NoEnt }\n\
                   }\n";
    assert!(!violations(&code_only(variant)).is_empty(), "variant match");
    let remap =
        "let s = match nfsstat(&e) {\n    NfsStat3::NoEnt => NfsStat3::Stale,\n    s => s,\n};\n";
    assert!(!violations(&code_only(remap)).is_empty(), "remapped status");
    let compared = "if nfsstat(&e) == NfsStat3::Io { return; }\n";
    assert!(
        !violations(&code_only(compared)).is_empty(),
        "compared status"
    );
    let fine = "// Errno::IO => NfsStat3::Io in a comment\n\
                let s = \"Errno::NOENT => NfsStat3::NoEnt\";\n\
                let c = '\"';\n\
                fn g<'a>(x: &'a str) -> NfsStat3 { reply(NfsStat3::RoFs) }\n\
                Ok(_) => MountRes3::Fail(MountStat3::NotDir),\n";
    assert_eq!(violations(&code_only(fine)), Vec::<String>::new());
}
