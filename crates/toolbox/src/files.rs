//! `createfile`, `expanddir` and `mkdir`: small file helpers run as the container user, so
//! paths and `~` resolve inside the container.

use std::collections::hash_map::RandomState;
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::paths::expand_dir;
use crate::{Error, Result};

/// A random 64-bit file name suffix (std's per-process random hasher keys, mixed with the time
/// and the attempt number).
fn random_suffix(attempt: u32) -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(attempt);
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("{:016x}", h.finish())
}

/// Writes `input` into a new, randomly named file in `dir` and returns its path. `dir` is
/// created (mode 1777, like `/tmp`) when missing. The file is created exclusively with mode 0644
/// so the step can read it whatever user it runs as.
pub fn create_file_in(dir: &Path, input: &mut dyn Read) -> Result<PathBuf> {
    if !dir.exists() {
        fs::create_dir_all(dir).ctx(|| format!("cannot create {}", dir.display()))?;
        // best effort: a shared temp dir must be writable by every user
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o1777));
    }
    for attempt in 0..100 {
        let path = dir.join(format!("agola-{}", random_suffix(attempt)));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(mut file) => {
                // explicit: the umask must not make the script unreadable for the step user
                file.set_permissions(fs::Permissions::from_mode(0o644))
                    .ctx(|| format!("cannot set the mode of {}", path.display()))?;
                io::copy(input, &mut file).ctx(|| format!("cannot write {}", path.display()))?;
                file.sync_all()
                    .ctx(|| format!("cannot write {}", path.display()))?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("cannot create {}", path.display()), e)),
        }
    }
    Err(Error::io(
        format!("cannot create a unique file in {}", dir.display()),
        io::Error::from(io::ErrorKind::AlreadyExists),
    ))
}

/// `createfile`: stdin into a new file in the temp dir (`$TMPDIR`, else `/tmp`).
pub fn create_file(input: &mut dyn Read) -> Result<PathBuf> {
    create_file_in(&std::env::temp_dir(), input)
}

/// `expanddir`: `~` expanded, absolute, cleaned.
pub fn expanddir(dir: &Path) -> Result<PathBuf> {
    expand_dir(dir)
}

/// `mkdir`: `~` expanded, created with its parents.
pub fn mkdir(dir: &Path) -> Result<PathBuf> {
    let path = expand_dir(dir)?;
    fs::create_dir_all(&path).ctx(|| format!("cannot create directory {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_file_writes_unique_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("missing-tmp");
        let a = create_file_in(&target, &mut &b"echo a"[..]).expect("create");
        let b = create_file_in(&target, &mut &b"echo b"[..]).expect("create");
        assert_ne!(a, b);
        assert_eq!(fs::read_to_string(&a).expect("read"), "echo a");
        assert_eq!(fs::read_to_string(&b).expect("read"), "echo b");
        let mode = fs::metadata(&a).expect("stat").permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o044,
            0o044,
            "readable by group and others: {mode:o}"
        );
    }
}
