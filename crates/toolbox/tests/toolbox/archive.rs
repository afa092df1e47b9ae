//! archive → unarchive round trips through the binary.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::{ok, stderr, toolbox_stdin, unarchive};

fn request(infos: &[(&Path, &str, &[&str])], out_file: &str) -> Vec<u8> {
    let infos: Vec<serde_json::Value> = infos
        .iter()
        .map(|(src, dest, paths)| {
            serde_json::json!({"source_dir": src, "dest_dir": dest, "paths": paths})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"archive_infos": infos, "out_file": out_file}))
        .expect("json")
}

fn archive(infos: &[(&Path, &str, &[&str])]) -> Vec<u8> {
    let out = toolbox_stdin(&["archive"], &request(infos, ""));
    ok(&out);
    out.stdout
}

fn source_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    fs::create_dir_all(root.join("empty")).expect("mkdir");
    fs::write(root.join("file.txt"), "top").expect("write");
    fs::write(root.join("sub/a.txt"), "a").expect("write");
    fs::write(root.join("sub/deeper/b.bin"), [0u8, 1, 2, 255]).expect("write");
    fs::write(root.join("run.sh"), "#!/bin/sh\n").expect("write");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    symlink("sub/a.txt", root.join("rel-link")).expect("symlink");
    symlink("/definitely/not/here", root.join("dangling")).expect("symlink");
    symlink("sub", root.join("dir-link")).expect("symlink");
    let long = "x".repeat(120);
    fs::create_dir_all(root.join(&long)).expect("mkdir long");
    fs::write(root.join(&long).join("y".repeat(120)), "long").expect("write long");
}

#[test]
fn round_trip_keeps_files_dirs_modes_and_symlinks_and_skips_sockets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    source_tree(&src);
    let _sock = std::os::unix::net::UnixListener::bind(src.join("agent.sock")).expect("bind");
    let tar = archive(&[(&src, "ws", &["**"])]);

    let dest = tmp.path().join("dest");
    ok(&unarchive(&tar, &dest, false));
    let ws = dest.join("ws");
    assert_eq!(
        fs::read_to_string(ws.join("file.txt")).expect("read"),
        "top"
    );
    assert_eq!(fs::read_to_string(ws.join("sub/a.txt")).expect("read"), "a");
    assert_eq!(
        fs::read(ws.join("sub/deeper/b.bin")).expect("read"),
        [0u8, 1, 2, 255]
    );
    assert!(ws.join("empty").is_dir());
    let mode = fs::metadata(ws.join("run.sh"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    for (link, target) in [
        ("rel-link", "sub/a.txt"),
        ("dangling", "/definitely/not/here"),
        ("dir-link", "sub"),
    ] {
        let meta = fs::symlink_metadata(ws.join(link)).expect("lstat");
        assert!(meta.file_type().is_symlink(), "{link} is a symlink");
        assert_eq!(
            fs::read_link(ws.join(link)).expect("readlink"),
            Path::new(target)
        );
    }
    let long = ws.join("x".repeat(120)).join("y".repeat(120));
    assert_eq!(fs::read_to_string(long).expect("read long"), "long");
    assert!(!ws.join("agent.sock").exists(), "sockets are skipped");
}

#[test]
fn globs_select_and_dest_dirs_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    source_tree(&src);
    let tar = archive(&[
        (&src, "/", &["**/*.txt"]),
        (&src.join("sub"), "copy/of/sub", &["deeper"]),
    ]);
    let dest = tmp.path().join("dest");
    ok(&unarchive(&tar, &dest, false));
    assert!(dest.join("file.txt").is_file());
    assert!(dest.join("sub/a.txt").is_file());
    assert!(!dest.join("run.sh").exists());
    assert!(
        dest.join("copy/of/sub/deeper/b.bin").is_file(),
        "a matched dir brings its content"
    );
    assert!(!dest.join("copy/of/sub/a.txt").exists());
}

#[test]
fn tilde_in_source_dir_is_expanded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    source_tree(&home.join("project"));
    let mut cmd = super::toolbox();
    cmd.arg("archive").env("HOME", &home);
    let out = super::run_with_stdin(
        cmd,
        br#"{"archive_infos":[{"source_dir":"~/project","dest_dir":"","paths":["file.txt"]}],"out_file":""}"#,
    );
    ok(&out);
    let dest = tmp.path().join("dest");
    ok(&unarchive(&out.stdout, &dest, false));
    assert_eq!(
        fs::read_to_string(dest.join("file.txt")).expect("read"),
        "top"
    );
}

#[test]
fn out_file_receives_the_archive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    source_tree(&src);
    let out_file = tmp.path().join("out.tar");
    let out = toolbox_stdin(
        &["archive"],
        &request(
            &[(&src, "", &["file.txt"])],
            out_file.to_str().expect("utf-8"),
        ),
    );
    ok(&out);
    assert!(out.stdout.is_empty());
    let tar = fs::read(&out_file).expect("read out file");
    let dest = tmp.path().join("dest");
    ok(&unarchive(&tar, &dest, false));
    assert!(dest.join("file.txt").is_file());
}

#[test]
fn duplicate_destination_fails_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    source_tree(&src);
    let out = toolbox_stdin(
        &["archive"],
        &request(&[(&src, "d", &["file.txt"]), (&src, "d", &["*.txt"])], ""),
    );
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "nothing written before the duplicate is found"
    );
    assert!(
        stderr(&out).contains("\"d/file.txt\" already exists"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_request_fails() {
    let out = toolbox_stdin(&["archive"], b"{not json");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid archive request"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn existing_files_kept_without_overwrite_and_replaced_with_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    source_tree(&src);
    let dest = tmp.path().join("dest");
    ok(&unarchive(&archive(&[(&src, "", &["**"])]), &dest, false));

    fs::write(src.join("file.txt"), "changed").expect("write");
    fs::remove_file(src.join("rel-link")).expect("rm");
    symlink("file.txt", src.join("rel-link")).expect("symlink");
    let tar = archive(&[(&src, "", &["**"])]);

    ok(&unarchive(&tar, &dest, false));
    assert_eq!(
        fs::read_to_string(dest.join("file.txt")).expect("read"),
        "top"
    );
    assert_eq!(
        fs::read_link(dest.join("rel-link")).expect("readlink"),
        Path::new("sub/a.txt")
    );

    ok(&unarchive(&tar, &dest, true));
    assert_eq!(
        fs::read_to_string(dest.join("file.txt")).expect("read"),
        "changed"
    );
    assert_eq!(
        fs::read_link(dest.join("rel-link")).expect("readlink"),
        Path::new("file.txt")
    );
}
