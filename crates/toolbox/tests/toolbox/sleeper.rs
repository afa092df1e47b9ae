//! `sleeper`: reaps zombies and exits cleanly on SIGTERM/SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::toolbox;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Polls until `cond` holds; panics after the timeout.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is ready to take `sig` synchronously: the signal is blocked, or the process
/// sits in `sigtimedwait` (which unblocks the waited signals while it waits, so /proc then shows
/// an empty SigBlk).
fn takes_signal(pid: u32, sig: Signal) -> bool {
    let blocked = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << (sig as i32 - 1)) != 0);
    let waiting = std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .is_ok_and(|w| w.contains("sigtimedwait"));
    // rt_sigtimedwait: 128 on x86_64, 137 on aarch64 (for kernels hiding wchan)
    let in_syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| {
        let nr = s.split_whitespace().next().unwrap_or("");
        (cfg!(target_arch = "x86_64") && nr == "128")
            || (cfg!(target_arch = "aarch64") && nr == "137")
    });
    blocked || waiting || in_syscall
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(start.elapsed() < TIMEOUT, "sleeper did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn exits_cleanly_on_sigterm_and_sigint() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut child = toolbox().arg("sleeper").spawn().expect("spawn");
        let pid = child.id();
        wait_until("signals blocked", || takes_signal(pid, sig));
        // still running: it sleeps, it does not return on its own
        assert!(child.try_wait().expect("try_wait").is_none());
        kill(Pid::from_raw(pid as i32), sig).expect("kill");
        let status = wait_exit(&mut child);
        assert_eq!(status.code(), Some(0), "{sig:?}: clean exit, not killed");
    }
}

/// State letter of `pid` from /proc, or None when the process is gone (reaped).
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

#[test]
fn reaps_zombie_children() {
    let bin = env!("CARGO_BIN_EXE_agola-toolbox");
    // the shell starts two children then becomes the sleeper (same pid): one exits at once
    // (possibly before the sleeper runs), one a bit later (reaped on SIGCHLD)
    let script = format!("true & echo $!; sleep 0.3 & echo $!; exec {bin} sleeper");
    let mut child = Command::new("/bin/sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let pids: Vec<i32> = (0..2)
        .map(|_| {
            lines
                .next()
                .expect("a pid line")
                .expect("read")
                .trim()
                .parse()
                .expect("pid")
        })
        .collect();
    let sleeper = child.id();
    wait_until("sleeper running", || takes_signal(sleeper, Signal::SIGCHLD));
    for pid in pids {
        wait_until(&format!("child {pid} reaped"), || proc_state(pid).is_none());
    }
    // the sleeper is still alive after reaping
    assert!(child.try_wait().expect("try_wait").is_none());
    kill(Pid::from_raw(sleeper as i32), Signal::SIGTERM).expect("kill");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

#[test]
fn rejects_arguments() {
    let out = toolbox().args(["sleeper", "extra"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}
