//! `template` through the binary.

use std::fs;

use super::{ok, run_with_stdin, stderr, stdout, toolbox};

#[test]
fn renders_key_from_stdin() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(tmp.path().join("Cargo.lock"), "abc").expect("write");
    let mut cmd = toolbox();
    cmd.arg("template")
        .current_dir(tmp.path())
        .env("BRANCH", "main");
    let out = run_with_stdin(
        cmd,
        br#"cargo-{{ env "BRANCH" }}-{{ os }}-{{ md5sum "Cargo.lock" }}"#,
    );
    ok(&out);
    assert_eq!(
        stdout(&out),
        "cargo-main-linux-900150983cd24fb0d6963f7d28e17f72"
    );
}

#[test]
fn errors_name_the_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (src, expect) in [
        (r#"{{ nope "x" }}"#, "unknown function \"nope\""),
        (
            r#"{{ sha256sum "missing.txt" }}"#,
            "sha256sum \"missing.txt\"",
        ),
        ("{{ year", "unclosed action"),
    ] {
        let mut cmd = toolbox();
        cmd.arg("template").current_dir(tmp.path());
        let out = run_with_stdin(cmd, src.as_bytes());
        assert!(!out.status.success(), "{src}");
        assert!(stderr(&out).contains(expect), "{src}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}
