//! Parses and generates the run config of a generated 500-task YAML pipeline; prints the time
//! per iteration and the growth of the peak RSS. Goal: under 50 ms.
//!
//! Run with `cargo bench -p agola-config --bench generate`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use agola_config::{ConfigFormat, RefContext, RunSetup, generate_run_configs, parse_config};

const TASKS: usize = 500;
const LAYER: usize = 25;
const ITERATIONS: usize = 20;

/// 20 layers of 25 tasks; each task past the first layer depends on two tasks of the layer
/// before (never redundant: tasks of one layer are not ancestors of each other).
fn pipeline() -> String {
    let mut y = String::from(
        "version: v0\ndocker_registries_auth:\n  registry.example.com: {username: bot, password: {from_variable: pw}}\nruns:\n  - name: big\n    when: {branch: [main, '/^release-/']}\n    tasks:\n",
    );
    for i in 0..TASKS {
        let layer = i / LAYER;
        let _ = write!(
            y,
            "      - name: task-{i}\n        runtime:\n          arch: amd64\n          containers:\n            - image: rust:1.85\n              environment: {{CARGO_TERM_COLOR: never, TOKEN: {{from_variable: token}}}}\n            - image: postgres:16\n              volumes: [{{path: /data, tmpfs: {{size: 256Mi}}}}]\n        environment:\n          TASK: '{i}'\n          SECRET: {{from_variable: secret}}\n        when: {{branch: {{include: '/.*/', exclude: wip}}}}\n        steps:\n          - clone: {{depth: 10}}\n          - restore_cache: {{keys: ['cache-{{{{ sha256sum \"Cargo.lock\" }}}}', cache-], dest_dir: ~/.cargo}}\n          - run: cargo build --release -p crate-{i}\n          - run:\n              name: tests\n              command: |\n                cargo test -p crate-{i}\n                echo done\n              environment: {{RUST_LOG: debug}}\n          - save_cache: {{key: 'cache-{i}', contents: [{{source_dir: ~/.cargo}}]}}\n          - save_to_workspace: {{contents: [{{source_dir: target, dest_dir: /out, paths: ['bin-{i}']}}]}}\n"
        );
        if layer > 0 {
            let prev = (layer - 1) * LAYER;
            let a = prev + i % LAYER;
            let b = prev + (i + 1) % LAYER;
            let _ = write!(
                y,
                "        depends:\n          - task-{a}\n          - {{task: task-{b}, conditions: [on_success, on_skipped]}}\n"
            );
        }
        if i % 50 == 49 {
            y.push_str("        approval: {min_approvers: 2}\n        ignore_failure: true\n");
        }
    }
    y
}

/// Peak resident set size in KiB (Linux), 0 elsewhere.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let yaml = pipeline();
    let setup = RunSetup {
        ctx: RefContext::branch("main", "0123456789abcdef"),
        variables: [("pw", "p"), ("token", "t"), ("secret", "s")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    let rss_before = peak_rss_kib();

    let mut times: Vec<Duration> = Vec::with_capacity(ITERATIONS);
    let mut parse_times: Vec<Duration> = Vec::with_capacity(ITERATIONS);
    let mut tasks = 0;
    for _ in 0..ITERATIONS {
        let start = Instant::now();
        let config = match parse_config(ConfigFormat::Yaml, yaml.as_bytes(), &setup.ctx) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("benchmark config is invalid: {e}");
                std::process::exit(1);
            }
        };
        parse_times.push(start.elapsed());
        let runs = generate_run_configs(&config, &setup);
        times.push(start.elapsed());
        tasks = runs.iter().map(|r| r.tasks.len()).sum();
        std::hint::black_box(runs);
    }
    let rss_after = peak_rss_kib();
    times.sort();
    parse_times.sort();
    let median = times[times.len() / 2];
    let min = times[0];
    let max = times[times.len() - 1];
    println!(
        "parse + generate, {TASKS}-task YAML pipeline ({} KiB, {tasks} tasks generated), {ITERATIONS} iterations:",
        yaml.len() / 1024
    );
    println!(
        "  time: min {:.2} ms, median {:.2} ms, max {:.2} ms (goal < 50 ms)",
        min.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    println!(
        "  of which parse + validate: min {:.2} ms, median {:.2} ms",
        parse_times[0].as_secs_f64() * 1e3,
        parse_times[parse_times.len() / 2].as_secs_f64() * 1e3
    );
    println!(
        "  peak RSS growth: {} KiB (peak {} KiB)",
        rss_after.saturating_sub(rss_before),
        rss_after
    );
}
