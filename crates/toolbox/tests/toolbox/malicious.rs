//! Crafted archives that try to write outside the destination: each is rejected (non-zero exit,
//! the entry named) and nothing appears outside.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::PathBuf;

use tar::{Builder, EntryType, Header};

use super::{ok, stderr, unarchive};

/// A scratch area: `dest/` is the extraction target, `outside/` must stay untouched.
struct Scratch {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dest: PathBuf,
    outside: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let dest = root.join("dest");
        let outside = root.join("outside");
        fs::create_dir_all(&dest).expect("mkdir");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::write(outside.join("secret"), "secret").expect("write");
        Self {
            _tmp: tmp,
            root,
            dest,
            outside,
        }
    }

    /// Asserts the outside dir holds only the untouched `secret` and the root only dest/outside.
    fn assert_outside_untouched(&self) {
        let mut names: Vec<String> = fs::read_dir(&self.outside)
            .expect("read outside")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["secret"], "nothing new outside");
        assert_eq!(
            fs::read_to_string(self.outside.join("secret")).expect("read"),
            "secret"
        );
        let meta = fs::metadata(self.outside.join("secret")).expect("stat");
        assert_eq!(meta.nlink(), 1, "no hard link to the outside file");
        let mut top: Vec<String> = fs::read_dir(&self.root)
            .expect("read root")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, vec!["dest", "outside"]);
    }

    fn outside_str(&self) -> &str {
        self.outside.to_str().expect("utf-8")
    }
}

/// Appends an entry whose name and link name are written raw (no sanitising by the tar crate).
fn raw(b: &mut Builder<Vec<u8>>, name: &str, ty: EntryType, link: Option<&str>, data: &[u8]) {
    let mut h = Header::new_gnu();
    {
        let old = h.as_old_mut();
        assert!(name.len() < old.name.len(), "name fits the header");
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            assert!(l.len() < old.linkname.len(), "link fits the header");
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(ty);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, data).expect("append");
}

fn build(f: impl FnOnce(&mut Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().expect("finish")
}

fn assert_rejected(out: &std::process::Output, entry: &str) {
    assert!(!out.status.success(), "must fail: {}", stderr(out));
    let err = stderr(out);
    assert!(
        err.contains(&format!("rejected archive entry {entry:?}")),
        "names {entry}: {err}"
    );
}

#[test]
fn absolute_path_is_rejected() {
    let s = Scratch::new();
    let name = format!("{}/abs.txt", s.outside_str());
    let tar = build(|b| raw(b, &name, EntryType::Regular, None, b"pwned"));
    for overwrite in [false, true] {
        let out = unarchive(&tar, &s.dest, overwrite);
        assert_rejected(&out, &name);
        assert!(stderr(&out).contains("absolute path"));
    }
    s.assert_outside_untouched();
}

#[test]
fn dot_dot_escape_is_rejected() {
    let s = Scratch::new();
    for name in [
        "../outside/dotdot.txt",
        "a/../../outside/x.txt",
        "a/b/../../../outside/y",
    ] {
        let tar = build(|b| raw(b, name, EntryType::Regular, None, b"pwned"));
        let out = unarchive(&tar, &s.dest, true);
        assert_rejected(&out, name);
        assert!(stderr(&out).contains("'..'"));
    }
    let tar = build(|b| raw(b, "../outside", EntryType::Directory, None, b""));
    assert_rejected(&unarchive(&tar, &s.dest, false), "../outside");
    s.assert_outside_untouched();
}

#[test]
fn file_through_symlink_created_by_the_archive_is_rejected() {
    let s = Scratch::new();
    let outside = s.outside_str().to_string();
    for (link, target) in [("evil", outside.as_str()), ("rel", "../outside")] {
        let victim = format!("{link}/pwned.txt");
        let tar = build(|b| {
            raw(b, link, EntryType::Symlink, Some(target), b"");
            raw(b, &victim, EntryType::Regular, None, b"pwned");
        });
        for overwrite in [false, true] {
            let out = unarchive(&tar, &s.dest, overwrite);
            assert_rejected(&out, &victim);
            assert!(
                stderr(&out).contains("refusing to traverse symlink"),
                "{}",
                stderr(&out)
            );
        }
        // the symlink itself is kept as a symlink: harmless, extraction never follows it
        assert!(
            fs::symlink_metadata(s.dest.join(link))
                .expect("lstat")
                .is_symlink()
        );
    }
    // a directory entry below the symlink is refused the same way
    let tar = build(|b| {
        raw(b, "d", EntryType::Symlink, Some(&outside), b"");
        raw(b, "d/sub/", EntryType::Directory, None, b"");
    });
    assert_rejected(&unarchive(&tar, &s.dest, true), "d/sub/");
    s.assert_outside_untouched();
}

#[test]
fn symlink_chain_is_rejected() {
    let s = Scratch::new();
    let outside = s.outside_str().to_string();
    let tar = build(|b| {
        raw(b, "l2", EntryType::Symlink, Some(&outside), b"");
        raw(b, "l1", EntryType::Symlink, Some("l2"), b"");
        raw(b, "dir/", EntryType::Directory, None, b"");
        raw(b, "dir/l0", EntryType::Symlink, Some("../l1"), b"");
        raw(b, "dir/l0/chained.txt", EntryType::Regular, None, b"pwned");
    });
    assert_rejected(&unarchive(&tar, &s.dest, true), "dir/l0/chained.txt");
    let tar = build(|b| raw(b, "l1/direct.txt", EntryType::Regular, None, b"pwned"));
    assert_rejected(&unarchive(&tar, &s.dest, true), "l1/direct.txt");
    s.assert_outside_untouched();
}

#[test]
fn preexisting_symlink_in_destination_is_not_traversed() {
    let s = Scratch::new();
    symlink(&s.outside, s.dest.join("pre")).expect("symlink");
    let tar = build(|b| raw(b, "pre/file.txt", EntryType::Regular, None, b"pwned"));
    assert_rejected(&unarchive(&tar, &s.dest, true), "pre/file.txt");
    s.assert_outside_untouched();
}

#[test]
fn file_entry_over_a_symlink_never_writes_through_it() {
    let s = Scratch::new();
    let target = s.outside.join("secret");
    let target = target.to_str().expect("utf-8").to_string();
    let tar = build(|b| {
        raw(b, "link", EntryType::Symlink, Some(&target), b"");
        raw(b, "link", EntryType::Regular, None, b"pwned");
    });
    // without --overwrite the symlink is left as is and nothing is written through it
    ok(&unarchive(&tar, &s.dest, false));
    assert!(
        fs::symlink_metadata(s.dest.join("link"))
            .expect("lstat")
            .is_symlink()
    );
    s.assert_outside_untouched();
    // with --overwrite the symlink itself is replaced by a regular file
    fs::remove_file(s.dest.join("link")).expect("rm");
    ok(&unarchive(&tar, &s.dest, true));
    let meta = fs::symlink_metadata(s.dest.join("link")).expect("lstat");
    assert!(meta.is_file());
    assert_eq!(
        fs::read_to_string(s.dest.join("link")).expect("read"),
        "pwned"
    );
    s.assert_outside_untouched();
}

#[test]
fn hard_link_outside_is_rejected() {
    let s = Scratch::new();
    let abs = format!("{}/secret", s.outside_str());
    let outside = s.outside_str().to_string();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            build(|b| raw(b, "hl-abs", EntryType::Link, Some(&abs), b"")),
            "hl-abs",
        ),
        (
            build(|b| {
                raw(
                    b,
                    "hl-dots",
                    EntryType::Link,
                    Some("../outside/secret"),
                    b"",
                )
            }),
            "hl-dots",
        ),
        (
            build(|b| {
                raw(b, "sl", EntryType::Symlink, Some(&outside), b"");
                raw(b, "hl-via-symlink", EntryType::Link, Some("sl/secret"), b"");
            }),
            "hl-via-symlink",
        ),
    ];
    for (tar, entry) in cases {
        let out = unarchive(&tar, &s.dest, true);
        assert_rejected(&out, entry);
        assert!(
            stderr(&out).contains("hard link target"),
            "{}",
            stderr(&out)
        );
        assert!(!s.dest.join(entry).exists());
    }
    // after all that, writing through the new names must not reach the secret
    s.assert_outside_untouched();
}

#[test]
fn hard_link_inside_is_allowed() {
    let s = Scratch::new();
    let tar = build(|b| {
        raw(b, "dir/orig.txt", EntryType::Regular, None, b"data");
        raw(b, "copy.txt", EntryType::Link, Some("dir/orig.txt"), b"");
    });
    ok(&unarchive(&tar, &s.dest, false));
    assert_eq!(
        fs::read_to_string(s.dest.join("copy.txt")).expect("read"),
        "data"
    );
    assert_eq!(
        fs::metadata(s.dest.join("copy.txt")).expect("stat").nlink(),
        2
    );
    s.assert_outside_untouched();
}

#[test]
fn devices_and_fifos_are_skipped() {
    let s = Scratch::new();
    let tar = build(|b| {
        raw(b, "fifo", EntryType::Fifo, None, b"");
        raw(b, "null", EntryType::Char, None, b"");
        raw(b, "disk", EntryType::Block, None, b"");
        raw(b, "after.txt", EntryType::Regular, None, b"ok");
    });
    ok(&unarchive(&tar, &s.dest, false));
    for n in ["fifo", "null", "disk"] {
        assert!(fs::symlink_metadata(s.dest.join(n)).is_err(), "{n} skipped");
    }
    assert_eq!(
        fs::read_to_string(s.dest.join("after.txt")).expect("read"),
        "ok"
    );
}

#[test]
fn garbage_input_fails() {
    let s = Scratch::new();
    let out = unarchive(&[7u8; 1024], &s.dest, false);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read the archive"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn type_changes_follow_overwrite() {
    let s = Scratch::new();
    fs::create_dir_all(s.dest.join("x/inner")).expect("mkdir");
    fs::write(s.dest.join("x/inner/f"), "old").expect("write");
    fs::write(s.dest.join("y"), "old").expect("write");
    let file_over_dir = build(|b| raw(b, "x", EntryType::Regular, None, b"new"));
    let dir_over_file = build(|b| raw(b, "y/", EntryType::Directory, None, b""));

    ok(&unarchive(&file_over_dir, &s.dest, false));
    assert!(
        s.dest.join("x/inner/f").is_file(),
        "kept without --overwrite"
    );
    assert_rejected(&unarchive(&dir_over_file, &s.dest, false), "y/");
    assert_eq!(fs::read_to_string(s.dest.join("y")).expect("read"), "old");

    ok(&unarchive(&file_over_dir, &s.dest, true));
    assert_eq!(fs::read_to_string(s.dest.join("x")).expect("read"), "new");
    ok(&unarchive(&dir_over_file, &s.dest, true));
    assert!(s.dest.join("y").is_dir());
    s.assert_outside_untouched();
}
