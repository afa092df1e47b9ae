//! Tests of the pipeline config crate: one binary, one module per area.

mod example;
mod forms;
mod fuzz;
mod generate;
mod sources;
mod validation;
mod variables;
mod when;

use agola_config::{ConfigFormat, RunConfig};

pub fn fixture(format: ConfigFormat) -> Vec<u8> {
    let name = match format {
        ConfigFormat::Starlark => "example.star",
        ConfigFormat::Jsonnet => "example.jsonnet",
        ConfigFormat::Json => "example.json",
        ConfigFormat::Yaml => "example.yml",
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).expect("fixture exists")
}

/// Sequential ids, so that run configs of different sources compare equal.
pub fn seq_ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("id-{n}")
    }
}

/// Replaces task ids by task names, for run configs generated with random ids.
pub fn normalize(rc: &RunConfig) -> RunConfig {
    let names: std::collections::BTreeMap<String, String> = rc
        .tasks
        .values()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let mut out = rc.clone();
    out.tasks = rc
        .tasks
        .values()
        .map(|t| {
            let mut t = t.clone();
            t.id = names[&t.id].clone();
            t.depends = t
                .depends
                .into_values()
                .map(|mut d| {
                    d.task_id = names[&d.task_id].clone();
                    (d.task_id.clone(), d)
                })
                .collect();
            (t.id.clone(), t)
        })
        .collect();
    out
}

/// A config with one run `r` and one task `t` (alpine container) plus `extra` task fields in
/// block YAML. The first extra line is line 6, at column 9.
pub fn one_task(extra: &str) -> String {
    let mut s = String::from(
        "runs:\n  - name: r\n    tasks:\n      - name: t\n        runtime: {containers: [{image: alpine}]}\n",
    );
    for line in extra.lines() {
        s.push_str("        ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

pub fn parse_yaml(yaml: &str) -> agola_config::Result<agola_config::Config> {
    agola_config::parse_config(
        ConfigFormat::Yaml,
        yaml.as_bytes(),
        &agola_config::RefContext::branch("main", "abc"),
    )
}

pub fn parse_ok(yaml: &str) -> agola_config::Config {
    parse_yaml(yaml).unwrap_or_else(|e| panic!("config must parse: {e}\n{yaml}"))
}

pub fn parse_err(yaml: &str) -> Vec<agola_config::ConfigError> {
    match parse_yaml(yaml) {
        Ok(_) => panic!("config must fail:\n{yaml}"),
        Err(agola_config::Error::Invalid(errors)) => errors,
        Err(e) => panic!("expected an invalid config, got {e}"),
    }
}

/// The only task of a `one_task` config.
pub fn the_task(yaml: &str) -> agola_config::ConfigTask {
    parse_ok(yaml).runs[0].tasks[0].clone()
}
