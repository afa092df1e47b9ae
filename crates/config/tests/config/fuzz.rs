//! Bad input never panics: random text and random structures built from config vocabulary go
//! through the parser and generation; only Ok or Err is acceptable.

use agola_config::*;
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "version",
    "runs",
    "name",
    "tasks",
    "runtime",
    "type",
    "arch",
    "containers",
    "image",
    "environment",
    "user",
    "privileged",
    "entrypoint",
    "volumes",
    "path",
    "tmpfs",
    "size",
    "steps",
    "run",
    "command",
    "clone",
    "depth",
    "recurse_submodules",
    "save_cache",
    "key",
    "keys",
    "contents",
    "source_dir",
    "dest_dir",
    "paths",
    "restore_cache",
    "save_to_workspace",
    "restore_workspace",
    "depends",
    "task",
    "conditions",
    "when",
    "branch",
    "tag",
    "ref",
    "include",
    "exclude",
    "approval",
    "min_approvers",
    "ignore_failure",
    "from_variable",
    "docker_registries_auth",
    "username",
    "password",
    "auth",
    "working_dir",
    "shell",
    "tty",
    "a",
    "b",
    "<<",
];

const STRINGS: &[&str] = &[
    "",
    "v0",
    "pod",
    "amd64",
    "386",
    "x",
    "a",
    "b",
    "on_success",
    "on_failure",
    "on_skipped",
    "main",
    "/^rel/",
    "#(#",
    "/(/",
    "512Mi",
    "12Q",
    "basic",
    "encodedauth",
    "run",
    "clone",
    "line1\nline2",
    "{{ x",
    "{{ y }}",
    "~/project",
];

fn leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        (-3i64..200).prop_map(|n| serde_json::json!(n)),
        Just(serde_json::json!(1.5)),
        prop::sample::select(STRINGS).prop_map(|s| serde_json::json!(s)),
    ]
}

fn structure() -> impl Strategy<Value = serde_json::Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// A valid config whose parts are replaced by random structures, so that decoding gets deep
/// into runs, tasks and steps before meeting garbage.
fn mutated_example() -> impl Strategy<Value = serde_json::Value> {
    let base: serde_json::Value =
        serde_json::from_slice(&crate::fixture(ConfigFormat::Json)).unwrap_or_default();
    (
        prop::sample::select(vec![
            "/runs/0/when",
            "/runs/0/tasks/0/runtime",
            "/runs/0/tasks/0/steps/0",
            "/runs/0/tasks/0/steps/3",
            "/runs/0/tasks/1/depends",
            "/runs/0/tasks/3/depends/0",
            "/runs/0/tasks/3/approval",
            "/runs/0/tasks/0/environment",
            "/docker_registries_auth",
            "/runs/0/tasks/2",
        ]),
        structure(),
    )
        .prop_map(move |(pointer, replacement)| {
            let mut v = base.clone();
            if let Some(slot) = v.pointer_mut(pointer) {
                *slot = replacement;
            }
            v
        })
}

fn check(format: ConfigFormat, data: &[u8]) {
    let setup = RunSetup {
        ctx: RefContext::branch("main", "abc"),
        ..Default::default()
    };
    let result = parse_config(format, data, &setup.ctx);
    let failed = result.is_err();
    // generation must cope with whatever parsing accepted
    let runs = run_configs_for(result, &setup);
    if failed {
        assert_eq!(runs.len(), 1);
        assert!(runs[0].is_setup_error() && runs[0].tasks.is_empty());
    } else {
        assert!(
            runs.iter()
                .all(|r| !r.is_setup_error() && !r.tasks.is_empty())
        );
    }
}

fn check_structure(v: &serde_json::Value) {
    let json = serde_json::to_vec(v).unwrap_or_default();
    check(ConfigFormat::Json, &json);
    let yaml = serde_yaml_ng::to_string(v).unwrap_or_default();
    check(ConfigFormat::Yaml, yaml.as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        check(ConfigFormat::Yaml, &data);
        check(ConfigFormat::Json, &data);
    }

    #[test]
    fn yamlish_text(text in "[-:{}\\[\\],'\"&*!|>#<\n\t a-z0-9]{0,300}") {
        check(ConfigFormat::Yaml, text.as_bytes());
        check(ConfigFormat::Json, text.as_bytes());
    }

    #[test]
    fn random_structures(v in structure()) {
        check_structure(&serde_json::json!({ "runs": [v.clone()] }));
        check_structure(&serde_json::json!({ "runs": [{ "name": "r", "tasks": [v.clone()] }] }));
        check_structure(&v);
    }

    #[test]
    fn mutated_examples(v in mutated_example()) {
        check_structure(&v);
    }
}

proptest! {
    // the evaluators are slower: fewer cases
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn jsonnetish_text(text in "[-+*/:{}\\[\\](),.;'\"$ a-z0-9\n]{0,200}") {
        check(ConfigFormat::Jsonnet, text.as_bytes());
    }

    #[test]
    fn starlarkish_text(text in "(def main\\(ctx\\):\n    )?[-+*/:{}\\[\\](),.=;'\" a-z0-9\n]{0,200}") {
        check(ConfigFormat::Starlark, text.as_bytes());
    }

    #[test]
    fn jsonnet_structures(v in structure()) {
        // JSON is valid Jsonnet
        check(ConfigFormat::Jsonnet, &serde_json::to_vec(&v).unwrap_or_default());
    }
}
