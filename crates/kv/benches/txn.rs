//! Committed transactions per second and p50/p99 latency of both KV backends, with raw
//! etcd-client put latency (no abstraction) measured in the same run as the baseline.
//!
//! `cargo bench -p agola-kv --bench txn` (etcd from `AGOLA_TEST_ETCD_ENDPOINTS`, default
//! `http://127.0.0.1:23790`; `AGOLA_BENCH_TXNS` txns per series, default 2000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agola_kv::embedded::EmbeddedKv;
use agola_kv::etcd::EtcdKv;
use agola_kv::{Compare, CompareOp, Kv, KvExt, Op, Prefixed, Txn};

struct Stats {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn stats(mut lat: Vec<Duration>, total: Duration) -> Stats {
    lat.sort();
    let pick = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    Stats {
        per_sec: lat.len() as f64 / total.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
    }
}

fn print(name: &str, s: &Stats, baseline: Option<&Stats>) {
    let ratio = baseline
        .map(|b| {
            format!(
                "  ratio vs raw etcd put: {:.2}x tx/s",
                s.per_sec / b.per_sec
            )
        })
        .unwrap_or_default();
    println!(
        "{name:<34} {:>9.0} tx/s  p50 {:>8.3} ms  p99 {:>8.3} ms{ratio}",
        s.per_sec,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
}

/// CAS txns: read the key's revision, then put guarded by it (what the services do).
async fn cas_series(kv: Arc<dyn Kv>, n: usize) -> Stats {
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    let mut rev = kv.put("bench/k", b"0".to_vec()).await.expect("put");
    for i in 0..n {
        let t = Instant::now();
        let resp = kv
            .txn(
                Txn::new()
                    .when([Compare::mod_revision("bench/k", CompareOp::Equal, rev)])
                    .and_then([Op::put("bench/k", i.to_string().into_bytes())]),
            )
            .await
            .expect("txn");
        assert!(resp.succeeded);
        rev = resp.revision;
        lat.push(t.elapsed());
    }
    stats(lat, start.elapsed())
}

/// Concurrent writers on unrelated keys.
async fn concurrent_series(kv: Arc<dyn Kv>, writers: usize, n: usize) -> Stats {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..n / writers {
                let t = Instant::now();
                kv.put(&format!("bench/w{w}"), i.to_string().into_bytes())
                    .await
                    .expect("put");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("join"));
    }
    stats(lat, start.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("AGOLA_BENCH_TXNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let endpoints: Vec<String> = std::env::var("AGOLA_TEST_ETCD_ENDPOINTS")
        .unwrap_or_else(|_| "http://127.0.0.1:23790".to_owned())
        .split(',')
        .map(str::to_owned)
        .collect();

    // Baseline: raw etcd-client puts.
    let mut raw = etcd_client::Client::connect(&endpoints, None)
        .await
        .expect("connect etcd (start it with scripts/test.sh or set AGOLA_TEST_ETCD_ENDPOINTS)");
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        raw.put("bench-raw/k", i.to_string(), None)
            .await
            .expect("raw put");
        lat.push(t.elapsed());
    }
    let baseline = stats(lat, start.elapsed());
    println!("kv txn benchmark, {n} txns per series");
    print("raw etcd-client put (baseline)", &baseline, None);

    let etcd: Arc<dyn Kv> = Arc::new(Prefixed::new(
        Arc::new(EtcdKv::connect(&endpoints).await.expect("connect")),
        "bench/",
    ));
    print(
        "etcd backend, CAS txn",
        &cas_series(etcd.clone(), n).await,
        Some(&baseline),
    );
    print(
        "etcd backend, 16 writers put",
        &concurrent_series(etcd, 16, n).await,
        Some(&baseline),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let embedded: Arc<dyn Kv> = Arc::new(
        EmbeddedKv::open(dir.path().join("kv.redb"))
            .await
            .expect("open"),
    );
    print(
        "embedded backend, CAS txn",
        &cas_series(embedded.clone(), n).await,
        Some(&baseline),
    );
    print(
        "embedded backend, 16 writers put",
        &concurrent_series(embedded, 16, n).await,
        Some(&baseline),
    );
}
