//! Every validation rule of spec 60 §8.2: the message, the run/task/step it names and, for
//! YAML/JSON, the position.

use agola_config::*;

use crate::{one_task, parse_err};

fn name(s: &str) -> Option<Ident> {
    Some(Ident::Name(s.into()))
}

struct Case {
    what: &'static str,
    yaml: String,
    message: &'static str,
    run: Option<Ident>,
    task: Option<Ident>,
    step: Option<usize>,
    /// Expected line (None = do not check).
    line: Option<usize>,
}

fn case(what: &'static str, yaml: impl Into<String>, message: &'static str) -> Case {
    Case {
        what,
        yaml: yaml.into(),
        message,
        run: name("r"),
        task: name("t"),
        step: None,
        line: None,
    }
}

impl Case {
    fn at(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
    fn step(mut self, step: usize) -> Self {
        self.step = Some(step);
        self
    }
    fn run_only(mut self) -> Self {
        self.task = None;
        self
    }
    fn top(mut self) -> Self {
        self.run = None;
        self.task = None;
        self
    }
    fn task(mut self, t: Option<Ident>) -> Self {
        self.task = t;
        self
    }
    fn run(mut self, r: Option<Ident>) -> Self {
        self.run = r;
        self
    }
}

/// Three tasks a, b, c in run r; `deps` are extra lines for task c.
fn graph(a_deps: &str, b_deps: &str, c_deps: &str) -> String {
    format!(
        "runs:\n  - name: r\n    tasks:\n      - {{name: a, runtime: {{containers: [{{image: x}}]}}{a_deps}}}\n      - {{name: b, runtime: {{containers: [{{image: x}}]}}{b_deps}}}\n      - {{name: c, runtime: {{containers: [{{image: x}}]}}{c_deps}}}\n"
    )
}

fn steps(s: &str) -> String {
    one_task(&format!("steps:\n{s}"))
}

fn cases() -> Vec<Case> {
    let long = "n".repeat(101);
    vec![
        // structure
        case("empty config", "", "config is empty").top(),
        case("not a map", "[1, 2]", "config must be a map")
            .top()
            .at(1),
        case("no runs", "version: v0\n", "config has no runs").top(),
        case("empty runs", "runs: []\n", "config has no runs")
            .top()
            .at(1),
        case("runs not a list", "runs: {a: 1}\n", "runs must be a list")
            .top()
            .at(1),
        case(
            "unknown top-level key",
            format!("foo: 1\n{}", one_task("")),
            "unknown field \"foo\" in config",
        )
        .top()
        .at(1),
        case(
            "bad version",
            format!("version: v1\n{}", one_task("")),
            "unsupported config version \"v1\"",
        )
        .top()
        .at(1),
        case(
            "run without tasks",
            "runs:\n  - name: r\n",
            "run has no tasks",
        )
        .run_only()
        .at(2),
        case(
            "run with empty tasks",
            "runs:\n  - name: r\n    tasks: []\n",
            "run has no tasks",
        )
        .run_only()
        .at(2),
        case(
            "unknown run key",
            one_task("").replace("  - name: r\n", "  - name: r\n    environment: {}\n"),
            "unknown field \"environment\" in run",
        )
        .run_only()
        .at(3),
        // names
        case(
            "run without name",
            "runs:\n  - tasks: [{name: t, runtime: {containers: [{image: x}]}}]\n",
            "run has no name",
        )
        .run(Some(Ident::Index(1)))
        .run_only()
        .at(2),
        case(
            "empty run name",
            one_task("").replace("name: r", "name: ''"),
            "run name is empty",
        )
        .run(Some(Ident::Index(1)))
        .run_only()
        .at(2),
        case(
            "long run name",
            one_task("").replace("name: r", &format!("name: {long}")),
            "run name is longer than 100 characters",
        )
        .run(Some(Ident::Name(long.clone())))
        .run_only()
        .at(2),
        case(
            "duplicate run names",
            format!("{}{}", one_task(""), one_task("").replace("runs:\n", "")),
            "duplicate run name \"r\"",
        )
        .run_only()
        .at(6),
        case(
            "task without name",
            "runs:\n  - name: r\n    tasks:\n      - runtime: {containers: [{image: x}]}\n",
            "task has no name",
        )
        .task(Some(Ident::Index(1)))
        .at(4),
        case(
            "empty task name",
            one_task("").replace("name: t", "name: ''"),
            "task name is empty",
        )
        .task(Some(Ident::Index(1)))
        .at(4),
        case(
            "long task name",
            one_task("").replace("name: t", &format!("name: {long}")),
            "task name is longer than 100 characters",
        )
        .task(Some(Ident::Name(long.clone())))
        .at(4),
        case(
            "duplicate task names",
            graph("", "", "").replace("name: b", "name: a"),
            "duplicate task name \"a\"",
        )
        .task(name("a"))
        .at(5),
        case(
            "long step name",
            steps(&format!("  - {{run: {{command: x, name: {long}}}}}")),
            "step name is longer than 100 characters",
        )
        .step(1)
        .at(7),
        // runtime
        case(
            "no runtime",
            "runs:\n  - name: r\n    tasks:\n      - name: t\n",
            "task has no runtime",
        )
        .at(4),
        case(
            "no containers",
            one_task("").replace("{containers: [{image: alpine}]}", "{arch: amd64}"),
            "runtime has no containers",
        )
        .at(5),
        case(
            "empty containers",
            one_task("").replace("[{image: alpine}]", "[]"),
            "runtime has no containers",
        )
        .at(5),
        case(
            "container without image",
            one_task("").replace("{image: alpine}", "{user: root}"),
            "container 1 has no image",
        )
        .at(5),
        case(
            "empty image",
            one_task("").replace("{image: alpine}", "{image: ''}"),
            "container 1 has no image",
        )
        .at(5),
        case(
            "runtime type",
            one_task("").replace("{containers", "{type: docker, containers"),
            "unsupported runtime type \"docker\" (only pod)",
        )
        .at(5),
        case(
            "invalid arch",
            one_task("").replace("{containers", "{arch: x86, containers"),
            "invalid arch \"x86\"",
        )
        .at(5),
        case(
            "non-tmpfs volume",
            one_task("").replace(
                "{image: alpine}",
                "{image: alpine, volumes: [{path: /data}]}",
            ),
            "volume \"/data\" is not a tmpfs volume",
        )
        .at(5),
        case(
            "volume without path",
            one_task("").replace("{image: alpine}", "{image: alpine, volumes: [{tmpfs: {}}]}"),
            "volume has no path",
        )
        .at(5),
        case(
            "invalid tmpfs size",
            one_task("").replace(
                "{image: alpine}",
                "{image: alpine, volumes: [{path: /d, tmpfs: {size: 12Q}}]}",
            ),
            "invalid tmpfs size \"12Q\"",
        )
        .at(5),
        case(
            "unknown container key",
            one_task("").replace("{image: alpine}", "{image: alpine, ports: [80]}"),
            "unknown field \"ports\" in container 1",
        )
        .at(5),
        // dependencies
        case(
            "unknown dependency",
            graph("", "", ", depends: [z]"),
            "dependency on unknown task \"z\"",
        )
        .task(name("c"))
        .at(6),
        case(
            "self dependency",
            graph("", "", ", depends: [c]"),
            "task depends on itself",
        )
        .task(name("c"))
        .at(6),
        case(
            "duplicate dependency",
            graph(
                "",
                "",
                ", depends: [a, {task: a, conditions: [on_failure]}]",
            ),
            "duplicate dependency on task \"a\"",
        )
        .task(name("c"))
        .at(6),
        case(
            "two-task cycle",
            graph(", depends: [b]", ", depends: [a]", ""),
            "dependency cycle: a -> b -> a",
        )
        .task(name("a"))
        .at(4),
        case(
            "three-task cycle",
            graph(", depends: [c]", ", depends: [a]", ", depends: [b]"),
            "dependency cycle: a -> c -> b -> a",
        )
        .task(name("a"))
        .at(4),
        case(
            "redundant edge",
            graph("", ", depends: [a]", ", depends: [a, b]"),
            "redundant dependency on task \"a\": it is already an ancestor of dependency \"b\"",
        )
        .task(name("c"))
        .at(6),
        case(
            "invalid condition",
            graph("", "", ", depends: [{a: [on_error]}]"),
            "invalid dependency condition \"on_error\"",
        )
        .task(name("c"))
        .at(6),
        case(
            "malformed dependency",
            graph("", "", ", depends: [{a: [], b: []}]"),
            "a dependency is a task name",
        )
        .task(name("c"))
        .at(6),
        // steps
        case(
            "run without command",
            steps("  - {type: run, name: x}"),
            "run step has no command",
        )
        .step(1)
        .at(7),
        case(
            "empty command",
            steps("  - run: ''"),
            "run step has no command",
        )
        .step(1)
        .at(7),
        case(
            "multi-line without name",
            steps("  - run: |\n      make\n      make test"),
            "run step with a multi-line command needs a name",
        )
        .step(1)
        .at(7),
        case(
            "save_cache without key",
            steps("  - save_cache: {contents: [{source_dir: s}]}"),
            "save_cache step needs a key",
        )
        .step(1)
        .at(7),
        case(
            "unterminated key template",
            steps("  - save_cache: {key: 'k-{{ arch', contents: [{source_dir: s}]}"),
            "unterminated {{ template",
        )
        .step(1)
        .at(7),
        case(
            "restore_cache without keys",
            steps("  - restore_cache: {dest_dir: d}"),
            "restore_cache step needs at least one key",
        )
        .step(1)
        .at(7),
        case(
            "restore_cache empty keys",
            steps("  - restore_cache: {keys: []}"),
            "restore_cache step needs at least one key",
        )
        .step(1)
        .at(7),
        case(
            "save_cache without contents",
            steps("  - save_cache: {key: k}"),
            "save_cache step has no contents",
        )
        .step(1)
        .at(7),
        case(
            "workspace without paths",
            steps("  - save_to_workspace: {contents: [{source_dir: s}]}"),
            "save_to_workspace content needs paths",
        )
        .step(1)
        .at(7),
        case(
            "clone depth 0",
            steps("  - clone: {depth: 0}"),
            "clone depth must be >= 1",
        )
        .step(1)
        .at(7),
        case(
            "clone depth negative",
            steps("  - clone: {depth: -3}"),
            "clone depth must be a non-negative integer",
        )
        .step(1)
        .at(7),
        case(
            "unknown step type",
            steps("  - compile: {}"),
            "unknown step type \"compile\"",
        )
        .step(1)
        .at(7),
        case(
            "unknown long step type",
            steps("  - {type: compile}"),
            "unknown step type \"compile\"",
        )
        .step(1)
        .at(7),
        case(
            "ambiguous step",
            steps("  - {run: a, clone: b}"),
            "a step needs a type",
        )
        .step(1)
        .at(7),
        case(
            "unknown step field",
            steps("  - run: {command: x, timeout: 3}"),
            "unknown field \"timeout\" in run step",
        )
        .step(1)
        .at(7),
        case("step not a map", steps("  - [run]"), "a step must be a map")
            .step(1)
            .at(7),
        case(
            "second step is named",
            steps("  - run: ok\n  - run: {tty: yes, command: x}"),
            "tty must be true or false",
        )
        .step(2)
        .at(8),
        // approval
        case(
            "approval zero",
            one_task("approval: 0"),
            "approval must be true, false, an integer >= 1",
        )
        .at(6),
        case(
            "approval string",
            one_task("approval: twice"),
            "approval must be true, false, an integer >= 1",
        )
        .at(6),
        case(
            "min_approvers zero",
            one_task("approval: {min_approvers: 0}"),
            "approval must be true, false, an integer >= 1",
        )
        .at(6),
        case(
            "approval without min",
            one_task("approval: {}"),
            "approval must be true, false, an integer >= 1",
        )
        .at(6),
        // when, values, registries
        case(
            "invalid regex",
            one_task("when: {branch: '/(/'}"),
            "invalid regular expression \"/(/\"",
        )
        .at(6),
        case(
            "unknown when kind",
            one_task("when: {commit: x}"),
            "unknown field \"commit\" in when",
        )
        .at(6),
        case(
            "unknown when condition key",
            one_task("when: {branch: {only: x}}"),
            "unknown field \"only\" in when branch",
        )
        .at(6),
        case(
            "bad value",
            one_task("environment: {A: [1]}"),
            "environment \"A\" must be a string or {from_variable: name}",
        )
        .at(6),
        case(
            "bad from_variable",
            one_task("environment: {A: {from_variable: x, other: y}}"),
            "must be a string or {from_variable: name}",
        )
        .at(6),
        case(
            "environment not a map",
            one_task("environment: [A]"),
            "environment must be a map",
        )
        .at(6),
        case(
            "bad registry auth type",
            one_task("docker_registries_auth: {r.io: {type: token}}"),
            "unknown auth type \"token\"",
        )
        .at(6),
        case(
            "unknown registry auth field",
            one_task("docker_registries_auth: {r.io: {user: u}}"),
            "unknown field \"user\" in docker registry auth \"r.io\"",
        )
        .at(6),
        case(
            "unknown task key",
            one_task("timeout: 3"),
            "unknown field \"timeout\" in task",
        )
        .at(6),
        case(
            "wrong type",
            one_task("ignore_failure: maybe"),
            "ignore_failure must be true or false",
        )
        .at(6),
        // source syntax
        case("yaml syntax", "runs: [\n", "invalid yaml").top().at(2),
        case(
            "duplicate keys",
            format!("{}runs: []\n", one_task("")),
            "duplicate key \"runs\"",
        )
        .top()
        .at(6),
    ]
}

#[test]
fn every_rule_names_run_task_step_and_position() {
    // every case is checked before failing, so one run shows all broken rules
    let mut failures = Vec::new();
    for c in cases() {
        let errors = parse_err(&c.yaml);
        let Some(e) = errors.iter().find(|e| e.message.contains(c.message)) else {
            failures.push(format!(
                "{}: no error containing {:?}; got:\n{}\n--- config:\n{}",
                c.what,
                c.message,
                errors
                    .iter()
                    .map(|e| format!("  {e}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                c.yaml
            ));
            continue;
        };
        if (&e.run, &e.task, e.step) != (&c.run, &c.task, c.step) {
            failures.push(format!(
                "{}: names {:?} {:?} {:?}, want {:?} {:?} {:?}: {e}",
                c.what, e.run, e.task, e.step, c.run, c.task, c.step
            ));
        }
        if let Some(line) = c.line
            && (e.line != Some(line) || e.column.is_none())
        {
            failures.push(format!("{}: want line {line}: {e}", c.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_errors_are_collected() {
    let yaml = "runs:\n  - name: r\n    tasks:\n      - name: t\n        runtime: {containers: [{image: ''}]}\n        approval: 0\n        steps:\n          - run: ''\n          - clone: {depth: 0}\n        depends: [missing]\n  - name: r\n    tasks: []\n";
    let errors = parse_err(yaml);
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    for want in [
        "container 1 has no image",
        "approval must be",
        "run step has no command",
        "clone depth must be >= 1",
        "dependency on unknown task \"missing\"",
        "run has no tasks",
        "duplicate run name \"r\"",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(want)),
            "missing {want:?} in {messages:#?}"
        );
    }
}

#[test]
fn error_display_names_everything() {
    let errors = parse_err(&steps("  - run: ok\n  - clone: {depth: 0}"));
    assert_eq!(
        errors[0].to_string(),
        "run \"r\", task \"t\", step 2: clone depth must be >= 1 (line 8, column 28)"
    );
    let errors = parse_err("runs:\n  - tasks: []\n");
    assert!(errors.iter().any(|e| e.to_string().starts_with("run #1: ")));
}

#[test]
fn json_errors_have_positions() {
    let ctx = RefContext::branch("main", "a");
    let bad_syntax = b"{\n  \"runs\": [\n    {\"name\": \"r\",}\n  ]\n}";
    let Err(Error::Invalid(errors)) = parse_config(ConfigFormat::Json, bad_syntax, &ctx) else {
        panic!("invalid json must fail")
    };
    assert_eq!(errors[0].line, Some(3));
    assert_eq!(errors[0].message, "invalid json: trailing comma");

    let bad_rule = b"{\n  \"runs\": [\n    {\n      \"name\": \"r\",\n      \"tasks\": [{\"name\": \"t\", \"runtime\": {\"containers\": [{\"image\": \"x\"}]}, \"steps\": [{\"clone\": {\"depth\": 0}}]}]\n    }\n  ]\n}";
    let Err(Error::Invalid(errors)) = parse_config(ConfigFormat::Json, bad_rule, &ctx) else {
        panic!("invalid config must fail")
    };
    assert_eq!(errors[0].line, Some(5));
    assert_eq!(errors[0].step, Some(1));
    assert_eq!(errors[0].task, name("t"));

    // tab-indented JSON is JSON even where YAML readers disagree
    let tabs = "{\n\t\"runs\": [\n\t\t{\"name\": \"r\", \"tasks\": [{\"name\": \"t\", \"runtime\": {\"containers\": [{\"image\": \"x\"}]}}]}\n\t]\n}";
    parse_config(ConfigFormat::Json, tabs.as_bytes(), &ctx).expect("tab-indented json parses");
    // duplicate keys are errors, not last-wins
    let dup = b"{\"runs\": [], \"runs\": []}";
    let Err(Error::Invalid(errors)) = parse_config(ConfigFormat::Json, dup, &ctx) else {
        panic!("duplicate keys must fail")
    };
    assert!(errors[0].message.contains("duplicate key"));
}

#[test]
fn invalid_configs_become_one_setup_error_run() {
    let setup = RunSetup {
        ctx: RefContext::branch("main", "a"),
        group: "/project/p/branch/main".into(),
        ..Default::default()
    };
    let result = parse_config(ConfigFormat::Yaml, b"runs: []\n", &setup.ctx);
    let runs = run_configs_for(result, &setup);
    assert_eq!(runs.len(), 1);
    let rc = &runs[0];
    assert_eq!(rc.name, SETUP_ERROR_RUN_NAME);
    assert!(rc.is_setup_error());
    assert!(rc.tasks.is_empty());
    assert_eq!(rc.group, "/project/p/branch/main");
    assert_eq!(
        rc.setup_errors,
        vec!["config has no runs (line 1, column 7)".to_owned()]
    );

    let runs = run_configs_for(Err(Error::NotFound), &setup);
    assert_eq!(
        runs[0].setup_errors,
        vec!["no config file found".to_owned()]
    );
}
