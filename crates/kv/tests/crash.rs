//! Kill -9 during writes never loses an acknowledged txn nor half-applies one (embedded store).
//!
//! The writer runs in a child process (this test binary re-executed on `crash_writer` with
//! `AGOLA_KV_CRASH_STORE` set): each txn puts `a` and `b` to the same counter and prints
//! `acked N` once it returned. The parent kills it with SIGKILL at various points, reopens the
//! store and checks `a == b >= last acked`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use agola_kv::embedded::EmbeddedKv;
use agola_kv::{Kv, KvExt, Op, Txn};

const STORE_VAR: &str = "AGOLA_KV_CRASH_STORE";

async fn write_loop(kv: &EmbeddedKv, start: u64, count: Option<u64>, print: bool) -> u64 {
    let mut i = start;
    loop {
        i += 1;
        kv.txn(Txn::new().and_then([
            Op::put("a", i.to_string().into_bytes()),
            Op::put("b", i.to_string().into_bytes()),
        ]))
        .await
        .expect("txn");
        if print {
            println!("acked {i}");
        }
        if count.is_some_and(|c| i >= start + c) {
            return i;
        }
    }
}

async fn read_counter(kv: &EmbeddedKv) -> u64 {
    let a = kv.get("a").await.expect("get a");
    let b = kv.get("b").await.expect("get b");
    match (a, b) {
        (None, None) => 0,
        (Some(a), Some(b)) => {
            assert_eq!(a.value, b.value, "half-applied txn: a and b differ");
            assert_eq!(
                a.mod_revision, b.mod_revision,
                "a and b written by different txns"
            );
            String::from_utf8(a.value)
                .expect("utf8")
                .parse()
                .expect("number")
        }
        (a, b) => panic!("half-applied txn: a={a:?} b={b:?}"),
    }
}

/// Child entry when `AGOLA_KV_CRASH_STORE` is set; otherwise a short in-process check of the
/// same invariant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_writer() {
    match std::env::var(STORE_VAR) {
        Ok(path) => {
            let kv = EmbeddedKv::open(&path).await.expect("open");
            let start = read_counter(&kv).await;
            write_loop(&kv, start, None, true).await;
        }
        Err(_) => {
            let dir = tempfile::tempdir().expect("tempdir");
            let kv = EmbeddedKv::open(dir.path().join("kv.redb"))
                .await
                .expect("open");
            let last = write_loop(&kv, 0, Some(50), false).await;
            assert_eq!(read_counter(&kv).await, last);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_txn_and_applies_none_halfway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("kv.redb");
    let exe = std::env::current_exe().expect("test binary path");
    let mut last_acked = 0u64;
    for round in 0..4u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(STORE_VAR, &store)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let target = last_acked + 10 + round * 17;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read child output");
            if let Some(n) = line.strip_prefix("acked ") {
                last_acked = n.trim().parse().expect("counter");
                if last_acked >= target {
                    break;
                }
            }
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        let kv = agola_kv::conformance::reopen(&store).await;
        let stored = read_counter(&kv).await;
        assert!(
            stored >= last_acked,
            "round {round}: acknowledged {last_acked} but only {stored} survived"
        );
        last_acked = stored;
    }
    assert!(last_acked >= 10);
}
