//! Runs the conformance suite against the embedded store and against the real etcd that
//! `scripts/test.sh` starts (`AGOLA_TEST_ETCD_ENDPOINTS`; compaction uses its own etcd,
//! `AGOLA_TEST_ETCD_COMPACT_ENDPOINTS`, because compaction is store-wide). A missing variable
//! fails the test: it never passes by skipping.

use std::sync::Arc;

use agola_kv::conformance as suite;
use agola_kv::embedded::EmbeddedKv;
use agola_kv::etcd::EtcdKv;
use agola_kv::{Kv, Prefixed};

fn env(var: &str) -> Vec<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v.split(',').map(str::to_owned).collect(),
        _ => panic!("{var} is not set: run the suite through scripts/test.sh, which starts etcd"),
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("test/{prefix}-{}-{nanos}/", std::process::id())
}

async fn embedded() -> (Arc<dyn Kv>, Arc<dyn Kv>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = EmbeddedKv::open(dir.path().join("kv.redb"))
        .await
        .expect("open embedded kv");
    (Arc::new(kv.clone()), Arc::new(kv), dir)
}

async fn etcd_pair(var: &str, name: &str) -> (Arc<dyn Kv>, Arc<dyn Kv>) {
    let endpoints = env(var);
    let prefix = unique(name);
    let a = EtcdKv::connect(&endpoints).await.expect("connect etcd");
    let b = EtcdKv::connect(&endpoints).await.expect("connect etcd");
    (
        Arc::new(Prefixed::new(Arc::new(a), prefix.clone())),
        Arc::new(Prefixed::new(Arc::new(b), prefix)),
    )
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (a, b, _dir) = embedded().await;
                    suite::$case(a, b).await;
                }
            )*
        }
        mod etcd_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let var = if stringify!($case) == "compaction_errors"
                        || stringify!($case) == "compactor_passes"
                    {
                        "AGOLA_TEST_ETCD_COMPACT_ENDPOINTS"
                    } else {
                        "AGOLA_TEST_ETCD_ENDPOINTS"
                    };
                    let (a, b) = etcd_pair(var, stringify!($case)).await;
                    suite::$case(a, b).await;
                }
            )*
        }
    };
}

conformance!(
    put_get_delete_and_revisions,
    ranges_prefixes_and_paging,
    txn_compares_and_cas_conflicts,
    watch_ordering_and_resumption,
    compaction_errors,
    compactor_passes,
    lease_expiry_deletes_keys,
    lock_exclusivity,
    change_group_tokens,
    sequences_order_and_epoch_change,
    bad_keys_are_rejected,
);

/// The embedded store on a prefix behaves like the bare store (the chroot used per service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_prefixed_namespace_is_isolated() {
    use agola_kv::KvExt;
    let (a, _b, _dir) = embedded().await;
    let svc1: Arc<dyn Kv> = Arc::new(Prefixed::new(a.clone(), "runservice/"));
    let svc2: Arc<dyn Kv> = Arc::new(Prefixed::new(a.clone(), "configstore/"));
    svc1.put("k", b"1".to_vec()).await.expect("put");
    svc2.put("k", b"2".to_vec()).await.expect("put");
    assert_eq!(svc1.get("k").await.expect("get").expect("k").value, b"1");
    assert_eq!(
        a.get("configstore/k").await.expect("get").expect("k").value,
        b"2"
    );
    let fresh: Arc<dyn Kv> = Arc::new(Prefixed::new(a, "suite/"));
    suite::txn_compares_and_cas_conflicts(fresh.clone(), fresh).await;
}

/// A second process (here: a second open) cannot open the same embedded store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_is_exclusive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kv.redb");
    let _first = EmbeddedKv::open(&path).await.expect("open");
    let err = EmbeddedKv::open(&path)
        .await
        .expect_err("second open must fail");
    assert!(err.to_string().contains("already open"), "{err}");
}

/// Committed writes survive a reopen (durability across restarts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_reopen() {
    use agola_kv::KvExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kv.redb");
    let rev = {
        let kv = EmbeddedKv::open(&path).await.expect("open");
        kv.put("a", b"1".to_vec()).await.expect("put")
    };
    // The reaper task holds only a weak handle, so the file is released once `kv` is dropped.
    let kv = agola_kv::conformance::reopen(&path).await;
    let a = kv.get("a").await.expect("get").expect("present");
    assert_eq!((a.value.as_slice(), a.mod_revision), (&b"1"[..], rev));
    assert_eq!(kv.current_revision().await.expect("rev"), rev);
}
