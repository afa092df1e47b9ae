//! Variable resolution along the project-group tree (spec 60 §9).

use std::collections::BTreeMap;

use agola_config::*;

const ROOT: &str = "org/acme";
const GROUP: &str = "org/acme/backend";
const PROJECT: &str = "org/acme/backend/api";

fn value(secret: &str, key: &str, when: Option<When>) -> VariableValue {
    VariableValue {
        secret_name: secret.into(),
        secret_var: key.into(),
        when,
    }
}

fn variable(name: &str, parent: &str, values: Vec<VariableValue>) -> Variable {
    Variable {
        name: name.into(),
        parent_path: parent.into(),
        values,
    }
}

fn secret(name: &str, parent: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        name: name.into(),
        parent_path: parent.into(),
        data: data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn branch_when(b: &str) -> Option<When> {
    Some(When {
        branch: Some(WhenConditions {
            include: vec![b.into()],
            exclude: vec![],
        }),
        ..Default::default()
    })
}

fn resolved(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What, variables, secrets, ref, expected result.
type Case = (
    &'static str,
    Vec<Variable>,
    Vec<Secret>,
    RefContext,
    BTreeMap<String, String>,
);

#[test]
fn resolution_table() {
    let main = RefContext::branch("main", "a");
    let dev = RefContext::branch("dev", "a");
    let cases: Vec<Case> = vec![
        (
            "simple",
            vec![variable("v", PROJECT, vec![value("s", "k", None)])],
            vec![secret("s", PROJECT, &[("k", "x")])],
            main.clone(),
            resolved(&[("v", "x")]),
        ),
        (
            "closest definition wins",
            vec![
                variable("v", ROOT, vec![value("s", "root", None)]),
                variable("v", PROJECT, vec![value("s", "project", None)]),
                variable("v", GROUP, vec![value("s", "group", None)]),
            ],
            vec![secret(
                "s",
                PROJECT,
                &[("root", "R"), ("group", "G"), ("project", "P")],
            )],
            main.clone(),
            resolved(&[("v", "P")]),
        ),
        (
            "first matching value wins",
            vec![variable(
                "v",
                PROJECT,
                vec![
                    value("s", "a", branch_when("dev")),
                    value("s", "b", branch_when("main")),
                    value("s", "c", None),
                ],
            )],
            vec![secret("s", PROJECT, &[("a", "A"), ("b", "B"), ("c", "C")])],
            main.clone(),
            resolved(&[("v", "B")]),
        ),
        (
            "value without when matches",
            vec![variable(
                "v",
                PROJECT,
                vec![value("s", "a", branch_when("main")), value("s", "c", None)],
            )],
            vec![secret("s", PROJECT, &[("a", "A"), ("c", "C")])],
            dev.clone(),
            resolved(&[("v", "C")]),
        ),
        (
            "no matching value: absent",
            vec![variable(
                "v",
                PROJECT,
                vec![value("s", "a", branch_when("main"))],
            )],
            vec![secret("s", PROJECT, &[("a", "A")])],
            dev.clone(),
            resolved(&[]),
        ),
        (
            "the closest definition is used even when it does not match",
            vec![
                variable("v", ROOT, vec![value("s", "a", None)]),
                variable("v", PROJECT, vec![value("s", "a", branch_when("main"))]),
            ],
            vec![secret("s", PROJECT, &[("a", "A")])],
            dev.clone(),
            resolved(&[]),
        ),
        (
            "secret below the variable is used",
            vec![variable("v", GROUP, vec![value("s", "k", None)])],
            vec![secret("s", PROJECT, &[("k", "P")])],
            main.clone(),
            resolved(&[("v", "P")]),
        ),
        (
            "secret at the same level is used",
            vec![variable("v", GROUP, vec![value("s", "k", None)])],
            vec![secret("s", GROUP, &[("k", "G")])],
            main.clone(),
            resolved(&[("v", "G")]),
        ),
        (
            "secret above the variable is not used",
            vec![variable("v", GROUP, vec![value("s", "k", None)])],
            vec![secret("s", ROOT, &[("k", "R")])],
            main.clone(),
            resolved(&[]),
        ),
        (
            "closest secret wins",
            vec![variable("v", ROOT, vec![value("s", "k", None)])],
            vec![
                secret("s", ROOT, &[("k", "R")]),
                secret("s", PROJECT, &[("k", "P")]),
                secret("s", GROUP, &[("k", "G")]),
            ],
            main.clone(),
            resolved(&[("v", "P")]),
        ),
        (
            "path prefixes are compared by component",
            vec![variable("v", "org/acme/back", vec![value("s", "k", None)])],
            vec![secret("s", GROUP, &[("k", "G")])],
            main.clone(),
            resolved(&[]),
        ),
        (
            "missing secret key: absent",
            vec![variable("v", PROJECT, vec![value("s", "other", None)])],
            vec![secret("s", PROJECT, &[("k", "x")])],
            main.clone(),
            resolved(&[]),
        ),
        (
            "missing secret: absent",
            vec![variable("v", PROJECT, vec![value("nope", "k", None)])],
            vec![secret("s", PROJECT, &[("k", "x")])],
            main.clone(),
            resolved(&[]),
        ),
        (
            "several variables",
            vec![
                variable("a", ROOT, vec![value("s", "a", None)]),
                variable("b", PROJECT, vec![value("t", "b", None)]),
            ],
            vec![
                secret("s", ROOT, &[("a", "1")]),
                secret("t", PROJECT, &[("b", "2")]),
            ],
            main.clone(),
            resolved(&[("a", "1"), ("b", "2")]),
        ),
    ];
    for (what, variables, secrets, ctx, want) in cases {
        assert_eq!(
            resolve_variables(&variables, &secrets, &ctx),
            want,
            "{what}"
        );
    }
}

#[test]
fn forked_pull_requests_get_no_variables_unless_allowed() {
    let variables = vec![variable("v", PROJECT, vec![value("s", "k", None)])];
    let secrets = vec![secret("s", PROJECT, &[("k", "x")])];
    let pr = RefContext::pull_request("3", "refs/pull/3/head", "a");
    let branch = RefContext::branch("main", "a");
    let cases = [
        (&pr, true, false, false),
        (&pr, true, true, true),
        (&pr, false, false, true),
        // only pull requests come from forks; the flag is ignored otherwise
        (&branch, true, false, true),
    ];
    for (ctx, from_fork, pass, gets) in cases {
        assert_eq!(variables_allowed(ctx, from_fork, pass), gets);
        let got = resolve_project_variables(&variables, &secrets, ctx, from_fork, pass);
        assert_eq!(
            !got.is_empty(),
            gets,
            "{ctx:?} fork={from_fork} pass={pass}"
        );
    }
}

#[test]
fn variable_values_deserialize_from_the_stored_shape() {
    let v: Variable = serde_json::from_str(
        r#"{"name": "v", "parent_path": "org/acme", "values": [{"secret_name": "s", "secret_var": "k", "when": {"branch": {"include": ["main"]}}}]}"#,
    )
    .expect("deserializes");
    assert_eq!(v.values[0].when, branch_when("main"));
}
