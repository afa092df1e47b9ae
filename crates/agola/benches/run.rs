//! `agola run` benchmarks, each printed as a ratio against a baseline measured in the same
//! run (never asserted: timing goals are read, not tested).
//!
//! - **chain**: a chain of N one-step `true` tasks on the local driver (each task starts
//!   after its parent, so every task pays the whole control-plane path: dispatch, executor
//!   intake, setup, step, status, fetch) vs N raw `sh -c true` spawns. Goal: ≤ 20 ms of
//!   overhead per task (issue #10), ≤ 10 ms added per one-step task by the local driver
//!   (issue #7).
//! - **dag**: N independent `true` tasks (default parallelism) vs the same raw spawns.
//! - **docker**: a chain of M one-step `true` tasks on the docker driver vs M
//!   `docker run --rm local/busybox true`. Goal: ≤ 1.5× (issue #7). Skipped with a message
//!   when no Docker daemon answers.
//! - **logs**: a step printing 200 MB (local driver), wall time of the run vs writing the same
//!   bytes to /dev/null; prints MB/s into the runservice (goal ≥ 100 MB/s) and the peak RSS
//!   of this process (memory bounded).
//!
//! - **serve**: `agola serve` (every component, embedded defaults, fresh data dir) from spawn
//!   to the gateway answering `GET /api/v1alpha/version`, vs spawning `agola version`
//!   (goal ≤ 500 ms), and its resident memory after 2 s idle (goal ≤ 100 MiB).
//!
//! Run: `cargo bench -p agola --bench run` (env `AGOLA_BENCH_TASKS`, default 50;
//! `AGOLA_BENCH_DOCKER_TASKS`, default 10; `AGOLA_BENCH_LOG_MB`, default 200;
//! `AGOLA_TOOLBOX_DIR`, default `$CARGO_TARGET_DIR/toolbox`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agola::run::{DriverChoice, OutputFormat, RunArgs, execute};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn toolbox_dir() -> PathBuf {
    if let Ok(d) = std::env::var("AGOLA_TOOLBOX_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    PathBuf::from(target).join("toolbox")
}

fn repo(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join(".agola")).expect("mkdir");
    std::fs::write(dir.path().join(".agola/config.yml"), config).expect("write config");
    dir
}

/// A config of `n` one-step tasks running `command`; chained when `chain`.
fn config(n: usize, chain: bool, command: &str) -> String {
    let mut s = String::from("version: v0\nruns:\n  - name: bench\n    tasks:\n");
    for i in 0..n {
        s.push_str(&format!(
            "      - name: t{i}\n        runtime: {{ containers: [ {{ image: busybox }} ] }}\n        steps: [ {{ run: {{ command: '{command}', tty: false }} }} ]\n"
        ));
        if chain && i > 0 {
            s.push_str(&format!("        depends: [ t{} ]\n", i - 1));
        }
    }
    s
}

async fn agola_run(dir: &Path, driver: DriverChoice) -> Duration {
    let args = RunArgs {
        dir: dir.to_owned(),
        data_dir: None,
        driver,
        branch: Some("main".into()),
        tag: None,
        git_ref: None,
        vars: vec![],
        var_file: None,
        approve: vec![],
        approve_all: false,
        output: OutputFormat::Json,
        parallelism: None,
        toolbox_path: Some(toolbox_dir()),
    };
    let start = Instant::now();
    let out = execute(args).await.expect("agola run");
    let took = start.elapsed();
    assert_eq!(out.code, 0, "the benchmark run failed: {:#}", out.report);
    took
}

fn raw_spawns(n: usize, program: &str, args: &[&str]) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .expect("spawn");
        assert!(status.success(), "{program} {args:?} failed");
    }
    start.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn docker_available() -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", "local/busybox:latest"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn http_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ =
        s.write_all(b"GET /api/v1alpha/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = [0u8; 16];
    s.read(&mut buf)
        .is_ok_and(|n| buf[..n].starts_with(b"HTTP/1.1 200"))
}

/// Start-up time and idle memory of `agola serve`.
fn serve_bench() {
    let agola = env!("CARGO_BIN_EXE_agola");
    let start = Instant::now();
    let status = std::process::Command::new(agola)
        .arg("version")
        .output()
        .expect("agola version");
    assert!(status.status.success());
    let baseline = start.elapsed();
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = free_port();
    let mut cmd = std::process::Command::new(agola);
    cmd.args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{gateway}")])
        .env("AGOLA_TELEMETRY__LOG_FILTER", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for c in [
        "RUNSERVICE",
        "EXECUTOR",
        "CONFIGSTORE",
        "SCHEDULER",
        "NOTIFICATION",
    ] {
        cmd.env(
            format!("AGOLA_{c}__LISTEN_ADDRESS"),
            format!("127.0.0.1:{}", free_port()),
        );
    }
    cmd.env("AGOLA_EXECUTOR__TOOLBOX_PATH", toolbox_dir());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("agola serve");
    let deadline = start + Duration::from_secs(30);
    while !http_ok(gateway) {
        assert!(
            Instant::now() < deadline,
            "agola serve did not answer in 30 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let ready = start.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0);
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "serve  all components: ready in {:.0} ms (goal <= 500 ms) vs {:.1} ms for `agola version`; idle RSS {:.0} MiB (goal <= 100 MiB)",
        ms(ready),
        ms(baseline),
        rss
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let n = env_usize("AGOLA_BENCH_TASKS", 50);
    let m = env_usize("AGOLA_BENCH_DOCKER_TASKS", 10);
    let log_mb = env_usize("AGOLA_BENCH_LOG_MB", 200);

    serve_bench();

    // Warm-up (page cache, first toolbox exec).
    let warm = repo(&config(2, true, "true"));
    runtime.block_on(agola_run(warm.path(), DriverChoice::Local));

    let raw = raw_spawns(n, "sh", &["-c", "true"]);
    let chain = repo(&config(n, true, "true"));
    let t_chain = runtime.block_on(agola_run(chain.path(), DriverChoice::Local));
    let per_task = (ms(t_chain) - ms(raw)) / n as f64;
    println!(
        "chain  local  {n} tasks: {:.0} ms vs {n} raw spawns {:.1} ms: {:.1} ms overhead per task (goal <= 20 ms), ratio {:.1}x",
        ms(t_chain),
        ms(raw),
        per_task,
        ms(t_chain) / ms(raw).max(0.001)
    );
    let dag = repo(&config(n, false, "true"));
    let t_dag = runtime.block_on(agola_run(dag.path(), DriverChoice::Local));
    println!(
        "dag    local  {n} tasks: {:.0} ms vs {n} raw spawns {:.1} ms: {:.1} ms per task",
        ms(t_dag),
        ms(raw),
        (ms(t_dag) - ms(raw)) / n as f64
    );

    if docker_available() {
        let raw_docker = raw_spawns(
            m,
            "docker",
            &["run", "--rm", "local/busybox:latest", "true"],
        );
        let docker_chain = repo(&config(m, true, "true"));
        let t_docker = runtime.block_on(agola_run(docker_chain.path(), DriverChoice::Docker));
        println!(
            "chain  docker {m} tasks: {:.0} ms vs {m} x docker run --rm {:.0} ms: ratio {:.2}x (goal <= 1.5x), {:.0} ms vs {:.0} ms per task",
            ms(t_docker),
            ms(raw_docker),
            ms(t_docker) / ms(raw_docker).max(0.001),
            ms(t_docker) / m as f64,
            ms(raw_docker) / m as f64
        );
    } else {
        println!(
            "docker: skipped (no daemon answers or local/busybox:latest is missing; scripts/test.sh starts both)"
        );
    }

    let bytes = log_mb * 1_000_000;
    let command = format!("yes 0123456789abcdef0123456789abcdef | head -c {bytes}");
    let raw_log = raw_spawns(1, "sh", &["-c", &format!("{command} > /dev/null")]);
    let logs = repo(&config(1, false, &command));
    let t_logs = runtime.block_on(agola_run(logs.path(), DriverChoice::Local));
    println!(
        "logs   local  {log_mb} MB step: run {:.0} ms ({:.0} MB/s into the runservice, goal >= 100 MB/s) vs {:.0} ms to /dev/null; peak RSS of the whole mesh {:.0} MiB",
        ms(t_logs),
        log_mb as f64 / t_logs.as_secs_f64(),
        ms(raw_log),
        peak_rss_mib()
    );
}
