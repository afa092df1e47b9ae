//! Logs, workspace archives and caches in object storage (spec 20 §1, §7): paths, live log
//! upload in parts with acks and composition, cache lookup by prefix.

use std::sync::Arc;

use agola_objectstorage::{ObjectInfo, ObjectStorage};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::runs::RunError;

/// Longest cache key accepted.
pub const MAX_CACHE_KEY: usize = 200;

/// Which log of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Setup,
    Step(usize),
}

impl LogKind {
    /// From the wire form `(setup, step)`: exactly one must be given.
    pub fn from_wire(setup: bool, step: Option<i32>) -> Result<LogKind, RunError> {
        match (setup, step) {
            (true, None) => Ok(LogKind::Setup),
            (false, Some(s)) if s >= 0 => Ok(LogKind::Step(s.unsigned_abs() as usize)),
            (false, Some(s)) => Err(RunError::BadRequest(format!("negative step {s}"))),
            _ => Err(RunError::BadRequest(
                "give exactly one of setup or step".to_owned(),
            )),
        }
    }

    fn part_key(self) -> String {
        match self {
            LogKind::Setup => "setup".to_owned(),
            LogKind::Step(n) => format!("steps-{n}"),
        }
    }
}

fn check_task_id(task_id: &str) -> Result<(), RunError> {
    if task_id.is_empty()
        || task_id.len() > 128
        || !task_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(RunError::BadRequest(format!("invalid task id {task_id:?}")));
    }
    Ok(())
}

pub fn log_path(task_id: &str, kind: LogKind) -> String {
    match kind {
        LogKind::Setup => format!("logs/{task_id}/data/setup.log"),
        LogKind::Step(n) => format!("logs/{task_id}/data/steps/{n}.log"),
    }
}

fn parts_prefix(task_id: &str, kind: LogKind) -> String {
    format!("logs/{task_id}/parts/{}/", kind.part_key())
}

pub fn archive_path(task_id: &str, step: usize) -> String {
    format!("workspacearchives/{task_id}/data/{step}.tar")
}

/// Percent-escapes a cache key; each character maps on its own, so prefixes are preserved.
pub fn escape_cache_key(key: &str) -> Result<String, RunError> {
    if key.is_empty() || key.chars().count() > MAX_CACHE_KEY {
        return Err(RunError::BadRequest(format!(
            "cache key must be 1 to {MAX_CACHE_KEY} characters"
        )));
    }
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

fn unescape_cache_key(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len() + 1
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn storage_err(e: agola_objectstorage::Error) -> RunError {
    if e.is_not_exist() {
        RunError::NotFound(e.to_string())
    } else {
        RunError::Unavailable(e.to_string())
    }
}

/// The object storage of the runservice.
#[derive(Clone)]
pub struct Blobs {
    ost: Arc<dyn ObjectStorage>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").finish_non_exhaustive()
    }
}

/// The runid markers of a task's data (spec 20 §8): one empty object per referencing run,
/// beside the log and archive data.
fn marker_paths(task_id: &str, run_id: &str) -> [String; 2] {
    [
        format!("logs/{task_id}/runs/{run_id}"),
        format!("workspacearchives/{task_id}/runs/{run_id}"),
    ]
}

impl Blobs {
    /// Records that `run_id` references the data of `task_id` (idempotent).
    pub async fn write_markers(&self, task_id: &str, run_id: &str) -> Result<(), RunError> {
        check_task_id(task_id)?;
        check_task_id(run_id)?;
        for path in marker_paths(task_id, run_id) {
            if self.ost.stat(&path).await.is_err() {
                self.ost
                    .write_bytes(&path, &[], false)
                    .await
                    .map_err(storage_err)?;
            }
        }
        Ok(())
    }

    /// Removes `run_id`'s markers of `task_id`, then the task's logs, log parts and
    /// workspace archives when no run references them any more. Returns whether the data
    /// was deleted.
    pub async fn release_task_data(&self, task_id: &str, run_id: &str) -> Result<bool, RunError> {
        check_task_id(task_id)?;
        check_task_id(run_id)?;
        for path in marker_paths(task_id, run_id) {
            match self.ost.delete(&path).await {
                Ok(()) => {}
                Err(e) if e.is_not_exist() => {}
                Err(e) => return Err(storage_err(e)),
            }
        }
        for prefix in [
            format!("logs/{task_id}/runs/"),
            format!("workspacearchives/{task_id}/runs/"),
        ] {
            if let Some(obj) = self.ost.list(&prefix, None, false).next().await {
                obj.map_err(storage_err)?;
                return Ok(false);
            }
        }
        for prefix in [
            format!("logs/{task_id}/data/"),
            format!("logs/{task_id}/parts/"),
            format!("workspacearchives/{task_id}/data/"),
        ] {
            let mut paths = Vec::new();
            let mut list = self.ost.list(&prefix, None, true);
            while let Some(obj) = list.next().await {
                paths.push(obj.map_err(storage_err)?.path);
            }
            for p in paths {
                match self.ost.delete(&p).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_exist() => {}
                    Err(e) => return Err(storage_err(e)),
                }
            }
        }
        Ok(true)
    }

    /// Expiry cleaner (spec 20 §7.4): deletes the objects under `prefix` (`caches/`,
    /// `workspacearchives/`) last modified before `cutoff`. Returns how many were deleted.
    pub async fn expire(
        &self,
        prefix: &str,
        cutoff: std::time::SystemTime,
    ) -> Result<usize, RunError> {
        let mut old = Vec::new();
        let mut list = self.ost.list(prefix, None, true);
        while let Some(obj) = list.next().await {
            let obj = obj.map_err(storage_err)?;
            if obj.last_modified < cutoff {
                old.push(obj.path);
            }
        }
        let mut deleted = 0;
        for path in old {
            match self.ost.delete(&path).await {
                Ok(()) => deleted += 1,
                Err(e) if e.is_not_exist() => {}
                Err(e) => return Err(storage_err(e)),
            }
        }
        Ok(deleted)
    }

    pub fn new(ost: Arc<dyn ObjectStorage>) -> Self {
        Blobs { ost }
    }

    pub fn storage(&self) -> &Arc<dyn ObjectStorage> {
        &self.ost
    }

    /// Stores one uploaded part (persist=false: logs can be re-fetched) and returns the
    /// highest contiguous offset now acknowledged.
    pub async fn put_log_part(
        &self,
        task_id: &str,
        kind: LogKind,
        offset: u64,
        data: &[u8],
    ) -> Result<u64, RunError> {
        self.store_log_part(task_id, kind, offset, data).await?;
        self.acked_offset(task_id, kind).await
    }

    /// Stores one uploaded part without recomputing the acknowledged offset (an upload
    /// stream tracks it itself: listing the parts for every chunk is quadratic).
    pub async fn store_log_part(
        &self,
        task_id: &str,
        kind: LogKind,
        offset: u64,
        data: &[u8],
    ) -> Result<(), RunError> {
        check_task_id(task_id)?;
        if !data.is_empty() {
            let path = format!("{}{offset:020}", parts_prefix(task_id, kind));
            self.ost
                .write_bytes(&path, data, false)
                .await
                .map_err(storage_err)?;
        }
        Ok(())
    }

    async fn parts(
        &self,
        task_id: &str,
        kind: LogKind,
    ) -> Result<Vec<(u64, ObjectInfo)>, RunError> {
        let prefix = parts_prefix(task_id, kind);
        let mut list = self.ost.list(&prefix, None, false);
        let mut out = Vec::new();
        while let Some(obj) = list.next().await {
            let obj = obj.map_err(storage_err)?;
            if let Some(off) = obj
                .path
                .strip_prefix(&prefix)
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push((off, obj));
            }
        }
        Ok(out)
    }

    /// The highest offset up to which the uploaded parts are contiguous.
    pub async fn acked_offset(&self, task_id: &str, kind: LogKind) -> Result<u64, RunError> {
        check_task_id(task_id)?;
        let mut expected = 0u64;
        for (off, obj) in self.parts(task_id, kind).await? {
            if off > expected {
                break;
            }
            expected = expected.max(off + obj.size);
        }
        Ok(expected)
    }

    /// Composes the parts into the final log once they cover `final_size`, then deletes the
    /// parts. Returns whether the log is complete.
    pub async fn complete_log(
        &self,
        task_id: &str,
        kind: LogKind,
        final_size: u64,
    ) -> Result<bool, RunError> {
        if self.acked_offset(task_id, kind).await? < final_size {
            return Ok(false);
        }
        let parts = self.parts(task_id, kind).await?;
        let (reader, mut writer) = tokio::io::duplex(64 * 1024);
        let ost = self.ost.clone();
        let feeder = tokio::spawn(async move {
            let mut written = 0u64;
            for (off, obj) in parts {
                if written >= final_size {
                    break;
                }
                let mut r = ost.read(&obj.path).await.map_err(storage_err)?;
                // Skip what an overlapping (re-sent) part repeats.
                let skip = written.saturating_sub(off);
                let mut sink = tokio::io::sink();
                tokio::io::copy(&mut tokio::io::AsyncReadExt::take(&mut r, skip), &mut sink)
                    .await
                    .map_err(|e| RunError::Unavailable(e.to_string()))?;
                let want = (obj.size - skip.min(obj.size)).min(final_size - written);
                let n = tokio::io::copy(
                    &mut tokio::io::AsyncReadExt::take(&mut r, want),
                    &mut writer,
                )
                .await
                .map_err(|e| RunError::Unavailable(e.to_string()))?;
                written += n;
            }
            writer
                .shutdown()
                .await
                .map_err(|e| RunError::Unavailable(e.to_string()))?;
            Ok::<(), RunError>(())
        });
        let mut reader = reader;
        let res = self
            .ost
            .write(
                &log_path(task_id, kind),
                &mut reader,
                Some(final_size),
                false,
            )
            .await
            .map_err(storage_err);
        feeder
            .await
            .map_err(|e| RunError::Internal(e.to_string()))??;
        res?;
        for (_, obj) in self.parts(task_id, kind).await? {
            let _ = self.ost.delete(&obj.path).await;
        }
        Ok(true)
    }

    /// Uploaded bytes of a log from `offset` (at most 256 KiB), read from its contiguous parts.
    pub async fn read_parts_from(
        &self,
        task_id: &str,
        kind: LogKind,
        offset: u64,
    ) -> Result<Vec<u8>, RunError> {
        use tokio::io::AsyncReadExt;
        const MAX: u64 = 256 * 1024;
        let mut out = Vec::new();
        let mut pos = offset;
        for (off, obj) in self.parts(task_id, kind).await? {
            let end = off + obj.size;
            if end <= pos {
                continue;
            }
            if off > pos || out.len() as u64 >= MAX {
                break;
            }
            let want = (end - pos).min(MAX - out.len() as u64);
            let mut r = self
                .ost
                .read_range(&obj.path, pos - off, Some(want))
                .await
                .map_err(storage_err)?;
            let mut buf = Vec::new();
            r.read_to_end(&mut buf)
                .await
                .map_err(|e| RunError::Unavailable(e.to_string()))?;
            pos += buf.len() as u64;
            out.extend(buf);
        }
        Ok(out)
    }

    /// The newest cache object whose key starts with `key` (or exactly `key` when not
    /// `prefix`): its real key and info.
    pub async fn find_cache(
        &self,
        key: &str,
        prefix: bool,
    ) -> Result<(String, ObjectInfo), RunError> {
        let escaped = escape_cache_key(key)?;
        if !prefix {
            let path = format!("caches/{escaped}.tar");
            let info = self.ost.stat(&path).await.map_err(storage_err)?;
            return Ok((key.to_owned(), info));
        }
        let mut list = self.ost.list(&format!("caches/{escaped}"), None, false);
        let mut best: Option<ObjectInfo> = None;
        while let Some(obj) = list.next().await {
            let obj = obj.map_err(storage_err)?;
            if !obj.path.ends_with(".tar") {
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|b| obj.last_modified > b.last_modified)
            {
                best = Some(obj);
            }
        }
        let best = best.ok_or_else(|| RunError::NotFound(format!("cache {key:?}")))?;
        let name = best
            .path
            .strip_prefix("caches/")
            .and_then(|s| s.strip_suffix(".tar"))
            .map(unescape_cache_key)
            .unwrap_or_default();
        Ok((name, best))
    }

    pub fn cache_path(key: &str) -> Result<String, RunError> {
        Ok(format!("caches/{}.tar", escape_cache_key(key)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_escape_preserving_prefixes() {
        let a = escape_cache_key("proj-deps/v1 {x}").expect("ok");
        let b = escape_cache_key("proj-deps/v1 {x}-more").expect("ok");
        assert!(b.starts_with(&a));
        assert!(!a.contains('/'));
        assert_eq!(unescape_cache_key(&a), "proj-deps/v1 {x}");
        assert!(escape_cache_key("").is_err());
        assert!(escape_cache_key(&"k".repeat(201)).is_err());
        assert!(escape_cache_key(&"k".repeat(200)).is_ok());
    }

    #[test]
    fn log_kind_from_wire() {
        assert_eq!(LogKind::from_wire(true, None).ok(), Some(LogKind::Setup));
        assert_eq!(
            LogKind::from_wire(false, Some(2)).ok(),
            Some(LogKind::Step(2))
        );
        assert!(LogKind::from_wire(true, Some(1)).is_err());
        assert!(LogKind::from_wire(false, None).is_err());
        assert!(LogKind::from_wire(false, Some(-1)).is_err());
    }
}
