//! `exec`: env overlay, working directory, user switch, exit codes.

use std::os::unix::fs::PermissionsExt;

use super::{is_root, stderr, stdout, toolbox};

#[test]
fn env_overlay_and_working_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().canonicalize().expect("canonical");
    let out = toolbox()
        .env("INHERITED", "kept")
        .env("OVERRIDDEN", "old")
        .args([
            "exec",
            "-e",
            r#"{"X":"hello world","OVERRIDDEN":"new"}"#,
            "-w",
            dir.to_str().expect("utf-8"),
            "--",
            "/bin/sh",
            "-c",
            "echo $X; pwd; echo $INHERITED $OVERRIDDEN",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("hello world\n{}\nkept new\n", dir.display())
    );
}

#[test]
fn exit_status_is_the_commands() {
    let out = toolbox()
        .args(["exec", "-e", "{}", "--", "/bin/sh", "-c", "exit 7"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn path_from_the_env_map_is_used_for_lookup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = tmp.path().join("my-tool");
    std::fs::write(&script, "#!/bin/sh\necho found-it\n").expect("write");
    std::fs::set_permissions(&script, PermissionsExt::from_mode(0o755)).expect("chmod");
    let env = serde_json::json!({"PATH": format!("{}:/usr/bin:/bin", tmp.path().display())});
    let out = toolbox()
        .args(["exec", "-e", &env.to_string(), "--", "my-tool"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "found-it\n");
}

#[test]
fn missing_command_and_bad_dir_fail_clearly() {
    let out = toolbox()
        .args(["exec", "-e", "{}", "--", "/no/such/program"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("cannot execute \"/no/such/program\""),
        "{}",
        stderr(&out)
    );

    let out = toolbox()
        .args(["exec", "-w", "/no/such/dir", "--", "true"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/dir"), "{}", stderr(&out));

    let out = toolbox()
        .args(["exec", "-e", "[1]", "--", "true"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid -e environment"),
        "{}",
        stderr(&out)
    );

    let out = toolbox().args(["exec", "-e", "{}"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_user_fails_naming_it() {
    let out = toolbox()
        .args(["exec", "-u", "no-such-user-xyz", "--", "true"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("\"no-such-user-xyz\" not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn user_switch_as_root_and_refusal_when_not_root() {
    let me = nix::unistd::geteuid().as_raw().to_string();
    // the same user is always fine
    let out = toolbox()
        .args(["exec", "-u", &me, "--", "/bin/sh", "-c", "id -u"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), me);

    if is_root() {
        // a copy the unprivileged user can execute (the build dir may be under /root)
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(tmp.path(), PermissionsExt::from_mode(0o755)).expect("chmod");
        let bin = tmp.path().join("agola-toolbox");
        std::fs::copy(env!("CARGO_BIN_EXE_agola-toolbox"), &bin).expect("copy");
        let bin = bin.to_str().expect("utf-8");
        let out = toolbox()
            .args([
                "exec",
                "-u",
                "4242:4343",
                "--",
                "/bin/sh",
                "-c",
                "id -u; id -g; id -G",
            ])
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "4242\n4343\n4343\n");
        // now not root: a nested exec to another user must fail clearly
        let out = toolbox()
            .args([
                "exec", "-u", "4242", "--", bin, "exec", "-u", "4343", "--", "true",
            ])
            .output()
            .expect("run");
        assert!(!out.status.success());
        assert!(stderr(&out).contains("not root"), "{}", stderr(&out));
    } else {
        let out = toolbox()
            .args(["exec", "-u", "4343", "--", "true"])
            .output()
            .expect("run");
        assert!(!out.status.success());
        assert!(stderr(&out).contains("not root"), "{}", stderr(&out));
    }
}

#[test]
fn named_user_gets_its_home() {
    if !is_root() {
        return;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let Some(entry) = agola_toolbox::user::parse_passwd(&passwd)
        .into_iter()
        .find(|p| p.name == "nobody")
    else {
        return;
    };
    let out = toolbox()
        .env("HOME", "/root")
        .args([
            "exec",
            "-u",
            "nobody",
            "-w",
            "/",
            "--",
            "/bin/sh",
            "-c",
            "id -u; echo $HOME",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n{}\n", entry.uid, entry.home));
}
