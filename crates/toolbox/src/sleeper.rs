//! `sleeper`: PID 1 of the main task container. It does nothing but wait, reaping every zombie
//! that is re-parented to it (processes left behind by step commands), and exits cleanly on
//! SIGTERM or SIGINT so that stopping the container is immediate.
//!
//! Signals are blocked and taken synchronously with `sigwait`: no handler, no unsafe code, and a
//! blocked signal is delivered even to a namespace's PID 1 (which drops signals it has no
//! handler for). When not PID 1 (tests, the local driver) it marks itself a child subreaper so
//! orphaned descendants still come to it.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::{Error, Result};

/// Reaps every child that has exited, without blocking. Returns their pids and statuses.
pub fn reap_children() -> Vec<(Pid, WaitStatus)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(status) => match status.pid() {
                Some(pid) => reaped.push((pid, status)),
                None => break,
            },
            Err(Errno::EINTR) => continue,
            // ECHILD: no children at all
            Err(_) => break,
        }
    }
    reaped
}

/// The signals the sleeper waits for.
fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

/// Runs until SIGTERM or SIGINT, reaping children on every SIGCHLD.
pub fn run() -> Result<()> {
    let set = signal_set();
    set.thread_block()
        .map_err(|e| Error::io("cannot block signals", e))?;
    if std::process::id() != 1 {
        // best effort: without it only direct children are reaped
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    // children that exited before the signals were blocked
    reap_children();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                reap_children();
            }
            Ok(Signal::SIGTERM | Signal::SIGINT) => {
                reap_children();
                return Ok(());
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::io("cannot wait for signals", e)),
        }
    }
}
