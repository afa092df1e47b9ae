//! The read-model follower keeps a local model equal to the datamanager's data, through
//! incremental updates, a restart of the follower, and a KV reset (new epoch).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agola_common::Shutdown;
use agola_datamanager::follower::{Batch, ReadModel};
use agola_datamanager::{Action, ActionType, Config, DataManager, Result};
use agola_kv::embedded::EmbeddedKv;
use agola_kv::{Kv, Op, Txn};
use agola_objectstorage::{ObjectStorage, Posix};
use async_trait::async_trait;

#[derive(Default)]
struct State {
    position: Option<String>,
    data: BTreeMap<(String, String), Vec<u8>>,
    resets: usize,
}

#[derive(Clone, Default)]
struct MemModel(Arc<Mutex<State>>);

#[async_trait]
impl ReadModel for MemModel {
    async fn position(&mut self) -> Result<Option<String>> {
        Ok(self.0.lock().expect("lock").position.clone())
    }
    async fn reset(&mut self) -> Result<()> {
        let mut s = self.0.lock().expect("lock");
        s.position = None;
        s.data.clear();
        s.resets += 1;
        Ok(())
    }
    async fn apply(&mut self, batch: Batch) -> Result<()> {
        let mut s = self.0.lock().expect("lock");
        for a in batch.actions {
            match a.action_type {
                ActionType::Put => {
                    s.data.insert((a.data_type, a.id), a.data);
                }
                ActionType::Delete => {
                    s.data.remove(&(a.data_type, a.id));
                }
            }
        }
        s.position = Some(batch.wal_sequence);
        Ok(())
    }
}

async fn expected(dm: &DataManager) -> BTreeMap<(String, String), Vec<u8>> {
    let mut out = BTreeMap::new();
    for t in ["a", "b"] {
        for (id, v) in dm.list(t, &[]).await.expect("list").0 {
            out.insert((t.to_owned(), id), v);
        }
    }
    out
}

async fn converge(model: &MemModel, dm: &DataManager) {
    let want = expected(dm).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if model.0.lock().expect("lock").data == want {
            return;
        }
        assert!(Instant::now() < deadline, "read model did not converge");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_keeps_a_read_model_in_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv: Arc<dyn Kv> = Arc::new(EmbeddedKv::open(dir.path().join("kv")).await.expect("kv"));
    let ost: Arc<dyn ObjectStorage> = Arc::new(Posix::new(dir.path().join("ost")).expect("ost"));
    let mut cfg = Config::new("data");
    cfg.max_data_file_size = 150;
    cfg.kv_wals_keep = 2;
    let dm = DataManager::new(cfg.clone(), kv.clone(), ost.clone());
    dm.init(Shutdown::never()).await.expect("init");
    for i in 0..10 {
        dm.write_wal(vec![Action::put("a", format!("{i}"), b"x".to_vec())], None)
            .await
            .expect("write");
    }
    dm.sync().await.expect("sync");
    dm.checkpoint(true).await.expect("checkpoint");
    dm.clean_kv_wals().await.expect("clean");

    // Full sync from the data files, then live updates.
    let model = MemModel::default();
    let (stop, shutdown) = Shutdown::new();
    let follower = tokio::spawn({
        let dm = dm.clone();
        let mut m = model.clone();
        async move { dm.follow(&mut m, shutdown).await }
    });
    converge(&model, &dm).await;
    dm.write_wal(
        vec![
            Action::delete("a", "3"),
            Action::put("b", "new", b"y".to_vec()),
        ],
        None,
    )
    .await
    .expect("write");
    converge(&model, &dm).await;
    stop.trigger();
    follower.await.expect("join").expect("follow");

    // A restarted follower resumes incrementally (no reset) across synced and checkpointed WALs.
    let resets = model.0.lock().expect("lock").resets;
    for i in 0..5 {
        dm.write_wal(vec![Action::put("b", format!("r{i}"), b"z".to_vec())], None)
            .await
            .expect("write");
    }
    dm.sync().await.expect("sync");
    let (stop, shutdown) = Shutdown::new();
    let follower = tokio::spawn({
        let dm = dm.clone();
        let mut m = model.clone();
        async move { dm.follow(&mut m, shutdown).await }
    });
    converge(&model, &dm).await;
    assert_eq!(
        model.0.lock().expect("lock").resets,
        resets,
        "resumed without a reset"
    );

    // The KV store is lost and re-initialized: a new epoch, and the model resyncs.
    kv.txn(Txn::new().and_then([Op::delete_prefix("datamanager/")]))
        .await
        .expect("wipe");
    let dm2 = DataManager::new(cfg, kv.clone(), ost.clone());
    dm2.init(Shutdown::never()).await.expect("re-init");
    dm2.write_wal(vec![Action::put("a", "after-reset", b"w".to_vec())], None)
        .await
        .expect("write");
    converge(&model, &dm2).await;
    assert!(
        model.0.lock().expect("lock").resets > resets,
        "epoch change resynced"
    );
    stop.trigger();
    follower.await.expect("join").expect("follow");
}
