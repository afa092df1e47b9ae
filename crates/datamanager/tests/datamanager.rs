//! Datamanager scenarios (spec 90 §4), each run on the embedded KV with posix storage and on
//! the real etcd with the real S3 server that `scripts/test.sh` starts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agola_common::Shutdown;
use agola_common::shutdown::ShutdownTrigger;
use agola_datamanager::{Action, Config, DataManager, Error, group_name};
use agola_kv::embedded::EmbeddedKv;
use agola_kv::etcd::EtcdKv;
use agola_kv::{Kv, KvExt, Op, Prefixed, Txn};
use agola_objectstorage::{ObjectStorage, Posix, S3, S3Config};
use futures::StreamExt;

fn env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{var} is not set: run the suite through scripts/test.sh"),
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// A fresh KV namespace and object storage prefix.
struct Env {
    kv: Arc<dyn Kv>,
    ost: Arc<dyn ObjectStorage>,
    _dir: Option<tempfile::TempDir>,
    stops: Vec<ShutdownTrigger>,
}

impl Env {
    async fn embedded() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = EmbeddedKv::open(dir.path().join("kv.redb"))
            .await
            .expect("kv");
        let ost = Posix::new(dir.path().join("ost")).expect("posix");
        Env {
            kv: Arc::new(Prefixed::new(Arc::new(kv), "svc/")),
            ost: Arc::new(ost),
            _dir: Some(dir),
            stops: Vec::new(),
        }
    }

    async fn etcd_s3() -> Env {
        let endpoints: Vec<String> = env("AGOLA_TEST_ETCD_ENDPOINTS")
            .split(',')
            .map(str::to_owned)
            .collect();
        let kv = EtcdKv::connect(&endpoints).await.expect("etcd");
        let ost = S3::new(S3Config {
            endpoint: env("AGOLA_TEST_S3_ENDPOINT"),
            bucket: unique("dm").to_lowercase(),
            access_key: env("AGOLA_TEST_S3_ACCESS_KEY"),
            secret_access_key: env("AGOLA_TEST_S3_SECRET_KEY"),
            region: "us-east-1".into(),
            path_style: true,
            ..S3Config::default()
        })
        .await
        .expect("s3");
        Env {
            kv: Arc::new(Prefixed::new(
                Arc::new(kv),
                format!("test/{}/", unique("dm")),
            )),
            ost: Arc::new(ost),
            _dir: None,
            stops: Vec::new(),
        }
    }

    fn config() -> Config {
        let mut c = Config::new("data");
        c.max_data_file_size = 200;
        c.min_checkpoint_wals = 1;
        c.kv_wals_keep = 3;
        c
    }

    async fn dm_with(&mut self, cfg: Config) -> DataManager {
        let dm = DataManager::new(cfg, self.kv.clone(), self.ost.clone());
        let (trigger, shutdown) = Shutdown::new();
        dm.init(shutdown).await.expect("init");
        self.stops.push(trigger);
        dm
    }

    async fn dm(&mut self) -> DataManager {
        self.dm_with(Env::config()).await
    }

    /// Loses every KV key of the namespace (new etcd cluster, lost data).
    async fn wipe_kv(&self) {
        self.kv
            .txn(Txn::new().and_then([
                Op::delete_prefix("datamanager/"),
                Op::delete_prefix("maintenance"),
            ]))
            .await
            .expect("wipe");
    }
}

fn put(t: &str, id: &str, v: &str) -> Action {
    Action::put(t, id, v.as_bytes().to_vec())
}

async fn read(dm: &DataManager, t: &str, id: &str) -> Option<String> {
    match dm.read(t, id, &[]).await {
        Ok((d, _)) => Some(String::from_utf8(d).expect("utf8")),
        Err(Error::NotExist { .. }) => None,
        Err(e) => panic!("read {t}/{id}: {e}"),
    }
}

async fn list(dm: &DataManager, t: &str) -> BTreeMap<String, String> {
    dm.list(t, &[])
        .await
        .expect("list")
        .0
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).expect("utf8")))
        .collect()
}

async fn sync_and_checkpoint(dm: &DataManager) {
    dm.sync().await.expect("sync");
    dm.checkpoint(true)
        .await
        .expect("checkpoint")
        .expect("lock free");
}

// ---- scenarios --------------------------------------------------------------------------

async fn recovery_after_kv_wipe(mut env: Env) {
    let dm = env.dm().await;
    for i in 0..5 {
        dm.write_wal(vec![put("user", &format!("u{i}"), &format!("v{i}"))], None)
            .await
            .expect("write");
    }
    sync_and_checkpoint(&dm).await;
    // Written after the checkpoint: only in WALs (synced to storage, not checkpointed).
    dm.write_wal(
        vec![put("user", "late", "x"), Action::delete("user", "u0")],
        None,
    )
    .await
    .expect("write");
    dm.sync().await.expect("sync");
    let before = env
        .kv
        .get("datamanager/walsdata")
        .await
        .expect("get")
        .expect("walsdata");
    let before: serde_json::Value = serde_json::from_slice(&before.value).expect("json");
    env.wipe_kv().await;
    let dm2 = env.dm().await;
    assert_eq!(read(&dm2, "user", "late").await.as_deref(), Some("x"));
    assert_eq!(read(&dm2, "user", "u0").await, None);
    assert_eq!(read(&dm2, "user", "u4").await.as_deref(), Some("v4"));
    let after = env
        .kv
        .get("datamanager/walsdata")
        .await
        .expect("get")
        .expect("walsdata");
    let after: serde_json::Value = serde_json::from_slice(&after.value).expect("json");
    let epoch = |v: &serde_json::Value| {
        v["last_committed_wal_sequence"]
            .as_str()
            .and_then(|s| s.split('-').next())
            .map(str::to_owned)
            .expect("sequence")
    };
    assert!(
        epoch(&after) > epoch(&before),
        "a new epoch after the reset"
    );
    // And it keeps working.
    dm2.write_wal(vec![put("user", "new", "y")], None)
        .await
        .expect("write");
    assert_eq!(read(&dm2, "user", "new").await.as_deref(), Some("y"));
}

async fn broken_wal_chain_is_detected(mut env: Env) {
    let dm = env.dm().await;
    sync_and_checkpoint(&dm).await;
    for i in 0..3 {
        dm.write_wal(vec![put("user", &format!("u{i}"), "v")], None)
            .await
            .expect("write");
    }
    dm.sync().await.expect("sync");
    // Lose the middle WAL's status file.
    let mut statuses = Vec::new();
    let mut l = env.ost.list("data/wals/status/", None, true);
    while let Some(o) = l.next().await {
        statuses.push(o.expect("list").path);
    }
    drop(l);
    let middle = &statuses[statuses.len() - 2];
    env.ost.delete(middle).await.expect("delete");
    env.wipe_kv().await;
    let dm2 = DataManager::new(Env::config(), env.kv.clone(), env.ost.clone());
    let err = dm2
        .init(Shutdown::never())
        .await
        .expect_err("gap must be detected");
    assert!(matches!(err, Error::Corrupted(_)), "{err}");
    assert!(err.to_string().contains("broken wal chain"), "{err}");
}

async fn change_group_tokens(mut env: Env) {
    let dm = env.dm().await;
    let g = vec![group_name("username", "alice")];
    let (_, t0) = dm.list("user", &g).await.expect("list");
    let t1 = dm
        .write_wal(vec![put("user", "alice", "1")], Some(&t0))
        .await
        .expect("fresh token");
    let err = dm
        .write_wal(vec![put("user", "alice", "2")], Some(&t0))
        .await
        .expect_err("stale token");
    assert!(matches!(err, Error::Concurrency(_)), "{err}");
    dm.write_wal(vec![put("user", "alice", "3")], Some(&t1))
        .await
        .expect("returned token is fresh");
    let (_, t2) = dm.read("user", "alice", &g).await.expect("read");
    dm.write_wal(vec![put("user", "alice", "4")], Some(&t2))
        .await
        .expect("token from a read");
    assert_eq!(read(&dm, "user", "alice").await.as_deref(), Some("4"));
    // The failed write left no orphan payload behind.
    let mut payloads = 0;
    let mut l = env.ost.list("data/wals/data/", None, true);
    while let Some(o) = l.next().await {
        o.expect("list");
        payloads += 1;
    }
    // 3 successful writes + the init's empty wal.
    assert_eq!(payloads, 4);
}

async fn concurrent_unrelated_writers_all_succeed(mut env: Env) {
    let dm = env.dm().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let dm = dm.clone();
        tasks.push(tokio::spawn(async move {
            let g = vec![group_name("userid", &format!("u{i}"))];
            let (_, token) = dm.list("none", &g).await.expect("token");
            dm.write_wal(vec![put("user", &format!("u{i:02}"), "v")], Some(&token))
                .await
        }));
    }
    for t in tasks {
        t.await
            .expect("join")
            .expect("unrelated writers never fail each other");
    }
    assert_eq!(list(&dm, "user").await.len(), 64);
    dm.sync().await.expect("sync");
    // Committed sequences strictly increase and the chain has no gap.
    let wals = env
        .kv
        .get_prefix("datamanager/wals/", 100)
        .await
        .expect("wals");
    let mut prev: Option<String> = None;
    for kv in &wals.kvs {
        let h: serde_json::Value = serde_json::from_slice(&kv.value).expect("json");
        let seq = h["wal_sequence"].as_str().expect("seq").to_owned();
        if let Some(p) = &prev {
            assert_eq!(h["previous_wal_sequence"].as_str(), Some(p.as_str()));
            assert!(seq > *p);
        }
        prev = Some(seq);
    }
}

/// Read-then-guarded-write increments from 20 writers: the token taken with the read must make
/// every lost race a Concurrency error, so no increment is lost (regression: a reader could
/// see a change group moved before the WAL that moved it).
async fn guarded_increments_lose_nothing(mut env: Env) {
    let dm = env.dm().await;
    let group = vec![group_name("counter", "root")];
    let mut handles = Vec::new();
    for _ in 0..20 {
        let dm = dm.clone();
        let group = group.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let (cur, token) = dm.get("counter", "root", &group).await.expect("get");
                let n: u64 = cur
                    .map(|b| String::from_utf8(b).expect("utf8").parse().expect("number"))
                    .unwrap_or(0);
                match dm
                    .write_wal(
                        vec![put("counter", "root", &(n + 1).to_string())],
                        Some(&token),
                    )
                    .await
                {
                    Ok(_) => return n + 1,
                    Err(Error::Concurrency(_)) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let mut seen = Vec::new();
    for h in handles {
        seen.push(h.await.expect("join"));
    }
    seen.sort();
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    assert_eq!(read(&dm, "counter", "root").await.as_deref(), Some("20"));
}

/// More pending WALs than one txn may carry (etcd refuses over 128 ops): sync splits them.
async fn sync_of_many_wals(mut env: Env) {
    let dm = env.dm().await;
    let mut handles = Vec::new();
    for i in 0..150 {
        let dm = dm.clone();
        handles.push(tokio::spawn(async move {
            dm.write_wal(vec![put("many", &format!("{i:03}"), "v")], None)
                .await
        }));
    }
    for h in handles {
        h.await.expect("join").expect("write");
    }
    dm.sync().await.expect("sync");
    let wals = env
        .kv
        .get_prefix("datamanager/wals/", 500)
        .await
        .expect("wals");
    assert!(wals.kvs.iter().all(|kv| {
        let h: serde_json::Value = serde_json::from_slice(&kv.value).expect("json");
        h["wal_status"] != "committed"
    }));
    dm.checkpoint(true).await.expect("checkpoint");
    assert_eq!(list(&dm, "many").await.len(), 150);
}

async fn wal_cleaner_keeps_n_checkpointed_only(mut env: Env) {
    let dm = env.dm().await;
    for i in 0..8 {
        dm.write_wal(vec![put("t", &format!("{i}"), "v")], None)
            .await
            .expect("write");
    }
    // Nothing checkpointed except init's: cleaning deletes at most that one.
    dm.sync().await.expect("sync");
    let n_before = env
        .kv
        .get_prefix("datamanager/wals/", 100)
        .await
        .expect("wals")
        .kvs
        .len();
    dm.clean_kv_wals().await.expect("clean");
    let n_mid = env
        .kv
        .get_prefix("datamanager/wals/", 100)
        .await
        .expect("wals")
        .kvs
        .len();
    assert!(n_before - n_mid <= 1, "only checkpointed wals may go");
    dm.checkpoint(true).await.expect("checkpoint");
    dm.clean_kv_wals().await.expect("clean");
    let left = env
        .kv
        .get_prefix("datamanager/wals/", 100)
        .await
        .expect("wals")
        .kvs
        .len();
    assert_eq!(left, 3, "keeps kv_wals_keep");
    for i in 0..8 {
        assert_eq!(read(&dm, "t", &format!("{i}")).await.as_deref(), Some("v"));
    }
    let mut one = Env::config();
    one.kv_wals_keep = 0;
    let dm1 = env.dm_with(one).await;
    dm1.clean_kv_wals().await.expect("clean");
    let left = env
        .kv
        .get_prefix("datamanager/wals/", 100)
        .await
        .expect("wals")
        .kvs
        .len();
    assert_eq!(left, 1, "always keeps one");
}

async fn reads_with_pending_deletes_across_checkpoint_and_clean(mut env: Env) {
    let dm = env.dm().await;
    dm.write_wal(vec![put("t", "a", "1"), put("t", "b", "1")], None)
        .await
        .expect("w");
    assert_eq!(read(&dm, "t", "a").await.as_deref(), Some("1"));
    sync_and_checkpoint(&dm).await;
    assert_eq!(read(&dm, "t", "a").await.as_deref(), Some("1"));
    // A delete not yet checkpointed reads NotExist (Agola served the stale entry).
    dm.write_wal(vec![Action::delete("t", "a")], None)
        .await
        .expect("w");
    assert_eq!(read(&dm, "t", "a").await, None);
    dm.sync().await.expect("sync");
    assert_eq!(read(&dm, "t", "a").await, None);
    sync_and_checkpoint(&dm).await;
    assert_eq!(read(&dm, "t", "a").await, None);
    // Drop the WALs from KV: the watcher forgets their puts and deletes; data files answer.
    for _ in 0..3 {
        dm.write_wal(vec![put("t", "c", "x")], None)
            .await
            .expect("w");
    }
    sync_and_checkpoint(&dm).await;
    dm.clean_kv_wals().await.expect("clean");
    assert_eq!(read(&dm, "t", "a").await, None);
    assert_eq!(read(&dm, "t", "b").await.as_deref(), Some("1"));
    assert_eq!(read(&dm, "t", "c").await.as_deref(), Some("x"));
    // Put after delete of the same id.
    dm.write_wal(vec![put("t", "a", "2")], None)
        .await
        .expect("w");
    assert_eq!(read(&dm, "t", "a").await.as_deref(), Some("2"));
    // A second instance sees the same.
    let other = env.dm().await;
    assert_eq!(read(&other, "t", "a").await.as_deref(), Some("2"));
    assert_eq!(read(&other, "t", "zzz").await, None);
    assert_eq!(read(&other, "nope", "a").await, None);
}

async fn checkpoint_split_and_merge_at_file_edges(mut env: Env) {
    let dm = env.dm().await;
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let mut apply = |actions: &[Action]| {
        for a in actions.iter().filter(|a| a.data_type == "r") {
            match a.action_type {
                agola_datamanager::ActionType::Put => {
                    model.insert(
                        a.id.clone(),
                        String::from_utf8(a.data.clone()).expect("utf8"),
                    );
                }
                agola_datamanager::ActionType::Delete => {
                    model.remove(&a.id);
                }
            }
        }
        model.clone()
    };
    // 30 entries of ~80 bytes with a 200-byte max: many files.
    let batch: Vec<Action> = (10..40)
        .map(|i| put("r", &format!("k{i}"), "valuevaluevalue"))
        .collect();
    let expected = apply(&batch);
    dm.write_wal(batch, None).await.expect("w");
    let first = {
        dm.sync().await.expect("sync");
        dm.checkpoint(true).await.expect("cp").expect("lock")
    };
    assert!(
        first.files_written > 3,
        "split into several files: {first:?}"
    );
    assert_eq!(list(&dm, "r").await, expected);
    // Edges: before the first, after the last, first and last entries of files, emptying.
    let batch = vec![
        put("r", "a00", "before-first"),
        put("r", "z99", "after-last"),
        Action::delete("r", "k10"),
        put("r", "k39", "changed-last"),
        put("r", "k20", "changed-middle"),
        put("other", "x", "another type"),
    ];
    let expected = apply(&batch);
    dm.write_wal(batch, None).await.expect("w");
    dm.sync().await.expect("sync");
    let second = dm.checkpoint(true).await.expect("cp").expect("lock");
    assert!(
        second.files_reused > 0,
        "untouched files reused: {second:?}"
    );
    assert!(second.files_written < first.files_written + 4, "{second:?}");
    assert_eq!(list(&dm, "r").await, expected);
    for (k, v) in &expected {
        assert_eq!(read(&dm, "r", k).await.as_deref(), Some(v.as_str()), "{k}");
    }
    assert_eq!(
        read(&dm, "other", "x").await.as_deref(),
        Some("another type")
    );
    // Empty a whole range: files disappear, the rest stays readable through per-file offsets.
    let batch: Vec<Action> = (10..30)
        .map(|i| Action::delete("r", format!("k{i}")))
        .collect();
    let expected = apply(&batch);
    dm.write_wal(batch, None).await.expect("w");
    sync_and_checkpoint(&dm).await;
    assert_eq!(list(&dm, "r").await, expected);
    for (k, v) in &expected {
        assert_eq!(read(&dm, "r", k).await.as_deref(), Some(v.as_str()), "{k}");
    }
    assert_eq!(read(&dm, "r", "k15").await, None);
    // Delete and put again the same id in one checkpoint.
    dm.write_wal(vec![Action::delete("r", "k35")], None)
        .await
        .expect("w");
    dm.write_wal(vec![put("r", "k35", "again")], None)
        .await
        .expect("w");
    sync_and_checkpoint(&dm).await;
    assert_eq!(read(&dm, "r", "k35").await.as_deref(), Some("again"));
}

async fn checkpoint_clean_keeps_three_statuses(mut env: Env) {
    let dm = env.dm().await;
    for round in 0..6 {
        dm.write_wal(vec![put("t", &format!("k{round}"), "v")], None)
            .await
            .expect("w");
        sync_and_checkpoint(&dm).await;
    }
    dm.clean_checkpoints().await.expect("clean");
    let mut statuses = 0;
    let mut l = env.ost.list("data/data/", None, false);
    while let Some(o) = l.next().await {
        if o.expect("list").path.ends_with(".status") {
            statuses += 1;
        }
    }
    drop(l);
    assert_eq!(statuses, 3);
    for round in 0..6 {
        assert_eq!(
            read(&dm, "t", &format!("k{round}")).await.as_deref(),
            Some("v")
        );
    }
    // A file newer than the newest status (a checkpoint in progress) is never deleted.
    let future = "data/data/t/zzzzzzzzzzzzz-0000000000000-in-progress.data";
    env.ost.write_bytes(future, b"", true).await.expect("write");
    dm.clean_checkpoints().await.expect("clean");
    env.ost.stat(future).await.expect("in-progress file kept");
}

async fn storage_wal_cleaner_and_orphans(mut env: Env) {
    let mut cfg = Env::config();
    cfg.orphan_payload_age = Duration::ZERO;
    let dm = env.dm_with(cfg).await;
    for i in 0..6 {
        dm.write_wal(vec![put("t", &format!("{i}"), "v")], None)
            .await
            .expect("w");
    }
    sync_and_checkpoint(&dm).await;
    dm.clean_kv_wals().await.expect("clean kv");
    // An orphan payload, as left by a crashed writer.
    env.ost
        .write_bytes("data/wals/data/orphan", b"{}", true)
        .await
        .expect("write");
    let deleted = dm.clean_storage_wals(None).await.expect("clean storage");
    assert!(deleted > 0);
    assert!(
        env.ost.stat("data/wals/data/orphan").await.is_err(),
        "orphan removed"
    );
    for i in 0..6 {
        assert_eq!(read(&dm, "t", &format!("{i}")).await.as_deref(), Some("v"));
    }
    // Recovery still works from what is left.
    env.wipe_kv().await;
    let dm2 = env.dm().await;
    for i in 0..6 {
        assert_eq!(read(&dm2, "t", &format!("{i}")).await.as_deref(), Some("v"));
    }
}

async fn export_then_import_gives_identical_data(mut env: Env) {
    let dm = env.dm().await;
    for i in 0..20 {
        dm.write_wal(
            vec![
                put("a", &format!("{i:02}"), "x"),
                put("b", &format!("{i:02}"), "y"),
            ],
            None,
        )
        .await
        .expect("w");
    }
    dm.write_wal(vec![Action::delete("a", "05")], None)
        .await
        .expect("w");
    let mut out = Vec::new();
    dm.export(&mut out).await.expect("export");
    let (a, b) = (list(&dm, "a").await, list(&dm, "b").await);
    // Import into a fresh store.
    let mut target = Env::embedded().await;
    let dm2 = target.dm().await;
    let err = dm2
        .import(&mut out.as_slice())
        .await
        .expect_err("needs maintenance");
    assert!(matches!(err, Error::BadRequest(_)), "{err}");
    dm2.enter_maintenance().await.expect("enter");
    assert!(dm2.enter_maintenance().await.is_err());
    let err = dm2
        .write_wal(vec![put("a", "x", "y")], None)
        .await
        .expect_err("maintenance");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    let unsorted = b"{\"id\":\"2\",\"data_type\":\"a\",\"data\":\"\"}\n{\"id\":\"1\",\"data_type\":\"a\",\"data\":\"\"}\n";
    assert!(matches!(
        dm2.import(&mut &unsorted[..]).await,
        Err(Error::BadRequest(_))
    ));
    let repeated = b"{\"id\":\"1\",\"data_type\":\"a\",\"data\":\"\"}\n{\"id\":\"1\",\"data_type\":\"b\",\"data\":\"\"}\n{\"id\":\"2\",\"data_type\":\"a\",\"data\":\"\"}\n";
    assert!(matches!(
        dm2.import(&mut &repeated[..]).await,
        Err(Error::BadRequest(_))
    ));
    dm2.import(&mut out.as_slice()).await.expect("import");
    dm2.exit_maintenance().await.expect("exit");
    let dm3 = target.dm().await;
    assert_eq!(list(&dm3, "a").await, a);
    assert_eq!(list(&dm3, "b").await, b);
    assert_eq!(read(&dm3, "a", "05").await, None);
    let mut out2 = Vec::new();
    dm3.export(&mut out2).await.expect("export");
    assert_eq!(out, out2, "export of the import is identical");
}

async fn bad_input_is_rejected(mut env: Env) {
    let dm = env.dm().await;
    assert!(matches!(
        dm.write_wal(vec![], None).await,
        Err(Error::BadRequest(_))
    ));
    for bad in [
        put("", "a", "v"),
        put("Bad/Type", "a", "v"),
        put("t", "", "v"),
        put("t", "a\nb", "v"),
    ] {
        assert!(matches!(
            dm.write_wal(vec![bad], None).await,
            Err(Error::BadRequest(_))
        ));
    }
    let mut token = dm.token(&[]).await;
    token.change_groups_revisions.insert("a/b".into(), 0);
    assert!(matches!(
        dm.write_wal(vec![put("t", "a", "v")], Some(&token)).await,
        Err(Error::BadRequest(_))
    ));
    // Nothing was written by the failures.
    assert!(list(&dm, "t").await.is_empty());
}

/// Random puts/deletes/checkpoints/cleans against an in-memory map, compared at every step.
async fn randomized_model(mut env: Env, ops: usize) {
    let dm = env.dm().await;
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut i = 0;
    while i < ops {
        let n = (next() % 5 + 1) as usize;
        let mut actions = Vec::new();
        for _ in 0..n {
            let id = format!("id{:03}", next() % 150);
            if next() % 3 == 0 {
                model.remove(&id);
                actions.push(Action::delete("m", id));
            } else {
                let v = format!("v{}", next() % 1000);
                model.insert(id.clone(), v.clone());
                actions.push(put("m", &id, &v));
            }
        }
        dm.write_wal(actions, None).await.expect("write");
        i += n;
        match next() % 10 {
            0 => dm.sync().await.expect("sync"),
            1 => {
                dm.sync().await.expect("sync");
                dm.checkpoint(next() % 2 == 0).await.expect("checkpoint");
            }
            2 => {
                dm.clean_kv_wals().await.expect("clean");
            }
            3 => {
                dm.clean_checkpoints().await.expect("clean");
            }
            _ => {}
        }
        let probe = format!("id{:03}", next() % 150);
        assert_eq!(
            read(&dm, "m", &probe).await,
            model.get(&probe).cloned(),
            "after {i} ops"
        );
        if next() % 20 == 0 {
            assert_eq!(list(&dm, "m").await, model, "after {i} ops");
        }
    }
    assert_eq!(list(&dm, "m").await, model);
}

async fn randomized_model_short(env: Env) {
    randomized_model(env, 400).await;
}

async fn randomized_model_long(env: Env) {
    randomized_model(env, 3000).await;
}

macro_rules! scenarios {
    ($($case:ident),* $(,)?) => {
        mod embedded_posix {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() { super::$case(Env::embedded().await).await; }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn randomized_model_long() { super::randomized_model_long(Env::embedded().await).await; }
        }
        mod etcd_s3 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() { super::$case(Env::etcd_s3().await).await; }
            )*
        }
    };
}

scenarios!(
    recovery_after_kv_wipe,
    broken_wal_chain_is_detected,
    change_group_tokens,
    concurrent_unrelated_writers_all_succeed,
    guarded_increments_lose_nothing,
    sync_of_many_wals,
    wal_cleaner_keeps_n_checkpointed_only,
    reads_with_pending_deletes_across_checkpoint_and_clean,
    checkpoint_split_and_merge_at_file_edges,
    checkpoint_clean_keeps_three_statuses,
    storage_wal_cleaner_and_orphans,
    export_then_import_gives_identical_data,
    bad_input_is_rejected,
    randomized_model_short,
);
