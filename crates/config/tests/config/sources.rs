//! Config sources: file lookup order, size limit, Jsonnet (`ctx`) and Starlark (`main(ctx)`).

use agola_config::*;

const MINIMAL_YAML: &str =
    "runs: [{name: yaml, tasks: [{name: t, runtime: {containers: [{image: x}]}}]}]\n";
const MINIMAL_JSON: &str = r#"{"runs": [{"name": "json", "tasks": [{"name": "t", "runtime": {"containers": [{"image": "x"}]}}]}]}"#;
const MINIMAL_JSONNET: &str =
    "{runs: [{name: 'jsonnet', tasks: [{name: 't', runtime: {containers: [{image: 'x'}]}}]}]}";
const MINIMAL_STAR: &str = "def main(ctx):\n    return {'runs': [{'name': 'starlark', 'tasks': [{'name': 't', 'runtime': {'containers': [{'image': 'x'}]}}]}]}\n";

fn ctx() -> RefContext {
    RefContext::branch("main", "abc")
}

fn run_name(format: ConfigFormat, src: &str) -> String {
    let config = parse_config(format, src.as_bytes(), &ctx())
        .unwrap_or_else(|e| panic!("{format} must parse: {e}"));
    config.runs[0].name.clone()
}

fn error(format: ConfigFormat, src: &str, c: &RefContext) -> ConfigError {
    match parse_config(format, src.as_bytes(), c) {
        Err(Error::Invalid(errors)) => errors[0].clone(),
        Err(e) => panic!("{format}: expected an invalid config, got {e}"),
        Ok(_) => panic!("{format}: expected an error"),
    }
}

#[test]
fn lookup_order_first_found_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agola = dir.path().join(".agola");
    assert!(matches!(read_config_dir(dir.path()), Err(Error::NotFound)));
    assert!(matches!(
        load_config(dir.path(), &ctx()),
        Err(Error::NotFound)
    ));
    std::fs::create_dir(&agola).expect("mkdir");
    assert!(matches!(read_config_dir(dir.path()), Err(Error::NotFound)));
    let files = [
        ("config.yml", MINIMAL_YAML, "yaml"),
        ("config.json", MINIMAL_JSON, "json"),
        ("config.jsonnet", MINIMAL_JSONNET, "jsonnet"),
        ("config.star", MINIMAL_STAR, "starlark"),
    ];
    // each file added takes precedence over those before it
    for (file, content, name) in files {
        std::fs::write(agola.join(file), content).expect("write");
        let (format, _) = read_config_dir(dir.path()).expect("found");
        assert_eq!(format.file_name(), file);
        let config = load_config(dir.path(), &ctx()).expect("parses");
        assert_eq!(config.runs[0].name, name);
    }
    // a config.yaml spelling is not looked up
    assert_eq!(ConfigFormat::from_file_name("config.yaml"), None);
    assert_eq!(
        ConfigFormat::from_file_name(".agola/config.star"),
        Some(ConfigFormat::Starlark)
    );
    assert_eq!(ConfigFormat::Yaml.repo_path(), ".agola/config.yml");
}

#[test]
fn size_limit() {
    let big = format!("{MINIMAL_YAML}#{}\n", "x".repeat(MAX_CONFIG_SIZE));
    let e = parse_config(ConfigFormat::Yaml, big.as_bytes(), &ctx()).expect_err("too large");
    assert!(matches!(e, Error::TooLarge { .. }));
    assert!(e.to_string().contains("1048576 bytes limit"), "{e}");

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join(".agola")).expect("mkdir");
    std::fs::write(dir.path().join(".agola/config.yml"), &big).expect("write");
    assert!(matches!(
        read_config_dir(dir.path()),
        Err(Error::TooLarge { .. })
    ));

    // the limit also holds for what Jsonnet and Starlark produce
    let jsonnet = format!("{{runs: [], pad: std.repeat('x', {})}}", MAX_CONFIG_SIZE);
    let e = parse_config(ConfigFormat::Jsonnet, jsonnet.as_bytes(), &ctx()).expect_err("too large");
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    // a config right under the limit is fine
    let fits = format!(
        "{MINIMAL_YAML}#{}\n",
        "x".repeat(MAX_CONFIG_SIZE - MINIMAL_YAML.len() - 3)
    );
    parse_config(ConfigFormat::Yaml, fits.as_bytes(), &ctx()).expect("fits");
}

#[test]
fn all_formats_parse() {
    assert_eq!(run_name(ConfigFormat::Yaml, MINIMAL_YAML), "yaml");
    assert_eq!(run_name(ConfigFormat::Json, MINIMAL_JSON), "json");
    assert_eq!(run_name(ConfigFormat::Jsonnet, MINIMAL_JSONNET), "jsonnet");
    assert_eq!(run_name(ConfigFormat::Starlark, MINIMAL_STAR), "starlark");
}

#[test]
fn jsonnet_gets_ctx() {
    let src = "function(ctx) {runs: [{name: std.join(',', [ctx.ref_type, ctx.ref, ctx.branch, ctx.tag, ctx.pull_request_id, ctx.commit_sha]), tasks: [{name: 't', runtime: {containers: [{image: 'x'}]}}]}]}";
    assert_eq!(
        run_name(ConfigFormat::Jsonnet, src),
        "branch,refs/heads/main,main,,,abc"
    );
    let pr = RefContext::pull_request("12", "refs/pull/12/head", "def");
    let config = parse_config(ConfigFormat::Jsonnet, src.as_bytes(), &pr).expect("parses");
    assert_eq!(
        config.runs[0].name,
        "pull_request,refs/pull/12/head,,,12,def"
    );
}

#[test]
fn jsonnet_errors() {
    let c = ctx();
    let e = error(ConfigFormat::Jsonnet, "{\n  runs: [\n}", &c);
    assert!(e.message.starts_with("invalid jsonnet"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    let e = error(ConfigFormat::Jsonnet, "{\n  runs: error 'boom',\n}", &c);
    assert_eq!(e.message, "jsonnet error: boom");
    assert_eq!(e.line, Some(2), "{e}");
    let e = error(ConfigFormat::Jsonnet, "import '/etc/passwd'", &c);
    assert!(e.message.contains("imports are not supported"), "{e}");
    let e = error(ConfigFormat::Jsonnet, "importstr '/etc/passwd'", &c);
    assert!(e.message.contains("imports are not supported"), "{e}");
    let e = error(ConfigFormat::Jsonnet, "local f(x) = f(x + 1); f(0)", &c);
    assert!(e.message.contains("jsonnet evaluation failed"), "{e}");
    let e = error(ConfigFormat::Jsonnet, "{\n  a: 1 + 'x' - 2,\n}", &c);
    assert!(e.message.contains("InvalidBinaryOpTypes"), "{e}");
    assert!(!e.message.contains("offset"), "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    let e = error(ConfigFormat::Jsonnet, "{a: undefined_var}", &c);
    assert!(e.message.contains("UnknownVariable"), "{e}");
    assert!(!e.message.contains("Inline"), "{e}");
    // a valid jsonnet program that is not a valid config
    let e = error(ConfigFormat::Jsonnet, "{runs: []}", &c);
    assert_eq!(e.message, "config has no runs");
    assert_eq!(e.line, None);
}

#[test]
fn starlark_gets_ctx() {
    let src = "def main(ctx):\n    name = ','.join([ctx['ref_type'], ctx['ref'], ctx['branch'], ctx['tag'], ctx['pull_request_id'], ctx['commit_sha']])\n    return {'runs': [{'name': name, 'tasks': [{'name': 't', 'runtime': {'containers': [{'image': 'x'}]}}]}]}\n";
    assert_eq!(
        run_name(ConfigFormat::Starlark, src),
        "branch,refs/heads/main,main,,,abc"
    );
    let tag = RefContext::tag("v1", "def");
    let config = parse_config(ConfigFormat::Starlark, src.as_bytes(), &tag).expect("parses");
    assert_eq!(config.runs[0].name, "tag,refs/tags/v1,,v1,,def");
}

#[test]
fn starlark_values() {
    // tuples, ints, bools and None are accepted; print output is dropped
    let src = "def main(ctx):\n    print('hello')\n    return {'runs': ({'name': 'r', 'tasks': [{'name': 't', 'runtime': {'containers': [{'image': 'x', 'privileged': True, 'user': None}]}, 'approval': 2, 'steps': [{'clone': {'depth': 5}}]}]},)}\n";
    let config = parse_config(ConfigFormat::Starlark, src.as_bytes(), &ctx()).expect("parses");
    let t = &config.runs[0].tasks[0];
    assert!(t.runtime.containers[0].privileged);
    assert_eq!(t.approval.min_approvers, 2);
    assert_eq!(
        t.steps[0],
        ConfigStep::Clone(CloneStep {
            depth: Some(5),
            recurse_submodules: false
        })
    );
}

#[test]
fn starlark_errors() {
    let c = ctx();
    let e = error(ConfigFormat::Starlark, "def main(ctx):\n    return {\n", &c);
    assert!(e.message.starts_with("starlark error"), "{e}");
    assert!(e.line.is_some(), "{e}");
    let e = error(
        ConfigFormat::Starlark,
        "def main(ctx):\n    x = 1\n    return undefined_name\n",
        &c,
    );
    assert!(e.message.contains("undefined_name"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    let e = error(
        ConfigFormat::Starlark,
        "def main(ctx):\n    fail('boom')\n",
        &c,
    );
    assert!(e.message.contains("boom"), "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    let e = error(ConfigFormat::Starlark, "x = 1\n", &c);
    assert_eq!(e.message, "starlark config must define main(ctx)");
    let e = error(
        ConfigFormat::Starlark,
        "def main(ctx):\n    return [1]\n",
        &c,
    );
    assert!(e.message.contains("must return a dict"), "{e}");
    let e = error(
        ConfigFormat::Starlark,
        "def main(ctx):\n    return {1: 2}\n",
        &c,
    );
    assert!(e.message.contains("keys must be strings"), "{e}");
    let e = error(
        ConfigFormat::Starlark,
        "def main(ctx):\n    return {'runs': [struct(a = 1)]}\n",
        &c,
    );
    assert!(e.message.contains("only dicts, lists"), "{e}");
    let e = error(
        ConfigFormat::Starlark,
        "load('other.star', 'x')\ndef main(ctx):\n    return {}\n",
        &c,
    );
    assert!(e.message.starts_with("starlark error"), "{e}");
    let e = error(
        ConfigFormat::Starlark,
        "def main(ctx):\n    return main(ctx)\n",
        &c,
    );
    assert!(e.message.starts_with("starlark error"), "{e}");
}

#[test]
fn starlark_runaway_loops_are_stopped() {
    let src = "def main(ctx):\n    n = 0\n    for i in range(100000000):\n        n += 1\n    return {}\n";
    let by_statements = EvalLimits {
        max_statements: 10_000,
        ..Default::default()
    };
    let by_time = EvalLimits {
        timeout: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    for (limits, reason) in [
        (by_statements, "too many statements"),
        (by_time, "time limit"),
    ] {
        let started = std::time::Instant::now();
        let Err(Error::Invalid(errors)) =
            parse_config_with_limits(ConfigFormat::Starlark, src.as_bytes(), &ctx(), &limits)
        else {
            panic!("a runaway loop must fail")
        };
        assert!(
            errors[0].message.contains("execution budget"),
            "{}",
            errors[0]
        );
        assert!(errors[0].message.contains(reason), "{}", errors[0]);
        assert_eq!(errors[0].line, Some(4));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}

#[test]
fn starlark_deep_results_fail_cleanly() {
    let src = "def main(ctx):\n    x = []\n    for i in range(100000):\n        x = [x]\n    return {'runs': x}\n";
    let e = error(ConfigFormat::Starlark, src, &ctx());
    assert!(e.message.contains("nested deeper"), "{e}");
}

#[test]
fn deeply_nested_programs_fail_without_overflowing_the_stack() {
    let n = 100_000;
    let cases: Vec<(ConfigFormat, String, &str)> = vec![
        (
            ConfigFormat::Jsonnet,
            format!("{}1{}", "[".repeat(n), "]".repeat(n)),
            "nested too deeply",
        ),
        (
            ConfigFormat::Jsonnet,
            format!("{{a: 1{}}}", "+1".repeat(n)),
            "nested too deeply",
        ),
        (
            ConfigFormat::Jsonnet,
            format!("{}1", "local x = 1; ".repeat(1000)),
            "nested too deeply",
        ),
        (
            ConfigFormat::Jsonnet,
            format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)),
            "nested too deeply",
        ),
        // deep values built at run time
        (
            ConfigFormat::Jsonnet,
            "std.foldl(function(acc, x) [acc], std.range(1, 100000), [])".into(),
            "jsonnet evaluation failed",
        ),
        (
            ConfigFormat::Jsonnet,
            "std.foldl(function(acc, x) [acc], std.range(1, 150), [])".into(),
            "recursion limit",
        ),
        (
            ConfigFormat::Jsonnet,
            "local f(x) = f(x + 1); f(0)".into(),
            "StackOverflow",
        ),
        (
            ConfigFormat::Starlark,
            format!(
                "def main(ctx):\n    return {{'a': {}{}}}\n",
                "[".repeat(n),
                "]".repeat(n)
            ),
            "nested too deeply",
        ),
        (
            ConfigFormat::Starlark,
            format!("def main(ctx):\n    return {{'a': {}1}}\n", "-".repeat(n)),
            "nested too deeply",
        ),
        (
            ConfigFormat::Starlark,
            format!(
                "def main(ctx):\n    return {{'a': 1{}}}\n",
                " \\\n+1".repeat(1000)
            ),
            "nested too deeply",
        ),
        (
            ConfigFormat::Starlark,
            format!("def main(ctx):\n{}return {{}}\n", " ".repeat(300)),
            "nested too deeply",
        ),
        // just under the bound: evaluated normally
        (
            ConfigFormat::Starlark,
            format!(
                "def main(ctx):\n    return {{'a': {}{}}}\n",
                "[".repeat(190),
                "]".repeat(190)
            ),
            "nested deeper than 128",
        ),
    ];
    for (format, src, want) in cases {
        let e = error(format, &src, &ctx());
        assert!(
            e.message.contains(want),
            "{format} ({} bytes): {e}",
            src.len()
        );
    }
}
