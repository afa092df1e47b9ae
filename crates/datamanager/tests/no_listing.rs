//! Reads never list object storage (spec 90 §4.12): the latest checkpoint status is found
//! through `lastdatastatus`, not by listing `data/` on every read as Agola did.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agola_common::Shutdown;
use agola_datamanager::{Action, Config, DataManager};
use agola_kv::embedded::EmbeddedKv;
use agola_objectstorage::{ObjectInfo, ObjectReader, ObjectStorage, Posix, Result, WriteSource};
use async_trait::async_trait;
use futures::stream::BoxStream;

/// Object storage that counts list calls.
struct Counting {
    inner: Posix,
    lists: AtomicUsize,
}

#[async_trait]
impl ObjectStorage for Counting {
    async fn stat(&self, path: &str) -> Result<ObjectInfo> {
        self.inner.stat(path).await
    }
    async fn read_range(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ObjectReader> {
        self.inner.read_range(path, offset, len).await
    }
    async fn write(
        &self,
        path: &str,
        reader: WriteSource<'_>,
        size: Option<u64>,
        persist: bool,
    ) -> Result<()> {
        self.inner.write(path, reader, size, persist).await
    }
    async fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path).await
    }
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        recursive: bool,
    ) -> BoxStream<'static, Result<ObjectInfo>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix, start_after, recursive)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_list_object_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = Arc::new(EmbeddedKv::open(dir.path().join("kv")).await.expect("kv"));
    let ost = Arc::new(Counting {
        inner: Posix::new(dir.path().join("ost")).expect("posix"),
        lists: AtomicUsize::new(0),
    });
    let mut cfg = Config::new("data");
    cfg.max_data_file_size = 100;
    let dm = DataManager::new(cfg, kv, ost.clone());
    dm.init(Shutdown::never()).await.expect("init");
    for i in 0..20 {
        dm.write_wal(
            vec![Action::put("t", format!("k{i:02}"), b"v".to_vec())],
            None,
        )
        .await
        .expect("write");
    }
    dm.sync().await.expect("sync");
    dm.checkpoint(true).await.expect("checkpoint");
    let before = ost.lists.load(Ordering::SeqCst);
    for i in 0..20 {
        let (v, _) = dm.read("t", &format!("k{i:02}"), &[]).await.expect("read");
        assert_eq!(v, b"v");
    }
    assert!(
        dm.read("t", "missing", &[])
            .await
            .expect_err("absent")
            .is_not_exist()
    );
    assert_eq!(dm.list("t", &[]).await.expect("list").0.len(), 20);
    assert_eq!(
        ost.lists.load(Ordering::SeqCst),
        before,
        "reads listed object storage"
    );
}
