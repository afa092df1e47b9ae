//! The conformance suite every [`Kv`] backend must pass. Each case takes two clients of one
//! fresh, empty namespace (two connections for etcd, two handles for the embedded store) and
//! panics on a violation. `tests/conformance.rs` runs every case against both backends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::changegroup::{ChangeGroups, group_name};
use crate::sequence::{Sequence, increment};
use crate::{
    Compare, CompareOp, Error, EventKind, KeyRange, Kv, KvExt, Op, OpResponse, RangeRequest, Txn,
    lock,
};

/// Polls `check` every 20 ms until true, panicking after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn put_get_delete_and_revisions(kv: Arc<dyn Kv>, _b: Arc<dyn Kv>) {
    assert_eq!(kv.get("a").await.expect("get"), None);
    let r1 = kv.put("a", b"1".to_vec()).await.expect("put");
    let a = kv.get("a").await.expect("get").expect("present");
    assert_eq!(a.value, b"1");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r1, r1, 1));
    let r2 = kv.put("a", b"2".to_vec()).await.expect("put");
    assert!(r2 > r1);
    let a = kv.get("a").await.expect("get").expect("present");
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r1, r2, 2));
    assert!(kv.current_revision().await.expect("rev") >= r2);
    assert!(kv.delete("a").await.expect("delete"));
    assert!(!kv.delete("a").await.expect("delete again"));
    assert_eq!(kv.get("a").await.expect("get"), None);
    // Re-created keys start a new life.
    let r3 = kv.put("a", b"3".to_vec()).await.expect("put");
    let a = kv.get("a").await.expect("get").expect("present");
    assert_eq!((a.create_revision, a.version), (r3, 1));
}

pub async fn ranges_prefixes_and_paging(kv: Arc<dyn Kv>, _b: Arc<dyn Kv>) {
    for k in ["p/a", "p/b", "p/c", "p/d", "p0", "q/a", "p/b/x"] {
        kv.put(k, k.as_bytes().to_vec()).await.expect("put");
    }
    let all = kv.range(RangeRequest::prefix("p/")).await.expect("range");
    let keys: Vec<_> = all.kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["p/a", "p/b", "p/b/x", "p/c", "p/d"]);
    assert!(!all.more);
    let page = kv
        .range(RangeRequest::prefix("p/").with_limit(2))
        .await
        .expect("range");
    assert_eq!(page.kvs.len(), 2);
    assert!(page.more);
    let between = kv
        .range(RangeRequest::between("p/b", "p/d"))
        .await
        .expect("range");
    let keys: Vec<_> = between.kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["p/b", "p/b/x", "p/c"]);
    let paged = kv.get_prefix("p/", 2).await.expect("paged");
    assert_eq!(paged.kvs.len(), 5);
    // Reads pinned at an older revision see the older state (used for paging consistency).
    let before = kv.current_revision().await.expect("rev");
    kv.put("p/a", b"changed".to_vec()).await.expect("put");
    kv.delete("p/c").await.expect("delete");
    kv.put("p/e", b"new".to_vec()).await.expect("put");
    let old = kv
        .range(RangeRequest::prefix("p/").at_revision(before))
        .await
        .expect("range at revision");
    let keys: Vec<_> = old.kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["p/a", "p/b", "p/b/x", "p/c", "p/d"]);
    assert_eq!(old.kvs[0].value, b"p/a");
    let deleted = kv
        .txn(Txn::new().and_then([Op::delete_prefix("p/")]))
        .await
        .expect("delete prefix");
    assert_eq!(deleted.responses, vec![OpResponse::Delete { deleted: 5 }]);
    assert_eq!(
        kv.get("p0").await.expect("get").map(|k| k.value),
        Some(b"p0".to_vec())
    );
}

pub async fn txn_compares_and_cas_conflicts(a: Arc<dyn Kv>, b: Arc<dyn Kv>) {
    let r = a.put("k", b"v".to_vec()).await.expect("put");
    // then branch
    let resp = a
        .txn(
            Txn::new()
                .when([
                    Compare::mod_revision("k", CompareOp::Equal, r),
                    Compare::value("k", CompareOp::Equal, b"v".to_vec()),
                    Compare::version("k", CompareOp::Equal, 1),
                    Compare::absent("missing"),
                ])
                .and_then([Op::put("k", b"w".to_vec()), Op::get("k")])
                .or_else([Op::get("k")]),
        )
        .await
        .expect("txn");
    assert!(resp.succeeded);
    assert_eq!(resp.responses.len(), 2);
    // stale mod revision → else branch, nothing written
    let resp = b
        .txn(
            Txn::new()
                .when([Compare::mod_revision("k", CompareOp::Equal, r)])
                .and_then([Op::put("k", b"lost".to_vec())])
                .or_else([Op::get("k")]),
        )
        .await
        .expect("txn");
    assert!(!resp.succeeded);
    let seen = resp.range(0).expect("range answer");
    assert_eq!(seen.kvs[0].value, b"w");
    assert_eq!(b.get("k").await.expect("get").expect("k").value, b"w");
    // A value compare on a missing key never matches.
    let resp = a
        .txn(Txn::new().when([Compare::value("nope", CompareOp::NotEqual, b"x".to_vec())]))
        .await
        .expect("txn");
    assert!(!resp.succeeded);
    // Greater / Less
    let resp = a
        .txn(Txn::new().when([Compare::mod_revision("k", CompareOp::Greater, r)]))
        .await
        .expect("txn");
    assert!(resp.succeeded);
    // 20 concurrent create-if-absent from two clients: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let kv = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            kv.txn(
                Txn::new()
                    .when([Compare::absent("once")])
                    .and_then([Op::put("once", format!("{i}").into_bytes())]),
            )
            .await
            .expect("txn")
            .succeeded
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.expect("join") {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    // A failed txn does not bump the revision.
    let before = a.current_revision().await.expect("rev");
    let resp = a
        .txn(
            Txn::new()
                .when([Compare::absent("once")])
                .and_then([Op::put("once", b"x".to_vec())]),
        )
        .await
        .expect("txn");
    assert!(!resp.succeeded);
    assert_eq!(a.current_revision().await.expect("rev"), before);
}

pub async fn watch_ordering_and_resumption(a: Arc<dyn Kv>, b: Arc<dyn Kv>) {
    let r1 = a.put("w/1", b"a".to_vec()).await.expect("put");
    let r2 = a.put("w/2", b"b".to_vec()).await.expect("put");
    a.put("other", b"x".to_vec()).await.expect("put");
    let r3 = a
        .txn(Txn::new().and_then([Op::put("w/3", b"c".to_vec()), Op::delete("w/1")]))
        .await
        .expect("txn")
        .revision;
    let collect = |stream: crate::WatchStream, n: usize| async move {
        let mut out = Vec::new();
        let mut stream = stream;
        while out.len() < n {
            let resp = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("watch event in time")
                .expect("stream open")
                .expect("watch ok");
            out.extend(resp.events);
        }
        out
    };
    // Replay from the first revision: every event, in order.
    let events = collect(
        b.watch(KeyRange::Prefix("w/".into()), r1)
            .await
            .expect("watch"),
        4,
    )
    .await;
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.kv.key.clone(), e.kv.mod_revision))
        .collect();
    assert_eq!(
        seen,
        vec![
            (EventKind::Put, "w/1".to_owned(), r1),
            (EventKind::Put, "w/2".to_owned(), r2),
            (EventKind::Put, "w/3".to_owned(), r3),
            (EventKind::Delete, "w/1".to_owned(), r3),
        ]
    );
    // Resume from the middle.
    let events = collect(
        b.watch(KeyRange::Prefix("w/".into()), r2 + 1)
            .await
            .expect("watch"),
        2,
    )
    .await;
    assert!(events.iter().all(|e| e.kv.mod_revision == r3));
    // Live events from now on, from another client's writes.
    let live = b
        .watch(KeyRange::Prefix("w/".into()), 0)
        .await
        .expect("watch");
    let r4 = a.put("w/4", b"d".to_vec()).await.expect("put");
    let events = collect(live, 1).await;
    assert_eq!(events[0].kv.key, "w/4");
    assert_eq!(events[0].kv.mod_revision, r4);
    assert_eq!(events[0].kv.value, b"d");
}

/// Compacts the whole store: run it against a store no other test shares.
pub async fn compaction_errors(kv: Arc<dyn Kv>, _b: Arc<dyn Kv>) {
    let r1 = kv.put("c/1", b"1".to_vec()).await.expect("put");
    let r2 = kv.put("c/2", b"2".to_vec()).await.expect("put");
    kv.compact(r2).await.expect("compact");
    kv.compact(r2).await.expect("compacting again is a no-op");
    match kv.watch(KeyRange::Prefix("c/".into()), r1).await {
        Err(Error::Compacted { .. }) => {}
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(mut s) => match s.next().await {
            Some(Err(Error::Compacted { .. })) => {}
            other => panic!("expected Compacted, got {other:?}"),
        },
    }
    match kv.range(RangeRequest::prefix("c/").at_revision(r1)).await {
        Err(Error::Compacted { .. }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    // From the compacted revision on, history is still there.
    let mut s = kv
        .watch(KeyRange::Prefix("c/".into()), r2)
        .await
        .expect("watch at compact revision");
    let resp = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("ok");
    assert_eq!(resp.events[0].kv.key, "c/2");
    let future = kv.current_revision().await.expect("rev") + 1000;
    assert!(matches!(
        kv.compact(future).await,
        Err(Error::FutureRevision { .. })
    ));
}

/// Compactor passes: the first pass only records, the next compacts to the first's revision,
/// a concurrent pass from another client loses. Compacts the whole store (own store only).
pub async fn compactor_passes(a: Arc<dyn Kv>, b: Arc<dyn Kv>) {
    use crate::compactor::compact_pass;
    let r1 = a.put("x/1", b"1".to_vec()).await.expect("put");
    assert_eq!(
        compact_pass(a.as_ref(), "compactkey").await.expect("pass"),
        None
    );
    let r2 = a.put("x/2", b"2".to_vec()).await.expect("put");
    let compacted = compact_pass(b.as_ref(), "compactkey")
        .await
        .expect("pass")
        .expect("second pass compacts");
    assert!(
        compacted >= r1 && compacted < r2,
        "{compacted} in [{r1}, {r2})"
    );
    // History since the previous pass is kept.
    let mut s = a
        .watch(KeyRange::Prefix("x/".into()), r2)
        .await
        .expect("history since the previous pass is kept");
    let resp = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("ok");
    assert_eq!(resp.events[0].kv.key, "x/2");
}

pub async fn lease_expiry_deletes_keys(a: Arc<dyn Kv>, b: Arc<dyn Kv>) {
    let lease = a.grant(Duration::from_secs(1)).await.expect("grant");
    let mut watch = b
        .watch(KeyRange::Prefix("l/".into()), 0)
        .await
        .expect("watch");
    a.txn(Txn::new().and_then([Op::put_with_lease("l/k", b"v".to_vec(), lease.id)]))
        .await
        .expect("put with lease");
    assert_eq!(
        a.get("l/k").await.expect("get").expect("present").lease,
        lease.id
    );
    // Kept alive, it survives.
    a.keep_alive(lease.id).await.expect("keep alive");
    eventually(
        "the key to be deleted at lease expiry",
        Duration::from_secs(20),
        || {
            let a = a.clone();
            async move { a.get("l/k").await.expect("get").is_none() }
        },
    )
    .await;
    let mut saw_delete = false;
    while !saw_delete {
        let resp = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("watch in time")
            .expect("open")
            .expect("ok");
        saw_delete = resp
            .events
            .iter()
            .any(|e| e.kind == EventKind::Delete && e.kv.key == "l/k");
    }
    let gone = a.keep_alive(lease.id).await;
    assert!(matches!(gone, Err(Error::LeaseNotFound(_))), "{gone:?}");
    // Revoke deletes attached keys at once.
    let lease = a.grant(Duration::from_secs(30)).await.expect("grant");
    a.txn(Txn::new().and_then([Op::put_with_lease("l/r", b"v".to_vec(), lease.id)]))
        .await
        .expect("put");
    a.revoke(lease.id).await.expect("revoke");
    assert!(a.get("l/r").await.expect("get").is_none());
    // Putting with a dead lease fails.
    assert!(matches!(
        a.txn(Txn::new().and_then([Op::put_with_lease("l/x", b"v".to_vec(), lease.id)]))
            .await,
        Err(Error::LeaseNotFound(_))
    ));
}

pub async fn lock_exclusivity(a: Arc<dyn Kv>, b: Arc<dyn Kv>) {
    let held = lock::try_lock(a.clone(), "", "job")
        .await
        .expect("try lock")
        .expect("free lock is taken");
    assert!(
        lock::try_lock(b.clone(), "", "job")
            .await
            .expect("try lock")
            .is_none(),
        "a held lock must not be taken by another client"
    );
    let other = lock::try_lock(b.clone(), "", "other-job")
        .await
        .expect("try lock")
        .expect("another name is free");
    assert!(!held.is_lost());
    held.unlock().await.expect("unlock");
    let again = lock::try_lock(b.clone(), "", "job")
        .await
        .expect("try lock")
        .expect("released lock can be taken");
    again.unlock().await.expect("unlock");
    other.unlock().await.expect("unlock");
}

pub async fn change_group_tokens(a: Arc<dyn Kv>, b: Arc<dyn Kv>) {
    let cg = ChangeGroups::new("cg/", 100);
    cg.init(a.as_ref()).await.expect("init");
    let names = vec![
        group_name("projectpath", "org/x/p"),
        group_name("userid", "u1"),
    ];
    let t1 = cg.token(a.as_ref(), &names).await.expect("token");
    assert!(t1.change_groups_revisions.values().all(|r| *r == 0));
    let t2 = cg
        .guarded_write(a.as_ref(), &t1, vec![Op::put("data/p", b"1".to_vec())])
        .await
        .expect("fresh token writes");
    // The stale token is rejected, from either client, and writes nothing.
    let err = cg
        .guarded_write(b.as_ref(), &t1, vec![Op::put("data/p", b"stale".to_vec())])
        .await
        .expect_err("stale token");
    assert!(matches!(err, Error::Concurrency(_)), "{err}");
    assert_eq!(b.get("data/p").await.expect("get").expect("p").value, b"1");
    // The returned token is fresh.
    cg.guarded_write(b.as_ref(), &t2, vec![Op::put("data/p", b"2".to_vec())])
        .await
        .expect("fresh token writes");
    // An unrelated group does not conflict.
    let other = vec![group_name("userid", "u2")];
    let t3 = cg.token(b.as_ref(), &other).await.expect("token");
    cg.guarded_write(a.as_ref(), &t3, vec![Op::put("data/u2", b"x".to_vec())])
        .await
        .expect("unrelated group");
    // A token older than the window is rejected after compaction even though its groups
    // look untouched (they may have been deleted by the compaction).
    let old = cg
        .token(a.as_ref(), &[group_name("userid", "u3")])
        .await
        .expect("token");
    let small = ChangeGroups::new("cg/", 2);
    for i in 0..4 {
        a.put("filler", vec![i]).await.expect("put");
    }
    small.compact(a.as_ref()).await.expect("compact groups");
    let err = small
        .guarded_write(a.as_ref(), &old, vec![Op::put("data/u3", b"x".to_vec())])
        .await
        .expect_err("token outside the window");
    assert!(matches!(err, Error::Concurrency(_)), "{err}");
}

pub async fn sequences_order_and_epoch_change(a: Arc<dyn Kv>, b: Arc<dyn Kv>) {
    let mut last: Option<Sequence> = None;
    for _ in 0..5 {
        let s = increment(a.as_ref(), "seq/run").await.expect("increment");
        if let Some(prev) = last {
            assert!(s > prev);
            assert!(s.to_string() > prev.to_string());
        }
        last = Some(s);
    }
    // Concurrent increments from two clients are all distinct.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let kv = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            increment(kv.as_ref(), "seq/run").await.expect("increment")
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tasks {
        assert!(seen.insert(t.await.expect("join")), "duplicate sequence");
    }
    // A wiped store starts a new epoch, which readers use to detect the reset.
    let before = increment(a.as_ref(), "seq/run").await.expect("increment");
    a.txn(Txn::new().and_then([Op::delete_prefix("seq/")]))
        .await
        .expect("wipe");
    eventually(
        "the clock to pass the old epoch",
        Duration::from_secs(3),
        || async {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() > before.epoch)
                .unwrap_or(false)
        },
    )
    .await;
    let after = increment(b.as_ref(), "seq/run").await.expect("increment");
    assert!(after.epoch > before.epoch);
    assert_eq!(after.counter, 1);
    assert!(after > before);
}

pub async fn bad_keys_are_rejected(kv: Arc<dyn Kv>, _b: Arc<dyn Kv>) {
    for bad in ["", "a/../b", "x\0y"] {
        assert!(
            matches!(
                kv.put(bad, b"v".to_vec()).await,
                Err(Error::InvalidKey { .. })
            ),
            "{bad:?}"
        );
        assert!(matches!(kv.get(bad).await, Err(Error::InvalidKey { .. })));
    }
    let long = "k".repeat(crate::MAX_KEY_LEN + 1);
    assert!(matches!(
        kv.put(&long, Vec::new()).await,
        Err(Error::InvalidKey { .. })
    ));
    let big = vec![0u8; crate::MAX_VALUE_LEN + 1];
    assert!(matches!(
        kv.put("big", big).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert!(matches!(
        kv.grant(Duration::ZERO).await,
        Err(Error::InvalidArgument(_))
    ));
    // Nothing was stored.
    assert!(kv.get("big").await.expect("get").is_none());
}

/// Opens an embedded store, retrying briefly while a just-dropped handle releases the file.
pub async fn reopen(path: &std::path::Path) -> crate::embedded::EmbeddedKv {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match crate::embedded::EmbeddedKv::open(path).await {
            Ok(kv) => return kv,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot reopen {}: {e}",
                    path.display()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
