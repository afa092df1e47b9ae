//! The posix backend: one file per object under `<base>/data`, written through `<base>/tmp`.
//!
//! Atomicity comes from rename(2): a write fills a fresh temp file in `tmp` (same filesystem)
//! and renames it over the destination, so a reader (which keeps its open file) and a crash
//! both only ever see a complete file. Temp files never live under `data`, so a crash leftover
//! is invisible to reads and listings.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::error::source_error;
use crate::path::{normalize_prefix, normalize_start_after};
use crate::{Error, ObjectInfo, ObjectReader, ObjectStorage, Result, WriteSource, normalize_path};

/// Bytes moved per read/write while copying the source into the temp file.
const COPY_BUF: usize = 1024 * 1024;
/// Files stat'ed per blocking task while listing: enough to amortize the hop to the blocking
/// pool, few enough that a consumer taking one item does not pay for a huge directory.
const STAT_BATCH: usize = 128;
/// Temp files untouched for this long are crash leftovers; `new` removes them. A live write
/// touches its temp file on every chunk.
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);
/// How often a write retries when a concurrent delete removes the freshly created parent
/// directory between mkdir and rename.
const RENAME_ATTEMPTS: usize = 8;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Objects as files in a local directory tree (the default backend).
#[derive(Debug, Clone)]
pub struct Posix {
    data: PathBuf,
    tmp: PathBuf,
}

impl Posix {
    /// Opens (creating if needed) the store rooted at `base`. Blocking: meant for start-up.
    /// Removes temp files a crash left behind more than an hour ago.
    pub fn new(base: impl Into<PathBuf>) -> Result<Self> {
        let base = base.into();
        let data = base.join("data");
        let tmp = base.join("tmp");
        for dir in [&data, &tmp] {
            std::fs::create_dir_all(dir)
                .map_err(|e| io_unavailable(format!("creating {}", dir.display()), e))?;
        }
        clean_stale_tmp(&tmp);
        Ok(Posix { data, tmp })
    }

    /// The directory holding the objects (`<base>/data`).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory holding in-flight writes (`<base>/tmp`).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    async fn create_tmp(&self) -> Result<(TmpFile, File)> {
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let name = format!(
                "{}-{}-{}",
                std::process::id(),
                nanos,
                TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = self.tmp.join(name);
            // 0644 up front (minus umask): a temp file with 0600 would keep those bits after
            // the rename.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
                .await
            {
                Ok(file) => return Ok((TmpFile { path: Some(path) }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io_unavailable(
                        format!("creating a temp file in {}", self.tmp.display()),
                        e,
                    ));
                }
            }
        }
    }

    /// Moves the finished temp file to `dest`, creating parent directories.
    async fn commit(&self, key: &str, tmp: &Path, dest: &Path) -> Result<()> {
        let parent = dest.parent().unwrap_or(&self.data);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Err(e) = fs::create_dir_all(parent).await {
                return Err(match e.kind() {
                    io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => {
                        Error::invalid_path(key, "an object exists at a parent of this path")
                    }
                    _ => map_io(key, "creating parent directories", e),
                });
            }
            match fs::rename(tmp, dest).await {
                Ok(()) => return Ok(()),
                // A concurrent delete removed the parent it found empty: create it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < RENAME_ATTEMPTS => {}
                Err(e) => {
                    return Err(match e.kind() {
                        io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty => {
                            Error::invalid_path(key, "objects exist under this path")
                        }
                        io::ErrorKind::NotADirectory => {
                            Error::invalid_path(key, "an object exists at a parent of this path")
                        }
                        _ => map_io(key, "renaming the temp file", e),
                    });
                }
            }
        }
    }

    /// Makes the new directory entries durable: every directory from the object's parent up
    /// to `data` (any of them may have been created by this write).
    async fn sync_parents(&self, key: &str, dest: &Path) -> Result<()> {
        let data = self.data.clone();
        let dest = dest.to_owned();
        let res = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut dir = dest.parent();
            while let Some(d) = dir {
                std::fs::File::open(d)?.sync_all()?;
                if d == data {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await;
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(map_io(key, "syncing parent directories", e)),
            Err(e) => Err(Error::Unavailable(format!(
                "syncing parent directories: {e}"
            ))),
        }
    }
}

/// Removes its file on drop unless committed: covers errors and a write future dropped
/// half-way.
struct TmpFile {
    path: Option<PathBuf>,
}

impl TmpFile {
    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    fn committed(mut self) {
        self.path = None;
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Best effort and cheap (one unlink); a leftover is invisible and cleaned by `new`.
            let _ = std::fs::remove_file(path);
        }
    }
}

#[async_trait]
impl ObjectStorage for Posix {
    async fn stat(&self, path: &str) -> Result<ObjectInfo> {
        let key = normalize_path(path)?;
        let meta = match fs::metadata(self.data.join(key)).await {
            Ok(m) => m,
            Err(e) => return Err(map_io(key, "stat", e)),
        };
        if !meta.is_file() {
            return Err(Error::not_exist(key));
        }
        Ok(ObjectInfo {
            path: key.to_owned(),
            last_modified: meta.modified().unwrap_or(UNIX_EPOCH),
            size: meta.len(),
        })
    }

    async fn read_range(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ObjectReader> {
        let key = normalize_path(path)?;
        let mut file = File::open(self.data.join(key))
            .await
            .map_err(|e| map_io(key, "open", e))?;
        let meta = file.metadata().await.map_err(|e| map_io(key, "stat", e))?;
        // Opening a directory succeeds on Linux; a directory is a key prefix, not an object.
        if !meta.is_file() {
            return Err(Error::not_exist(key));
        }
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .await
                .map_err(|e| map_io(key, "seek", e))?;
        }
        // The open file keeps the object it found, whatever later writes rename over it.
        Ok(Box::new(file.take(len.unwrap_or(u64::MAX))))
    }

    async fn write(
        &self,
        path: &str,
        reader: WriteSource<'_>,
        size: Option<u64>,
        persist: bool,
    ) -> Result<()> {
        let key = normalize_path(path)?;
        let dest = self.data.join(key);
        let (tmp, mut file) = self.create_tmp().await?;

        copy_into(key, reader, &mut file, size).await?;
        if persist {
            file.sync_all().await.map_err(|e| map_io(key, "fsync", e))?;
        }
        drop(file);

        self.commit(key, tmp.path(), &dest).await?;
        tmp.committed();
        if persist {
            self.sync_parents(key, &dest).await?;
        }
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let key = normalize_path(path)?;
        let full = self.data.join(key);
        match fs::remove_file(&full).await {
            Ok(()) => {}
            // unlink(2) of a directory: the key is only a prefix of other objects.
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => {
                return Err(Error::not_exist(key));
            }
            Err(e) => return Err(map_io(key, "delete", e)),
        }
        // Best effort: remove the parents this delete left empty, never `data` itself. A
        // non-empty directory (or a concurrent writer's fresh one) stops the climb.
        let mut dir = full.parent();
        while let Some(d) = dir {
            if d == self.data || !d.starts_with(&self.data) {
                break;
            }
            if fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        recursive: bool,
    ) -> BoxStream<'static, Result<ObjectInfo>> {
        let prefix = match normalize_prefix(prefix) {
            Ok(p) => p,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        // Start in the directory the prefix points into, filtering its entries by the rest.
        let (dir_key, name_prefix) = match prefix.rfind('/') {
            Some(idx) => (&prefix[..=idx], &prefix[idx + 1..]),
            None => ("", prefix),
        };
        let walker = Walker {
            data: self.data.clone(),
            start_after: normalize_start_after(start_after),
            recursive,
            root: Some((dir_key.to_owned(), name_prefix.to_owned())),
            stack: Vec::new(),
            ready: Vec::new(),
        };
        stream::unfold(walker, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        })
        .boxed()
    }
}

/// Copies the source into the temp file, enforcing a known size exactly.
async fn copy_into(
    key: &str,
    reader: WriteSource<'_>,
    file: &mut File,
    size: Option<u64>,
) -> Result<()> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut written: u64 = 0;
    loop {
        let want = match size {
            Some(s) => (s - written).min(COPY_BUF as u64) as usize,
            None => COPY_BUF,
        };
        if want == 0 {
            // Exactly the declared size arrived: the stream must end here.
            let mut probe = [0u8; 1];
            let n = reader.read(&mut probe).await.map_err(source_error)?;
            if n > 0 {
                return Err(Error::InvalidInput(format!(
                    "data for {key:?} is longer than the declared size of {written} bytes"
                )));
            }
            break;
        }
        let n = reader.read(&mut buf[..want]).await.map_err(source_error)?;
        if n == 0 {
            if let Some(s) = size {
                return Err(Error::InvalidInput(format!(
                    "data for {key:?} ended after {written} of the declared {s} bytes"
                )));
            }
            break;
        }
        file.write_all(&buf[..n])
            .await
            .map_err(|e| map_io(key, "write", e))?;
        written += n as u64;
    }
    // tokio's File finishes writes in the background: flush surfaces their errors.
    file.flush().await.map_err(|e| map_io(key, "write", e))
}

fn clean_stale_tmp(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > STALE_TMP_AGE);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Walks the data tree depth-first in true byte order of the full keys.
///
/// Sorting a directory's names is not enough: the keys under directory `a` all start with
/// `a/`, and `/` (0x2f) sorts after `-` and `.`, so `a-c` comes before `a/b`. Each entry is
/// therefore ordered by its name plus a trailing `/` when it is a directory, which is exactly
/// the order of the keys it stands for (no other name in the directory can share that
/// prefix).
struct Walker {
    data: PathBuf,
    start_after: Option<String>,
    recursive: bool,
    /// The first directory to read (key prefix ending in `/` or empty, name filter).
    root: Option<(String, String)>,
    /// Open directories, innermost last; entries are stored reversed so `pop` is the next.
    stack: Vec<Frame>,
    /// Stat'ed files waiting to be yielded, reversed.
    ready: Vec<ObjectInfo>,
}

struct Frame {
    key_prefix: String,
    entries: Vec<Entry>,
}

struct Entry {
    name: String,
    is_dir: bool,
}

impl Walker {
    async fn next(&mut self) -> Option<Result<ObjectInfo>> {
        loop {
            if let Some(info) = self.ready.pop() {
                return Some(Ok(info));
            }
            let (key_prefix, name_prefix) = if let Some(root) = self.root.take() {
                root
            } else {
                let frame = self.stack.last_mut()?;
                match frame.entries.last() {
                    None => {
                        self.stack.pop();
                        continue;
                    }
                    Some(e) if e.is_dir => {
                        let name = frame.entries.pop().map(|e| e.name).unwrap_or_default();
                        (format!("{}{name}/", frame.key_prefix), String::new())
                    }
                    Some(_) => {
                        let mut keys = Vec::new();
                        while keys.len() < STAT_BATCH
                            && frame.entries.last().is_some_and(|e| !e.is_dir)
                        {
                            if let Some(e) = frame.entries.pop() {
                                keys.push(format!("{}{}", frame.key_prefix, e.name));
                            }
                        }
                        match stat_files(self.data.clone(), keys).await {
                            Ok(mut infos) => {
                                infos.reverse();
                                self.ready = infos;
                            }
                            Err(e) => return Some(Err(self.fail(e))),
                        }
                        continue;
                    }
                }
            };
            match read_dir_sorted(
                self.data.clone(),
                key_prefix.clone(),
                name_prefix,
                self.start_after.clone(),
                self.recursive,
            )
            .await
            {
                Ok(mut entries) => {
                    entries.reverse();
                    self.stack.push(Frame {
                        key_prefix,
                        entries,
                    });
                }
                Err(e) => return Some(Err(self.fail(e))),
            }
        }
    }

    /// Ends the walk after an error.
    fn fail(&mut self, e: Error) -> Error {
        self.stack.clear();
        self.ready.clear();
        e
    }
}

/// Reads one directory of the tree: the entries that can hold keys after `start_after`, in
/// key order. A directory that vanished (concurrent delete) or is a file reads as empty.
async fn read_dir_sorted(
    data: PathBuf,
    key_prefix: String,
    name_prefix: String,
    start_after: Option<String>,
    recursive: bool,
) -> Result<Vec<Entry>> {
    let res = tokio::task::spawn_blocking(move || -> io::Result<Vec<Entry>> {
        let dir = data.join(key_prefix.trim_end_matches('/'));
        let read = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry?;
            // A name that is not UTF-8 was not written through this crate.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with(&name_prefix) {
                continue;
            }
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_dir() => true,
                Ok(t) if t.is_file() => false,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if is_dir && !recursive {
                continue;
            }
            if let Some(sa) = start_after.as_deref() {
                let key = format!("{key_prefix}{name}");
                let keep = if is_dir {
                    // Every key below sorts after `key/`; descend when that is past the bound
                    // or the bound itself lies inside.
                    let dir_key = key + "/";
                    dir_key.as_str() > sa || sa.starts_with(&dir_key)
                } else {
                    key.as_str() > sa
                };
                if !keep {
                    continue;
                }
            }
            out.push(Entry { name, is_dir });
        }
        out.sort_unstable_by(|a, b| sort_key(a).cmp(sort_key(b)));
        Ok(out)
    })
    .await;
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io_unavailable("listing", e)),
        Err(e) => Err(Error::Unavailable(format!("listing: {e}"))),
    }
}

fn sort_key(e: &Entry) -> impl Iterator<Item = u8> + '_ {
    e.name.bytes().chain(e.is_dir.then_some(b'/'))
}

/// Stats a batch of files; ones deleted or replaced by a directory meanwhile are skipped.
async fn stat_files(data: PathBuf, keys: Vec<String>) -> Result<Vec<ObjectInfo>> {
    let res = tokio::task::spawn_blocking(move || -> io::Result<Vec<ObjectInfo>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match std::fs::symlink_metadata(data.join(&key)) {
                Ok(m) if m.is_file() => out.push(ObjectInfo {
                    path: key,
                    last_modified: m.modified().unwrap_or(UNIX_EPOCH),
                    size: m.len(),
                }),
                Ok(_) => {}
                Err(e) if is_absent(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })
    .await;
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io_unavailable("listing", e)),
        Err(e) => Err(Error::Unavailable(format!("listing: {e}"))),
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Maps an I/O error on an object: absent → NotExist, a name too long for the filesystem →
/// InvalidPath, anything else → Unavailable.
fn map_io(key: &str, op: &str, e: io::Error) -> Error {
    if is_absent(&e) {
        return Error::not_exist(key);
    }
    if e.kind() == io::ErrorKind::InvalidFilename {
        return Error::invalid_path(key, format!("rejected by the filesystem: {e}"));
    }
    io_unavailable(format!("{op} {key:?}"), e)
}

fn io_unavailable(what: impl std::fmt::Display, e: io::Error) -> Error {
    Error::Unavailable(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, is_dir: bool) -> Entry {
        Entry {
            name: name.to_owned(),
            is_dir,
        }
    }

    #[test]
    fn directories_sort_as_their_keys() {
        let mut v = [
            entry("a0", false),
            entry("a", true),
            entry("a-c", false),
            entry("a.x", true),
            entry("ab", false),
        ];
        v.sort_unstable_by(|a, b| sort_key(a).cmp(sort_key(b)));
        let names: Vec<_> = v.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a-c", "a.x", "a", "a0", "ab"]);
    }
}
