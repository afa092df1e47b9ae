//! `createfile`, `expanddir`, `mkdir` and the usage errors.

use std::fs;
use std::path::Path;

use super::{ok, run_with_stdin, stderr, stdout, toolbox};

#[test]
fn createfile_writes_stdin_to_a_new_temp_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tmpdir = tmp.path().join("not-yet");
    let mut paths = Vec::new();
    for body in ["echo one\n", "echo two\n"] {
        let mut cmd = toolbox();
        cmd.arg("createfile").env("TMPDIR", &tmpdir);
        let out = run_with_stdin(cmd, body.as_bytes());
        ok(&out);
        let path = stdout(&out);
        assert!(!path.ends_with('\n'), "no trailing newline");
        assert!(Path::new(&path).starts_with(&tmpdir), "{path}");
        assert_eq!(fs::read_to_string(&path).expect("read"), body);
        paths.push(path);
    }
    assert_ne!(paths[0], paths[1]);
}

#[test]
fn expanddir_expands_tilde_and_makes_absolute() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cwd = tmp.path().canonicalize().expect("canonical");
    let expand = |arg: &str| {
        let out = toolbox()
            .args(["expanddir", arg])
            .env("HOME", "/home/builder")
            .current_dir(&cwd)
            .output()
            .expect("run");
        ok(&out);
        stdout(&out)
    };
    assert_eq!(expand("~"), "/home/builder");
    assert_eq!(expand("~/project"), "/home/builder/project");
    assert_eq!(expand("/abs/./x/../y"), "/abs/y");
    assert_eq!(expand("rel/dir"), format!("{}/rel/dir", cwd.display()));

    // without HOME the passwd entry of the current uid is used
    let out = toolbox()
        .args(["expanddir", "~/p"])
        .env_remove("HOME")
        .output()
        .expect("run");
    let uid = nix::unistd::getuid().as_raw();
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    match agola_toolbox::user::parse_passwd(&passwd)
        .into_iter()
        .find(|p| p.uid == uid)
    {
        Some(p) => {
            ok(&out);
            assert_eq!(stdout(&out), format!("{}/p", p.home));
        }
        None => assert!(!out.status.success()),
    }

    let out = toolbox().args(["expanddir"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing directory"));
}

#[test]
fn mkdir_creates_parents_and_expands_tilde() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = toolbox()
        .args(["mkdir", "~/a/b/c"])
        .env("HOME", tmp.path())
        .output()
        .expect("run");
    ok(&out);
    assert!(tmp.path().join("a/b/c").is_dir());
    // existing is fine
    let out = toolbox()
        .args(["mkdir", tmp.path().join("a/b").to_str().expect("utf-8")])
        .output()
        .expect("run");
    ok(&out);
    // a file in the way fails naming it
    fs::write(tmp.path().join("file"), "").expect("write");
    let target = tmp.path().join("file/sub");
    let out = toolbox()
        .args(["mkdir", target.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("file/sub"), "{}", stderr(&out));
}

#[test]
fn unknown_command_is_a_usage_error() {
    let out = toolbox().arg("frobnicate").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown command \"frobnicate\""));
    let out = toolbox().output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}
