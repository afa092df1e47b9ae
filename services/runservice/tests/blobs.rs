//! Object storage housekeeping on posix storage: runid markers keep shared task data alive
//! until the last referencing run is deleted (spec 20 §8), and the expiry cleaner deletes
//! caches and workspace archives older than a cutoff (§7.4).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agola_objectstorage::{ObjectStorage, Posix};
use agola_runservice::blobs::{Blobs, LogKind, archive_path, log_path};

fn blobs() -> (tempfile::TempDir, Blobs, Arc<dyn ObjectStorage>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ost: Arc<dyn ObjectStorage> = Arc::new(Posix::new(dir.path().join("ost")).expect("ost"));
    (dir, Blobs::new(ost.clone()), ost)
}

async fn exists(ost: &Arc<dyn ObjectStorage>, path: &str) -> bool {
    ost.stat(path).await.is_ok()
}

#[tokio::test]
async fn task_data_lives_while_a_run_references_it() {
    let (_dir, blobs, ost) = blobs();
    let log = log_path("task1", LogKind::Step(0));
    let archive = archive_path("task1", 1);
    ost.write_bytes(&log, b"log", false).await.expect("log");
    ost.write_bytes(&archive, b"tar", false)
        .await
        .expect("archive");
    blobs
        .write_markers("task1", "run-a")
        .await
        .expect("marker a");
    // idempotent
    blobs
        .write_markers("task1", "run-a")
        .await
        .expect("marker a again");
    blobs
        .write_markers("task1", "run-b")
        .await
        .expect("marker b (restart)");

    assert!(
        !blobs
            .release_task_data("task1", "run-a")
            .await
            .expect("release a")
    );
    assert!(
        exists(&ost, &log).await && exists(&ost, &archive).await,
        "run-b still references it"
    );
    assert!(
        blobs
            .release_task_data("task1", "run-b")
            .await
            .expect("release b")
    );
    assert!(
        !exists(&ost, &log).await,
        "log deleted with the last reference"
    );
    assert!(
        !exists(&ost, &archive).await,
        "archive deleted with the last reference"
    );
    // Releasing again is harmless.
    assert!(
        blobs
            .release_task_data("task1", "run-b")
            .await
            .expect("release again")
    );
}

#[tokio::test]
async fn bad_ids_are_rejected_before_touching_storage() {
    let (_dir, blobs, _ost) = blobs();
    assert!(blobs.write_markers("../x", "run").await.is_err());
    assert!(blobs.release_task_data("task", "a/b").await.is_err());
}

#[tokio::test]
async fn expiry_removes_only_objects_older_than_the_cutoff() {
    let (_dir, blobs, ost) = blobs();
    ost.write_bytes("caches/k1.tar", b"c", false)
        .await
        .expect("cache");
    ost.write_bytes(&archive_path("t", 0), b"a", false)
        .await
        .expect("archive");
    let past = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(blobs.expire("caches/", past).await.expect("expire"), 0);
    assert!(exists(&ost, "caches/k1.tar").await);
    let future = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(blobs.expire("caches/", future).await.expect("expire"), 1);
    assert!(!exists(&ost, "caches/k1.tar").await);
    assert!(
        exists(&ost, &archive_path("t", 0)).await,
        "other prefixes untouched"
    );
    assert_eq!(
        blobs
            .expire("workspacearchives/", future)
            .await
            .expect("expire"),
        1
    );
}
