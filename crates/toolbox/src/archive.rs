//! `archive`: packs files selected by doublestar globs into a tar stream.
//!
//! Request (JSON on stdin): `{"archive_infos": [{"source_dir", "dest_dir", "paths"}],
//! "out_file": ""}`. For each info, `~` in `source_dir` is expanded, the tree is walked without
//! following symlinks, and every path (relative to `source_dir`) matching one of `paths` is
//! stored at `dest_dir/<relative path>`; a matched directory brings its whole content. Symlinks
//! are stored as symlinks; sockets, FIFOs and devices are skipped. Two entries with the same
//! destination path are an error naming it, detected before anything is written. The tar goes
//! to `out_file` when set, else to stdout.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tar::{Builder, EntryType, Header, HeaderMode};

use crate::error::IoContext;
use crate::glob::Pattern;
use crate::{Error, Result};

/// The request read on stdin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    #[serde(default)]
    pub archive_infos: Vec<ArchiveInfo>,
    /// Output file; empty means stdout.
    #[serde(default)]
    pub out_file: String,
}

/// One source tree and what to take from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveInfo {
    pub source_dir: String,
    /// Prefix of the stored paths inside the archive (leading `/` ignored).
    #[serde(default)]
    pub dest_dir: String,
    /// Doublestar globs relative to `source_dir`.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
}

/// One file that will be written into the archive.
#[derive(Debug, Clone)]
pub struct PlannedEntry {
    /// Where it is read from.
    pub source: PathBuf,
    /// Its path inside the archive: relative, `/`-separated, normalised.
    pub dest: OsString,
    pub kind: EntryKind,
    pub metadata: Metadata,
}

/// Splits a `dest_dir` into normalised components; `..` may not climb above the archive root.
fn dest_prefix(dest_dir: &str) -> Result<Vec<String>> {
    let mut comps: Vec<String> = Vec::new();
    for c in dest_dir.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if comps.pop().is_none() {
                    return Err(Error::InvalidInput(format!(
                        "dest_dir {dest_dir:?} escapes the archive root"
                    )));
                }
            }
            other => comps.push(other.to_string()),
        }
    }
    Ok(comps)
}

fn join_dest(prefix: &[String], rel: &OsStr) -> OsString {
    let mut out = OsString::new();
    for p in prefix {
        out.push(p);
        out.push("/");
    }
    out.push(rel);
    out
}

struct Walk<'a> {
    patterns: &'a [Pattern],
    prefix: &'a [String],
    seen: &'a mut HashSet<OsString>,
    out: &'a mut Vec<PlannedEntry>,
    skipped: &'a mut Vec<PathBuf>,
}

impl Walk<'_> {
    /// Visits the children of `dir` (whose path relative to the source dir is `rel_dir`).
    fn visit(&mut self, dir: &Path, rel_dir: &OsStr, included: bool) -> Result<()> {
        let mut children: Vec<OsString> = fs::read_dir(dir)
            .ctx(|| format!("cannot read directory {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .ctx(|| format!("cannot read directory {}", dir.display()))?;
        children.sort();
        for name in children {
            let path = dir.join(&name);
            let mut rel = rel_dir.to_os_string();
            if !rel.is_empty() {
                rel.push("/");
            }
            rel.push(&name);
            let rel_str = rel.to_string_lossy();
            let meta =
                fs::symlink_metadata(&path).ctx(|| format!("cannot stat {}", path.display()))?;
            let matched = included || self.patterns.iter().any(|p| p.matches(&rel_str));
            let ft = meta.file_type();
            if matched {
                let kind = if ft.is_dir() {
                    Some(EntryKind::Dir)
                } else if ft.is_file() {
                    Some(EntryKind::File)
                } else if ft.is_symlink() {
                    Some(EntryKind::Symlink)
                } else {
                    None
                };
                match kind {
                    None => self.skipped.push(path.clone()),
                    Some(kind) => {
                        let dest = join_dest(self.prefix, &rel);
                        if !self.seen.insert(dest.clone()) {
                            return Err(Error::InvalidInput(format!(
                                "archive destination path {:?} already exists (source path {})",
                                dest.to_string_lossy(),
                                path.display()
                            )));
                        }
                        self.out.push(PlannedEntry {
                            source: path.clone(),
                            dest,
                            kind,
                            metadata: meta.clone(),
                        });
                    }
                }
            }
            if ft.is_dir() && (matched || self.patterns.iter().any(|p| p.may_match_below(&rel_str)))
            {
                self.visit(&path, &rel, matched)?;
            }
        }
        Ok(())
    }
}

/// Selects the entries to archive, in a stable order, failing on duplicate destinations.
/// `expand` turns a `source_dir` into a path (the CLI expands `~`). Skipped special files are
/// returned separately so the caller can mention them.
pub fn plan(
    infos: &[ArchiveInfo],
    expand: &dyn Fn(&str) -> Result<PathBuf>,
) -> Result<(Vec<PlannedEntry>, Vec<PathBuf>)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for info in infos {
        let source = expand(&info.source_dir)?;
        let meta = fs::metadata(&source).ctx(|| format!("source_dir {}", source.display()))?;
        if !meta.is_dir() {
            return Err(Error::InvalidInput(format!(
                "source_dir {} is not a directory",
                source.display()
            )));
        }
        let patterns = info
            .paths
            .iter()
            .map(|p| Pattern::new(p))
            .collect::<Result<Vec<_>>>()?;
        if patterns.is_empty() {
            continue;
        }
        let prefix = dest_prefix(&info.dest_dir)?;
        Walk {
            patterns: &patterns,
            prefix: &prefix,
            seen: &mut seen,
            out: &mut out,
            skipped: &mut skipped,
        }
        .visit(&source, OsStr::new(""), false)?;
    }
    Ok((out, skipped))
}

/// Writes the planned entries as a tar stream (GNU format, long names supported).
pub fn write_tar<W: Write>(entries: &[PlannedEntry], writer: W) -> Result<W> {
    let mut builder = Builder::new(writer);
    for e in entries {
        let name = Path::new(OsStr::from_bytes(e.dest.as_bytes()));
        let shown = || e.dest.to_string_lossy().into_owned();
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&e.metadata, HeaderMode::Complete);
        match e.kind {
            EntryKind::Dir => {
                header.set_entry_type(EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, name, io::empty())
                    .ctx(|| format!("cannot archive {}", shown()))?;
            }
            EntryKind::Symlink => {
                let target = fs::read_link(&e.source)
                    .ctx(|| format!("cannot read symlink {}", e.source.display()))?;
                header.set_entry_type(EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, name, &target)
                    .ctx(|| format!("cannot archive {}", shown()))?;
            }
            EntryKind::File => {
                let file =
                    File::open(&e.source).ctx(|| format!("cannot open {}", e.source.display()))?;
                let size = e.metadata.len();
                header.set_entry_type(EntryType::Regular);
                header.set_size(size);
                // a file that changes size while archived is cut or zero-padded to the size in
                // its header, so the archive stays well formed
                let data = file.take(size).chain(io::repeat(0)).take(size);
                builder
                    .append_data(&mut header, name, data)
                    .ctx(|| format!("cannot archive {}", e.source.display()))?;
            }
        }
    }
    builder.into_inner().ctx(|| "cannot finish the archive")
}

/// Runs `archive` for a parsed request; the tar goes to `out_file` or `stdout`.
pub fn run(request: &ArchiveRequest, stdout: &mut dyn Write, log: &mut dyn Write) -> Result<()> {
    let expand = |dir: &str| crate::paths::expand_tilde(Path::new(dir));
    let (entries, skipped) = plan(&request.archive_infos, &expand)?;
    for s in skipped {
        // best effort: a log line that cannot be written must not fail the archive
        let _ = writeln!(log, "skipping special file {}", s.display());
    }
    if request.out_file.is_empty() {
        let mut w = write_tar(&entries, io::BufWriter::new(stdout))?;
        w.flush().ctx(|| "cannot write the archive to stdout")?;
    } else {
        let file = File::create(&request.out_file)
            .ctx(|| format!("cannot create {}", request.out_file))?;
        let w = write_tar(&entries, io::BufWriter::new(file))?;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(format!("cannot write {}", request.out_file), e.into_error()))?;
        file.sync_all()
            .ctx(|| format!("cannot write {}", request.out_file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(src: &Path, dest: &str, paths: &[&str]) -> ArchiveInfo {
        ArchiveInfo {
            source_dir: src.to_string_lossy().into_owned(),
            dest_dir: dest.to_string(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn no_expand(d: &str) -> Result<PathBuf> {
        Ok(PathBuf::from(d))
    }

    fn dests(entries: &[PlannedEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.dest.to_string_lossy().into_owned())
            .collect()
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        fs::create_dir_all(p.join("src/sub")).expect("mkdir");
        fs::write(p.join("src/main.rs"), "fn main() {}").expect("write");
        fs::write(p.join("src/sub/lib.rs"), "").expect("write");
        fs::write(p.join("README.md"), "hi").expect("write");
        std::os::unix::fs::symlink("src/main.rs", p.join("link.rs")).expect("symlink");
        dir
    }

    #[test]
    fn selects_matches_in_stable_order_with_dest_prefix() {
        let t = tree();
        let (entries, _) =
            plan(&[info(t.path(), "/out/", &["**/*.rs"])], &no_expand).expect("plan");
        assert_eq!(
            dests(&entries),
            vec!["out/link.rs", "out/src/main.rs", "out/src/sub/lib.rs"]
        );
        assert_eq!(entries[0].kind, EntryKind::Symlink);
    }

    #[test]
    fn matched_directory_brings_its_content() {
        let t = tree();
        let (entries, _) = plan(&[info(t.path(), "", &["src"])], &no_expand).expect("plan");
        assert_eq!(
            dests(&entries),
            vec!["src", "src/main.rs", "src/sub", "src/sub/lib.rs"]
        );
    }

    #[test]
    fn duplicate_destination_is_an_error_naming_it() {
        let t = tree();
        let err = plan(
            &[
                info(t.path(), "x", &["README.md"]),
                info(&t.path().join("src"), "", &["x/README.md", "**"]),
                info(t.path(), "", &["x"]),
            ],
            &no_expand,
        );
        // second info stores src's content at the root: no clash yet
        assert!(err.is_ok(), "{err:?}");
        fs::create_dir(t.path().join("x")).expect("mkdir");
        fs::write(t.path().join("x/README.md"), "dup").expect("write");
        let err = plan(
            &[
                info(t.path(), "x", &["README.md"]),
                info(t.path(), "", &["x/README.md"]),
            ],
            &no_expand,
        )
        .expect_err("duplicate")
        .to_string();
        assert!(err.contains("\"x/README.md\" already exists"), "{err}");
    }

    #[test]
    fn sockets_are_skipped() {
        let t = tree();
        let _sock =
            std::os::unix::net::UnixListener::bind(t.path().join("agent.sock")).expect("bind");
        let (entries, skipped) = plan(&[info(t.path(), "", &["**"])], &no_expand).expect("plan");
        assert!(!dests(&entries).contains(&"agent.sock".to_string()));
        assert_eq!(skipped, vec![t.path().join("agent.sock")]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let t = tree();
        let e = plan(
            &[info(&t.path().join("README.md"), "", &["**"])],
            &no_expand,
        )
        .expect_err("not a dir")
        .to_string();
        assert!(e.contains("is not a directory"), "{e}");
        let e = plan(&[info(t.path(), "../..", &["**"])], &no_expand)
            .expect_err("escape")
            .to_string();
        assert!(e.contains("escapes the archive root"), "{e}");
        let e = plan(&[info(t.path(), "", &["[bad"])], &no_expand)
            .expect_err("glob")
            .to_string();
        assert!(e.contains("\"[bad\""), "{e}");
        assert!(plan(&[info(&t.path().join("missing"), "", &["**"])], &no_expand).is_err());
    }

    #[test]
    fn request_json_shape() {
        let r: ArchiveRequest = serde_json::from_str(
            r#"{"archive_infos":[{"source_dir":"~/p","dest_dir":"d","paths":["**"]}],"out_file":""}"#,
        )
        .expect("parse");
        assert_eq!(r.archive_infos[0].source_dir, "~/p");
        assert!(serde_json::from_str::<ArchiveRequest>(r#"{"archiveInfos":[]}"#).is_err());
    }
}
