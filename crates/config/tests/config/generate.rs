//! Run config generation (spec 60 §10): clone script, registry-auth merge, variables and
//! `variable_refs`, levels, defaults, static environment.

use std::collections::BTreeMap;

use agola_config::*;

use crate::{one_task, parse_ok, seq_ids};

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn generate(yaml: &str, variables: BTreeMap<String, String>) -> RunConfig {
    let config = parse_ok(yaml);
    let setup = RunSetup {
        ctx: RefContext::branch("main", "abc"),
        variables,
        ..Default::default()
    };
    let mut rcs = generate_run_configs_with(&config, &setup, &mut seq_ids());
    assert_eq!(rcs.len(), 1);
    rcs.remove(0)
}

fn task<'a>(rc: &'a RunConfig, name: &str) -> &'a RunConfigTask {
    rc.task_by_name(name).expect("task exists")
}

/// depth, recurse_submodules, lines present, text absent.
type CloneCase = (
    Option<u32>,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn clone_script_variants() {
    let cases: [CloneCase; 4] = [
        (
            None,
            false,
            &[
                "git clone \"$AGOLA_REPOSITORY_URL\" .\n",
                "git fetch origin \"$AGOLA_GIT_REF\"\n",
            ],
            &["--depth", "--recurse-submodules", "submodule"],
        ),
        (
            Some(50),
            false,
            &[
                "git clone --depth 50 \"$AGOLA_REPOSITORY_URL\" .\n",
                "git fetch --depth 50 origin \"$AGOLA_GIT_REF\"\n",
            ],
            &["--recurse-submodules"],
        ),
        (
            None,
            true,
            &[
                "git clone --recurse-submodules \"$AGOLA_REPOSITORY_URL\" .\n",
                "git submodule update --init --recursive\n",
            ],
            &["--depth"],
        ),
        (
            Some(1),
            true,
            &[
                "git clone --depth 1 --recurse-submodules \"$AGOLA_REPOSITORY_URL\" .\n",
                "git fetch --depth 1 origin \"$AGOLA_GIT_REF\"\n",
                "git submodule update --init --recursive --depth 1\n",
            ],
            &[],
        ),
    ];
    for (depth, recurse, present, absent) in cases {
        let s = clone_script(depth, recurse);
        for p in present {
            assert!(s.contains(p), "{depth:?} {recurse}: missing {p:?} in\n{s}");
        }
        for a in absent {
            assert!(
                !s.contains(a),
                "{depth:?} {recurse}: unexpected {a:?} in\n{s}"
            );
        }
    }
}

#[test]
fn clone_script_sets_up_ssh_before_cloning() {
    let s = clone_script(None, false);
    let at = |needle: &str| {
        s.find(needle)
            .unwrap_or_else(|| panic!("missing {needle:?} in\n{s}"))
    };
    // private key in ~/.ssh with private permissions
    assert!(at("chmod 700 ~/.ssh") < at("$AGOLA_SSHPRIVKEY"));
    assert!(at("chmod 600 ~/.ssh/id_rsa") < at("$AGOLA_SSHPRIVKEY"));
    assert!(s.contains("cat > ~/.ssh/id_rsa <<EOF\n$AGOLA_SSHPRIVKEY\nEOF"));
    // host key only when set
    assert!(s.contains("if [ -n \"$AGOLA_SSHHOSTKEY\" ]; then"));
    assert!(s.contains("cat >> ~/.ssh/known_hosts <<EOF\n$AGOLA_SSHHOSTKEY\nEOF"));
    // ssh config for host and port, no passwords, host key check off only when asked
    assert!(s.contains("Host $AGOLA_GIT_HOST\n"));
    assert!(s.contains("\tPort $AGOLA_GIT_PORT\n"));
    assert!(s.contains("\tPasswordAuthentication no\n"));
    let skip = at("if [ \"$AGOLA_SKIPSSHHOSTKEYCHECK\" = \"1\" ]; then");
    assert!(skip < at("StrictHostKeyChecking no"));
    // tracing starts after the key is written
    assert!(at("set -x") > at("$AGOLA_SSHPRIVKEY"));
    // then clone, fetch and checkout of the sha or FETCH_HEAD
    assert!(at("git clone") < at("git fetch") && at("git fetch") < at("git checkout"));
    assert!(s.contains("git checkout \"$AGOLA_GIT_COMMITSHA\""));
    assert!(s.contains("git checkout FETCH_HEAD"));
}

#[test]
fn clone_step_becomes_a_named_run_step() {
    let rc = generate(
        &one_task("steps: [{clone: {depth: 2}}, {run: make}]"),
        BTreeMap::new(),
    );
    let t = task(&rc, "t");
    let Step::Run(s) = &t.steps[0] else {
        panic!("run step")
    };
    assert_eq!(s.name, "Clone repository and checkout code");
    assert_eq!(s.command, clone_script(Some(2), false));
    assert!(s.tty && s.environment.is_empty());
}

#[test]
fn registry_auth_merge_global_run_task() {
    let yaml = "docker_registries_auth:\n  a.io: {username: global-a, password: pa}\n  b.io: {username: global-b}\n  c.io: {username: global-c}\nruns:\n  - name: r\n    docker_registries_auth:\n      b.io: {username: run-b, password: {from_variable: rb}}\n      c.io: {type: encodedauth, auth: run-c}\n    tasks:\n      - name: t\n        runtime: {containers: [{image: x}]}\n        docker_registries_auth:\n          c.io: {username: task-c, password: {from_variable: missing}}\n          d.io: {username: {from_variable: du}, password: dp}\n      - name: u\n        runtime: {containers: [{image: x}]}\n";
    let rc = generate(yaml, vars(&[("rb", "RB"), ("du", "DU")]));
    let t = task(&rc, "t");
    let auth = |host: &str| {
        let a = &t.docker_registries_auth[host];
        (
            a.auth_type,
            a.username.as_str(),
            a.password.as_str(),
            a.auth.as_str(),
        )
    };
    use DockerRegistryAuthType::*;
    assert_eq!(auth("a.io"), (Basic, "global-a", "pa", ""));
    assert_eq!(auth("b.io"), (Basic, "run-b", "RB", ""));
    // a level replaces the whole entry: no run-level `auth` or type left on c.io
    assert_eq!(auth("c.io"), (Basic, "task-c", "", ""));
    assert_eq!(auth("d.io"), (Basic, "DU", "dp", ""));
    assert_eq!(t.docker_registries_auth.len(), 4);
    let refs = &t.variable_refs.docker_registries_auth;
    assert_eq!(refs["b.io"].password, "rb");
    assert_eq!(refs["c.io"].password, "missing");
    assert_eq!(refs["d.io"].username, "du");
    assert!(!refs.contains_key("a.io"));

    let u = task(&rc, "u");
    assert_eq!(u.docker_registries_auth.len(), 3);
    assert_eq!(
        u.docker_registries_auth["c.io"].auth_type,
        DockerRegistryAuthType::EncodedAuth
    );
    assert_eq!(u.docker_registries_auth["c.io"].auth, "run-c");
}

#[test]
fn merge_registries_auth_replaces_per_registry() {
    let level = |pairs: &[(&str, &str)]| -> BTreeMap<String, RegistryAuth> {
        pairs
            .iter()
            .map(|(h, u)| {
                (
                    h.to_string(),
                    RegistryAuth {
                        username: Value::Literal(u.to_string()),
                        ..Default::default()
                    },
                )
            })
            .collect()
    };
    let merged = merge_registries_auth(&[
        &level(&[("a", "1"), ("b", "1")]),
        &level(&[("b", "2"), ("c", "2")]),
        &level(&[("c", "3")]),
    ]);
    let got: Vec<(String, Value)> = merged.into_iter().map(|(h, a)| (h, a.username)).collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), Value::Literal("1".into())),
            ("b".into(), Value::Literal("2".into())),
            ("c".into(), Value::Literal("3".into())),
        ]
    );
}

#[test]
fn variables_are_substituted_and_recorded() {
    let yaml = "runs:\n  - name: r\n    tasks:\n      - name: t\n        runtime:\n          containers:\n            - image: x\n              environment: {DB_PASS: {from_variable: db}, PLAIN: p}\n        environment: {TOKEN: {from_variable: token}, GONE: {from_variable: nope}, LIT: l}\n        steps:\n          - run: make\n          - run: {command: deploy, environment: {KEY: {from_variable: key}}}\n";
    let rc = generate(yaml, vars(&[("db", "D"), ("token", "T"), ("key", "K")]));
    let t = task(&rc, "t");
    assert_eq!(t.environment, vars(&[("TOKEN", "T"), ("LIT", "l")]));
    assert_eq!(
        t.variable_refs.environment,
        vars(&[("TOKEN", "token"), ("GONE", "nope")])
    );
    assert_eq!(
        t.runtime.containers[0].environment,
        vars(&[("DB_PASS", "D"), ("PLAIN", "p")])
    );
    assert_eq!(
        t.variable_refs.container_environment[&0],
        vars(&[("DB_PASS", "db")])
    );
    let Step::Run(deploy) = &t.steps[1] else {
        panic!("run step")
    };
    assert_eq!(deploy.environment, vars(&[("KEY", "K")]));
    assert_eq!(
        t.variable_refs.step_environment[&1],
        vars(&[("KEY", "key")])
    );
    assert!(!t.variable_refs.step_environment.contains_key(&0));
}

#[test]
fn reapplying_variables_follows_the_refs() {
    let yaml = "docker_registries_auth:\n  r.io: {username: u, password: {from_variable: pw}}\nruns:\n  - name: r\n    tasks:\n      - name: t\n        runtime:\n          containers:\n            - {image: x, environment: {C: {from_variable: c}}}\n        environment: {A: {from_variable: a}, B: {from_variable: b}, L: lit}\n        steps:\n          - run: {command: x, environment: {S: {from_variable: s}}}\n";
    let rc = generate(
        yaml,
        vars(&[("a", "1"), ("b", "1"), ("c", "1"), ("s", "1"), ("pw", "1")]),
    );
    let mut t = task(&rc, "t").clone();
    t.reapply_variables(&vars(&[("a", "2"), ("c", "2"), ("s", "2")]));
    // b and pw no longer resolve: the env var goes away, the credential empties
    assert_eq!(t.environment, vars(&[("A", "2"), ("L", "lit")]));
    assert_eq!(t.runtime.containers[0].environment, vars(&[("C", "2")]));
    let Step::Run(s) = &t.steps[0] else {
        panic!("run step")
    };
    assert_eq!(s.environment, vars(&[("S", "2")]));
    assert_eq!(t.docker_registries_auth["r.io"].password, "");
    assert_eq!(t.docker_registries_auth["r.io"].username, "u");
}

#[test]
fn defaults_and_overrides() {
    let rc = generate(&one_task("steps: [{run: x}]"), BTreeMap::new());
    let t = task(&rc, "t");
    assert_eq!(
        (t.working_dir.as_str(), t.shell.as_str(), t.user.as_str()),
        (DEFAULT_WORKING_DIR, DEFAULT_SHELL, "")
    );
    assert_eq!(
        (t.needs_approval, t.min_approvers, t.skip),
        (false, 1, false)
    );
    assert_eq!(t.runtime.runtime_type, RuntimeType::Pod);
    let rc = generate(
        &one_task(
            "working_dir: /w\nshell: /bin/bash\nuser: me\napproval: true\nsteps: [{run: {command: x, shell: /bin/zsh, working_dir: sub, tty: false}}]",
        ),
        BTreeMap::new(),
    );
    let t = task(&rc, "t");
    assert_eq!(
        (t.working_dir.as_str(), t.shell.as_str(), t.user.as_str()),
        ("/w", "/bin/bash", "me")
    );
    assert_eq!((t.needs_approval, t.min_approvers), (true, 1));
    let Step::Run(s) = &t.steps[0] else {
        panic!("run step")
    };
    assert_eq!(
        (s.shell.as_str(), s.working_dir.as_str(), s.tty),
        ("/bin/zsh", "sub", false)
    );
}

#[test]
fn levels_and_depends_on_a_diamond() {
    // a → b, a → c, (b, c) → d, d → e; f alone
    let yaml = "runs:\n  - name: r\n    tasks:\n      - {name: e, runtime: {containers: [{image: x}]}, depends: [d]}\n      - {name: d, runtime: {containers: [{image: x}]}, depends: [b, {c: [on_failure]}]}\n      - {name: b, runtime: {containers: [{image: x}]}, depends: [a]}\n      - {name: c, runtime: {containers: [{image: x}]}, depends: [a]}\n      - {name: a, runtime: {containers: [{image: x}]}}\n      - {name: f, runtime: {containers: [{image: x}]}}\n";
    let rc = generate(yaml, BTreeMap::new());
    let level = |n: &str| task(&rc, n).level;
    assert_eq!(
        [
            level("a"),
            level("b"),
            level("c"),
            level("d"),
            level("e"),
            level("f")
        ],
        [0, 1, 1, 2, 3, 0]
    );
    let d = task(&rc, "d");
    let b_id = &task(&rc, "b").id;
    let c_id = &task(&rc, "c").id;
    assert_eq!(d.depends.len(), 2);
    assert_eq!(d.depends[b_id].task_id, *b_id);
    assert_eq!(d.depends[c_id].conditions, vec![DependCondition::OnFailure]);
    // ids are keys and unique
    assert_eq!(rc.tasks.len(), 6);
    assert!(rc.tasks.iter().all(|(id, t)| *id == t.id));
}

#[test]
fn runs_are_filtered_by_when_and_get_the_setup_fields() {
    let yaml = "runs:\n  - name: always\n    tasks: [{name: t, runtime: {containers: [{image: x}]}}]\n  - name: tags\n    when: {tag: '/.*/'}\n    tasks: [{name: t, runtime: {containers: [{image: x}]}}]\n";
    let config = parse_ok(yaml);
    let setup = RunSetup {
        ctx: RefContext::branch("main", "abc"),
        group: "/project/p/branch/main".into(),
        annotations: vars(&[("run_type", "project")]),
        static_environment: vars(&[("CI", "true")]),
        environment: vars(&[("X", "1")]),
        cache_group: "cg".into(),
        ..Default::default()
    };
    let rcs = generate_run_configs(&config, &setup);
    assert_eq!(rcs.len(), 1);
    let rc = &rcs[0];
    assert_eq!(rc.name, "always");
    assert_eq!(rc.id, "");
    assert_eq!(rc.group, setup.group);
    assert_eq!(rc.annotations, setup.annotations);
    assert_eq!(rc.static_environment, setup.static_environment);
    assert_eq!(rc.environment, setup.environment);
    assert_eq!(rc.cache_group, "cg");
    let tag_setup = RunSetup {
        ctx: RefContext::tag("v1", "abc"),
        ..Default::default()
    };
    assert_eq!(generate_run_configs(&config, &tag_setup).len(), 2);
}

#[test]
fn static_environment_lists_the_agola_variables() {
    let source = GitSource {
        repository_url: "ssh://git@git.example.com:2222/org/repo.git".into(),
        ssh_private_key: "KEY".into(),
        ssh_host_key: String::new(),
        skip_ssh_host_key_check: false,
    };
    let env = static_environment(&source, &RefContext::branch("main", "abc"));
    assert_eq!(
        env,
        vars(&[
            ("CI", "true"),
            ("AGOLA_SSHPRIVKEY", "KEY"),
            (
                "AGOLA_REPOSITORY_URL",
                "ssh://git@git.example.com:2222/org/repo.git"
            ),
            ("AGOLA_GIT_HOST", "git.example.com"),
            ("AGOLA_GIT_PORT", "2222"),
            ("AGOLA_GIT_BRANCH", "main"),
            ("AGOLA_GIT_TAG", ""),
            ("AGOLA_PULL_REQUEST_ID", ""),
            ("AGOLA_GIT_REF_TYPE", "branch"),
            ("AGOLA_GIT_REF", "refs/heads/main"),
            ("AGOLA_GIT_COMMITSHA", "abc"),
        ])
    );
    let source = GitSource {
        repository_url: "git@github.com:org/repo.git".into(),
        ssh_host_key: "github.com ssh-ed25519 AAAA".into(),
        skip_ssh_host_key_check: true,
        ..Default::default()
    };
    let env = static_environment(
        &source,
        &RefContext::pull_request("7", "refs/pull/7/head", "def"),
    );
    assert_eq!(env["AGOLA_SSHHOSTKEY"], "github.com ssh-ed25519 AAAA");
    assert_eq!(env["AGOLA_SKIPSSHHOSTKEYCHECK"], "1");
    assert_eq!(env["AGOLA_GIT_REF_TYPE"], "pull_request");
    assert_eq!(env["AGOLA_PULL_REQUEST_ID"], "7");
    assert_eq!(env["AGOLA_GIT_HOST"], "github.com");
    assert_eq!(env["AGOLA_GIT_PORT"], "22");
}

#[test]
fn git_urls() {
    let cases = [
        ("ssh://git@h.io:2222/a/b.git", Some(("h.io", "2222"))),
        ("ssh://h.io/a/b.git", Some(("h.io", "22"))),
        ("git@h.io:a/b.git", Some(("h.io", "22"))),
        ("h.io:a/b.git", Some(("h.io", "22"))),
        ("https://h.io/a/b.git", Some(("h.io", "443"))),
        ("http://user:pw@h.io:3000/a/b.git", Some(("h.io", "3000"))),
        ("git://h.io/a", Some(("h.io", "9418"))),
        ("ssh://git@[::1]:2222/a", Some(("::1", "2222"))),
        ("ftp://h.io/a", None),
        ("/local/path", None),
        ("", None),
    ];
    for (url, want) in cases {
        let got = git_host_port(url);
        let want = want.map(|(h, p)| (h.to_owned(), p.to_owned()));
        assert_eq!(got, want, "{url}");
    }
}

#[test]
fn setup_error_run_config_has_no_tasks() {
    let setup = RunSetup {
        group: "/project/p/tag/v1".into(),
        ..Default::default()
    };
    let rc = setup_error_run_config(vec!["a".into(), "b".into()], &setup);
    assert_eq!(rc.name, "Setup Error");
    assert_eq!(rc.setup_errors, vec!["a".to_owned(), "b".to_owned()]);
    assert!(rc.tasks.is_empty());
    assert_eq!(rc.group, "/project/p/tag/v1");
}
