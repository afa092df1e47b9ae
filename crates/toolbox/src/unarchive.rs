//! `unarchive`: hardened tar extraction into `--destdir`.
//!
//! Guarantees, whatever the archive holds:
//! - entry paths (and hard-link targets) that are absolute or contain `..` are rejected;
//! - extraction never follows a symlink: every directory is opened relative to its parent with
//!   `O_NOFOLLOW`, so a symlink in the way (pre-existing, or created earlier by the same archive)
//!   is refused instead of traversed, and final files are created with `O_EXCL|O_NOFOLLOW`;
//! - symlinks are created as they are (their targets are never resolved by the extractor);
//! - hard links must target a path inside the destination (resolved the same way);
//! - device nodes and FIFOs are skipped; setuid/setgid bits are dropped.
//!
//! A rejected entry stops extraction with an error naming it (entries before it stay). Without
//! `overwrite` an existing file, symlink or directory is left as is; with it, a file or symlink
//! is replaced (the old one is unlinked, never written through) and a non-directory in the place
//! of a directory is removed.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::UtimensatFlags;
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstatat, futimens, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, linkat, symlinkat, unlinkat};
use tar::{Archive, EntryType};

use crate::error::IoContext;
use crate::{Error, Result};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Extraction options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Replace existing files and symlinks instead of leaving them as they are.
    pub overwrite: bool,
}

/// What was done, for the log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub extracted: usize,
    /// Entries left alone because the destination existed (no `--overwrite`).
    pub kept_existing: Vec<String>,
    /// Device nodes, FIFOs and other entries that are never extracted.
    pub skipped: Vec<String>,
}

/// Splits an archive path into its components, rejecting absolute paths and `..`.
/// `.` and empty components are dropped; the result may be empty (the root itself).
pub fn safe_components(raw: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    if raw.contains(&0) {
        return Err("path contains a NUL byte".into());
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains a '..' component".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Symlink,
    File,
    Other,
}

fn kind_of(st: &FileStat) -> Kind {
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if fmt == SFlag::S_IFDIR {
        Kind::Dir
    } else if fmt == SFlag::S_IFLNK {
        Kind::Symlink
    } else if fmt == SFlag::S_IFREG {
        Kind::File
    } else {
        Kind::Other
    }
}

fn name_of(c: &[u8]) -> &OsStr {
    OsStr::from_bytes(c)
}

fn show(comps: &[&[u8]]) -> String {
    let parts: Vec<String> = comps
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    parts.join("/")
}

/// A directory to finish once all entries are written (mode and mtime).
struct PendingDir {
    comps: Vec<Vec<u8>>,
    mode: u32,
    mtime: Option<i64>,
}

/// The extractor: a directory fd for the destination and the options.
pub struct Extractor {
    root: OwnedFd,
    opts: Options,
    pending_dirs: Vec<PendingDir>,
    summary: Summary,
}

impl Extractor {
    /// Opens (creating it with parents if needed) the destination directory. The destination
    /// itself may be reached through symlinks: it is the caller's choice, not the archive's.
    pub fn new(dest: &Path, opts: Options) -> Result<Self> {
        std::fs::create_dir_all(dest).ctx(|| format!("cannot create {}", dest.display()))?;
        let root = open(
            dest,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("cannot open {}", dest.display()))?;
        Ok(Self {
            root,
            opts,
            pending_dirs: Vec::new(),
            summary: Summary::default(),
        })
    }

    fn reject(entry: &str, reason: impl Into<String>) -> Error {
        Error::Rejected {
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn lstat_at<Fd: AsFd>(dir: Fd, name: &OsStr) -> std::result::Result<Option<Kind>, Errno> {
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(kind_of(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens `comps` as nested directories below the root without following any symlink,
    /// creating missing ones when `create`.
    fn open_dirs(&self, entry: &str, comps: &[&[u8]], create: bool) -> Result<OwnedFd> {
        let mut cur = self
            .root
            .try_clone()
            .ctx(|| "cannot duplicate the destination directory handle")?;
        for (i, comp) in comps.iter().enumerate() {
            let name = name_of(comp);
            let shown = || show(&comps[..=i]);
            let mut attempts = 0;
            cur = loop {
                attempts += 1;
                match openat(&cur, name, DIR_FLAGS, Mode::empty()) {
                    Ok(fd) => break fd,
                    Err(Errno::ENOENT) if create && attempts < 3 => {
                        match mkdirat(&cur, name, Mode::from_bits_truncate(0o755)) {
                            Ok(()) | Err(Errno::EEXIST) => continue,
                            Err(e) => {
                                return Err(Error::io(format!("cannot create {}", shown()), e));
                            }
                        }
                    }
                    Err(Errno::ENOENT) => {
                        return Err(Self::reject(entry, format!("{} does not exist", shown())));
                    }
                    Err(e @ (Errno::ENOTDIR | Errno::ELOOP)) => {
                        return Err(match Self::lstat_at(&cur, name) {
                            Ok(Some(Kind::Symlink)) => Self::reject(
                                entry,
                                format!("refusing to traverse symlink {}", shown()),
                            ),
                            Ok(_) => Self::reject(
                                entry,
                                format!("{} exists and is not a directory", shown()),
                            ),
                            Err(_) => Error::io(format!("cannot open {}", shown()), e),
                        });
                    }
                    Err(e) => return Err(Error::io(format!("cannot open {}", shown()), e)),
                }
            };
        }
        Ok(cur)
    }

    /// Removes `name` in `dir` (a whole directory tree if it is one) without following symlinks.
    fn remove_at(dir: &OwnedFd, name: &OsStr, shown: &str) -> Result<()> {
        match Self::lstat_at(dir, name).ctx(|| format!("cannot stat {shown}"))? {
            None => Ok(()),
            Some(Kind::Dir) => {
                let fd = openat(dir, name, DIR_FLAGS, Mode::empty())
                    .ctx(|| format!("cannot open {shown}"))?;
                let mut d = nix::dir::Dir::from_fd(fd).ctx(|| format!("cannot read {shown}"))?;
                let mut children = Vec::new();
                for ent in d.iter() {
                    let ent = ent.ctx(|| format!("cannot read {shown}"))?;
                    let n = ent.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        children.push(n.to_vec());
                    }
                }
                let child_dir = openat(dir, name, DIR_FLAGS, Mode::empty())
                    .ctx(|| format!("cannot open {shown}"))?;
                for c in children {
                    let child_shown = format!("{shown}/{}", String::from_utf8_lossy(&c));
                    Self::remove_at(&child_dir, name_of(&c), &child_shown)?;
                }
                unlinkat(dir, name, UnlinkatFlags::RemoveDir)
                    .ctx(|| format!("cannot remove {shown}"))
            }
            Some(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
                .ctx(|| format!("cannot remove {shown}")),
        }
    }

    /// Decides what to do with an existing destination for a non-directory entry: `Ok(true)`
    /// when the path is free (possibly after removing the old one), `Ok(false)` to keep it.
    fn make_room(&mut self, dir: &OwnedFd, name: &OsStr, entry: &str) -> Result<bool> {
        match Self::lstat_at(dir, name).ctx(|| format!("cannot stat {entry}"))? {
            None => Ok(true),
            Some(_) if !self.opts.overwrite => {
                self.summary.kept_existing.push(entry.to_string());
                Ok(false)
            }
            Some(_) => {
                Self::remove_at(dir, name, entry)?;
                Ok(true)
            }
        }
    }

    /// Extracts one entry. `data` is the entry's content (read only for regular files).
    fn entry(
        &mut self,
        raw_path: &[u8],
        entry_type: EntryType,
        mode: u32,
        mtime: Option<i64>,
        link: Option<&[u8]>,
        data: &mut dyn Read,
    ) -> Result<()> {
        let entry = String::from_utf8_lossy(raw_path).into_owned();
        let comps = safe_components(raw_path).map_err(|r| Self::reject(&entry, r))?;
        let kind = match entry_type {
            EntryType::Directory => Kind::Dir,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Other,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.summary.skipped.push(entry);
                return Ok(());
            }
            EntryType::XGlobalHeader | EntryType::XHeader => return Ok(()),
            other => {
                return Err(Self::reject(
                    &entry,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ));
            }
        };
        let Some((last, parents)) = comps.split_last() else {
            // the archive root ("./"): the destination itself, left as is
            if kind == Kind::Dir {
                return Ok(());
            }
            return Err(Self::reject(&entry, "entry has no name"));
        };
        let dir = self.open_dirs(&entry, parents, true)?;
        let name = name_of(last);
        let comps_owned = || comps.iter().map(|c| c.to_vec()).collect::<Vec<_>>();

        match (kind, entry_type) {
            (Kind::Dir, _) => {
                let mut created = false;
                match Self::lstat_at(&dir, name).ctx(|| format!("cannot stat {entry}"))? {
                    Some(Kind::Dir) => {}
                    None => created = true,
                    Some(Kind::Symlink) if !self.opts.overwrite => {
                        return Err(Self::reject(
                            &entry,
                            "a symlink exists at this path (not traversed, not replaced)",
                        ));
                    }
                    Some(_) if !self.opts.overwrite => {
                        return Err(Self::reject(
                            &entry,
                            "exists and is not a directory (not replaced without --overwrite)",
                        ));
                    }
                    Some(_) => {
                        Self::remove_at(&dir, name, &entry)?;
                        created = true;
                    }
                }
                if created {
                    match mkdirat(&dir, name, Mode::from_bits_truncate(0o700)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(Error::io(format!("cannot create {entry}"), e)),
                    }
                }
                // make sure it really is a directory now (no symlink raced in)
                drop(self.open_dirs(&entry, &comps, false)?);
                if created || self.opts.overwrite {
                    self.pending_dirs.push(PendingDir {
                        comps: comps_owned(),
                        mode: mode & 0o3777,
                        mtime,
                    });
                }
            }
            (Kind::File, _) => {
                if !self.make_room(&dir, name, &entry)? {
                    return Ok(());
                }
                let fd = openat(
                    &dir,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .ctx(|| format!("cannot create {entry}"))?;
                let mut file = File::from(fd);
                io::copy(data, &mut file).ctx(|| format!("cannot write {entry}"))?;
                fchmod(&file, Mode::from_bits_truncate(mode & 0o777))
                    .ctx(|| format!("cannot set the mode of {entry}"))?;
                if let Some(t) = mtime {
                    let ts = TimeSpec::new(t, 0);
                    futimens(&file, &ts, &ts).ctx(|| format!("cannot set the mtime of {entry}"))?;
                }
            }
            (Kind::Symlink, _) => {
                let Some(target) = link.filter(|t| !t.is_empty()) else {
                    return Err(Self::reject(&entry, "symlink without a target"));
                };
                if !self.make_room(&dir, name, &entry)? {
                    return Ok(());
                }
                symlinkat(name_of(target), &dir, name)
                    .ctx(|| format!("cannot create symlink {entry}"))?;
                if let Some(t) = mtime {
                    let ts = TimeSpec::new(t, 0);
                    // best effort: some file systems do not support symlink times
                    let _ = utimensat(&dir, name, &ts, &ts, UtimensatFlags::NoFollowSymlink);
                }
            }
            _ => {
                // hard link: the target must resolve inside the destination without symlinks
                let Some(target) = link else {
                    return Err(Self::reject(&entry, "hard link without a target"));
                };
                let tcomps = safe_components(target)
                    .map_err(|r| Self::reject(&entry, format!("hard link target: {r}")))?;
                let Some((tlast, tparents)) = tcomps.split_last() else {
                    return Err(Self::reject(&entry, "hard link target has no name"));
                };
                let tdir = self
                    .open_dirs(&entry, tparents, false)
                    .map_err(|e| match e {
                        Error::Rejected { entry, reason } => Error::Rejected {
                            entry,
                            reason: format!("hard link target: {reason}"),
                        },
                        other => other,
                    })?;
                let tname = name_of(tlast);
                match Self::lstat_at(&tdir, tname).ctx(|| format!("cannot stat {entry}"))? {
                    None => {
                        return Err(Self::reject(
                            &entry,
                            format!("hard link target {} does not exist", show(&tcomps)),
                        ));
                    }
                    Some(Kind::Dir) => {
                        return Err(Self::reject(&entry, "hard link target is a directory"));
                    }
                    Some(_) => {}
                }
                if tcomps == comps {
                    return Ok(());
                }
                if !self.make_room(&dir, name, &entry)? {
                    return Ok(());
                }
                // no AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself
                linkat(&tdir, tname, &dir, name, AtFlags::empty())
                    .ctx(|| format!("cannot create hard link {entry}"))?;
            }
        }
        self.summary.extracted += 1;
        Ok(())
    }

    /// Applies directory modes and mtimes (deepest first), after all content is written.
    fn finish_dirs(&mut self) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending_dirs);
        pending.sort_by_key(|d| std::cmp::Reverse(d.comps.len()));
        for d in pending {
            let comps: Vec<&[u8]> = d.comps.iter().map(Vec::as_slice).collect();
            let entry = show(&comps);
            let fd = self.open_dirs(&entry, &comps, false)?;
            fchmod(&fd, Mode::from_bits_truncate(d.mode))
                .ctx(|| format!("cannot set the mode of {entry}"))?;
            if let Some(t) = d.mtime {
                let ts = TimeSpec::new(t, 0);
                futimens(&fd, &ts, &ts).ctx(|| format!("cannot set the mtime of {entry}"))?;
            }
        }
        Ok(())
    }

    /// Extracts every entry of `archive`.
    pub fn extract<R: Read>(mut self, reader: R) -> Result<Summary> {
        let mut archive = Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| Error::InvalidInput(format!("cannot read the archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Error::InvalidInput(format!("cannot read the archive: {e}")))?;
            let path = entry.path_bytes().into_owned();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            let header = entry.header();
            let entry_type = header.entry_type();
            let mode = header.mode().unwrap_or(0o644);
            let mtime = header.mtime().ok().and_then(|t| i64::try_from(t).ok());
            self.entry(&path, entry_type, mode, mtime, link.as_deref(), &mut entry)?;
        }
        self.finish_dirs()?;
        Ok(self.summary)
    }
}

/// Extracts the tar read from `reader` into `dest`.
pub fn unarchive<R: Read>(reader: R, dest: &Path, opts: Options) -> Result<Summary> {
    Extractor::new(dest, opts)?.extract(reader)
}

/// Runs `unarchive` and logs skipped and kept entries to `log`.
pub fn run<R: Read>(reader: R, dest: &Path, opts: Options, log: &mut dyn Write) -> Result<()> {
    let summary = unarchive(reader, dest, opts)?;
    // best effort logging: never fails the command
    for s in &summary.skipped {
        let _ = writeln!(log, "skipping special file {s}");
    }
    if !summary.kept_existing.is_empty() {
        let _ = writeln!(
            log,
            "kept {} existing path(s) (no --overwrite)",
            summary.kept_existing.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_components_rules() {
        assert_eq!(
            safe_components(b"a/./b//c/").expect("ok"),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(safe_components(b"./").expect("ok").is_empty());
        assert!(safe_components(b"/etc/passwd").is_err());
        assert!(safe_components(b"../x").is_err());
        assert!(safe_components(b"a/../../x").is_err());
        assert!(safe_components(b"a/..").is_err());
        assert!(safe_components(b"a..b/c").is_ok());
    }
}
