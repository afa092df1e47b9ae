//! Datamanager benchmark (embedded KV + posix object storage):
//! - WAL writes per second with 1, 8 and 64 concurrent writers on unrelated keys, as a ratio
//!   of raw KV transactions per second (same store, same concurrency) measured in the same run;
//! - point read latency p50/p99 with `AGOLA_BENCH_ENTRIES` entries (default 1 000 000)
//!   checkpointed in 10 MiB files;
//! - checkpoint time and bytes rewritten when 1% of the entries change.
//!
//! `cargo bench -p agola-datamanager --bench datamanager`

use std::sync::Arc;
use std::time::{Duration, Instant};

use agola_common::Shutdown;
use agola_datamanager::{Action, Config, DataManager};
use agola_kv::embedded::EmbeddedKv;
use agola_kv::{Kv, KvExt};
use agola_objectstorage::{ObjectStorage, Posix};

fn pct(lat: &mut [Duration], q: f64) -> Duration {
    lat.sort();
    lat[((lat.len() as f64 - 1.0) * q) as usize]
}

async fn fresh(dir: &std::path::Path, cfg: Config) -> (DataManager, Arc<dyn Kv>) {
    let kv: Arc<dyn Kv> = Arc::new(EmbeddedKv::open(dir.join("kv")).await.expect("kv"));
    let ost: Arc<dyn ObjectStorage> = Arc::new(Posix::new(dir.join("ost")).expect("posix"));
    let dm = DataManager::new(cfg, kv.clone(), ost);
    dm.init(Shutdown::never()).await.expect("init");
    (dm, kv)
}

async fn writes(writers: usize, total: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dm, kv) = fresh(dir.path(), Config::new("data")).await;
    // Baseline: raw KV puts with the same concurrency.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..total / writers {
                kv.put(&format!("raw/{w}"), i.to_string().into_bytes())
                    .await
                    .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let raw = total as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let dm = dm.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for i in 0..total / writers {
                let a = Action::put("bench", format!("w{w}-{i}"), b"value".to_vec());
                if dm.write_wal(vec![a], None).await.is_err() {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.expect("join");
    }
    let wal = total as f64 / start.elapsed().as_secs_f64();
    println!(
        "wal writes, {writers:>2} writers: {wal:>8.0} /s  raw kv txn {raw:>8.0} /s  ratio {:.2}  failed writes {failed}",
        wal / raw
    );
}

async fn reads_and_checkpoint(entries: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::new("data");
    cfg.max_checkpoint_wals = 1000;
    let (dm, _kv) = fresh(dir.path(), cfg).await;
    // Load through import: one sorted stream of entries.
    let value = "x".repeat(100);
    let mut export = Vec::with_capacity(entries * 180);
    for i in 0..entries {
        let data = base64_encode(value.as_bytes());
        export.extend_from_slice(
            format!("{{\"id\":\"e{i:09}\",\"data_type\":\"bench\",\"data\":\"{data}\"}}\n")
                .as_bytes(),
        );
    }
    let start = Instant::now();
    dm.enter_maintenance().await.expect("maintenance");
    dm.import(&mut export.as_slice()).await.expect("import");
    dm.exit_maintenance().await.expect("exit");
    println!(
        "import of {entries} entries ({} MiB): {:.1} s",
        export.len() / (1 << 20),
        start.elapsed().as_secs_f64()
    );
    drop(export);
    let (dm, _kv) = {
        // A fresh instance loads the imported status.
        let kv: Arc<dyn Kv> = Arc::new(_kv);
        let ost: Arc<dyn ObjectStorage> =
            Arc::new(Posix::new(dir.path().join("ost")).expect("posix"));
        let dm2 = DataManager::new(Config::new("data"), kv.clone(), ost);
        dm2.init(Shutdown::never()).await.expect("init");
        drop(dm);
        (dm2, kv)
    };
    let mut lat = Vec::new();
    let mut x: u64 = 88172645463325252;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = format!("e{:09}", x % entries as u64);
        let t = Instant::now();
        dm.read("bench", &id, &[]).await.expect("read");
        lat.push(t.elapsed());
    }
    println!(
        "point reads over {entries} entries: p50 {:.3} ms  p99 {:.3} ms",
        pct(&mut lat, 0.5).as_secs_f64() * 1e3,
        pct(&mut lat, 0.99).as_secs_f64() * 1e3
    );
    // 1% of the entries change, spread over the key space, in WALs of 100 actions.
    let changes = entries / 100;
    let spread: Vec<String> = (0..changes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("e{:09}", x % entries as u64)
        })
        .collect();
    change_and_checkpoint(&dm, spread, "spread over the key space").await;
    // The same amount of change on a contiguous id range: only the files holding it are
    // rewritten, the others are reused as they are.
    let first = entries / 2;
    let clustered: Vec<String> = (first..first + changes)
        .map(|i| format!("e{i:09}"))
        .collect();
    change_and_checkpoint(&dm, clustered, "in one id range").await;
}

/// Puts every id (WALs of 100 actions), syncs, checkpoints until every WAL is in, and prints
/// the time and the files rewritten and reused by the checkpoint that applied the changes.
async fn change_and_checkpoint(dm: &DataManager, ids: Vec<String>, label: &str) {
    let n = ids.len();
    for chunk in ids.chunks(100) {
        let batch = chunk
            .iter()
            .map(|id| Action::put("bench", id.clone(), b"changed".to_vec()))
            .collect();
        dm.write_wal(batch, None).await.expect("write");
    }
    dm.sync().await.expect("sync");
    let start = Instant::now();
    let mut total = agola_datamanager::CheckpointReport::default();
    let mut reused = None;
    loop {
        let r = dm
            .checkpoint(true)
            .await
            .expect("checkpoint")
            .expect("lock");
        total.files_written += r.files_written;
        total.bytes_written += r.bytes_written;
        total.wals += r.wals;
        reused.get_or_insert(r.files_reused);
        if r.wals <= 1 {
            break;
        }
    }
    println!(
        "checkpoint of {n} changed entries {label} ({} wals): {:.2} s, files rewritten {}, reused {}, {} MiB written",
        total.wals,
        start.elapsed().as_secs_f64(),
        total.files_written,
        reused.unwrap_or(0),
        total.bytes_written / (1 << 20)
    );
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let entries: usize = std::env::var("AGOLA_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let total: usize = std::env::var("AGOLA_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1280);
    for writers in [1, 8, 64] {
        writes(writers, total).await;
    }
    reads_and_checkpoint(entries).await;
}
