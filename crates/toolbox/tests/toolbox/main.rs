//! Integration tests: run the built `agola-toolbox` binary as the executor does.

mod archive;
mod exec;
mod files;
mod malicious;
mod sleeper;
mod template;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A command running the toolbox binary under test.
pub fn toolbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agola-toolbox"))
}

/// Runs `cmd` feeding `stdin`, returning its output.
pub fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn toolbox");
    {
        let mut input = child.stdin.take().expect("stdin");
        // a command may exit before reading everything (errors): ignore broken pipes
        let _ = input.write_all(stdin);
    }
    child.wait_with_output().expect("wait toolbox")
}

/// Runs `toolbox <args>` with `stdin`.
pub fn toolbox_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = toolbox();
    cmd.args(args);
    run_with_stdin(cmd, stdin)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, showing stderr otherwise.
pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "toolbox failed: {:?}\n{}",
        o.status,
        stderr(o)
    );
}

/// Extracts `tar` into `dest` with `unarchive`.
pub fn unarchive(tar: &[u8], dest: &Path, overwrite: bool) -> Output {
    let dest = dest.to_str().expect("utf-8 path");
    let mut args = vec!["unarchive", "--destdir", dest];
    if overwrite {
        args.push("--overwrite");
    }
    toolbox_stdin(&args, tar)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
