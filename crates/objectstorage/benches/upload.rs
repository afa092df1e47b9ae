//! Unknown-size upload benchmark: a generated stream (no file) written to S3 through the
//! bounded multipart upload, against a posix write of the same data in the same run.
//!
//! Reports throughput of both, their ratio, and the peak RSS growth of the S3 upload, which
//! must stay near two parts whatever the object size. Size: `AGOLA_BENCH_SIZE_MB` (default
//! 1024). S3 connection: the `AGOLA_TEST_S3_*` variables scripts/test.sh exports.
//!
//! glibc's dynamic mmap threshold may keep one freed part resident, so the reported peak can
//! be about three parts; `MALLOC_MMAP_THRESHOLD_=1048576` pins the threshold and shows the two
//! live parts alone.
//!
//! `cargo bench -p agola-objectstorage`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agola_objectstorage::conformance::DataGen;
use agola_objectstorage::{ObjectStorage, Posix, S3, S3Config};

const MIB: u64 = 1024 * 1024;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the S3 test server as scripts/test.sh does and export AGOLA_TEST_S3_*")
    })
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux clear_refs); false when not permitted.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn main() {
    let size_mb: u64 = std::env::var("AGOLA_BENCH_SIZE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = size_mb * MIB;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    rt.block_on(async {
        let part_size = 16 * MIB;
        let s3 = S3::new(S3Config {
            endpoint: env("AGOLA_TEST_S3_ENDPOINT"),
            bucket: format!(
                "ost-bench-{:x}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() % (1 << 48))
                    .unwrap_or(0)
            ),
            access_key: env("AGOLA_TEST_S3_ACCESS_KEY"),
            secret_access_key: env("AGOLA_TEST_S3_SECRET_KEY"),
            part_size,
            max_unknown_size: size.max(MIB),
            ..S3Config::default()
        })
        .await
        .expect("connect to S3");
        let dir = tempfile::tempdir().expect("temp dir");
        let posix = Posix::new(dir.path()).expect("posix");

        // S3 first, so the posix run cannot have raised the peak if clear_refs is refused.
        let peak_reset = reset_peak();
        let rss_before = status_kib("VmRSS");
        let start = Instant::now();
        let mut src = DataGen::new(1, size);
        s3.write("bench/obj", &mut src, None, false)
            .await
            .expect("s3 upload");
        let s3_time = start.elapsed();
        let hwm_after = status_kib("VmHWM");
        let rss_after = status_kib("VmRSS");
        assert_eq!(s3.stat("bench/obj").await.expect("stat").size, size);

        let start = Instant::now();
        let mut src = DataGen::new(1, size);
        posix
            .write("bench/obj", &mut src, None, false)
            .await
            .expect("posix write");
        let posix_time = start.elapsed();

        let s3_rate = mib_per_s(size, s3_time);
        let posix_rate = mib_per_s(size, posix_time);
        println!("unknown-size upload of {size_mb} MiB (generated stream, part size {} MiB)", part_size / MIB);
        println!("  posix write: {posix_time:.2?} ({posix_rate:.0} MiB/s)");
        println!("  s3 upload:   {s3_time:.2?} ({s3_rate:.0} MiB/s)");
        println!("  s3/posix throughput ratio: {:.2}", s3_rate / posix_rate);
        println!(
            "  s3 peak RSS growth: {:.1} MiB (VmHWM {} KiB - VmRSS before {} KiB{}); RSS after: {} KiB",
            hwm_after.saturating_sub(rss_before) as f64 / 1024.0,
            hwm_after,
            rss_before,
            if peak_reset { ", peak reset before the upload" } else { ", peak not resettable" },
            rss_after
        );
        println!(
            "  bound: two parts = {} MiB plus client buffers, independent of the object size",
            2 * part_size / MIB
        );
        s3.delete("bench/obj").await.expect("cleanup");
    });
}
