//! `when` matching (spec 60 §8.4): exact and regexp patterns, include/exclude, and the
//! branch → tag → ref evaluation order.

use agola_config::*;

fn conds(include: &[&str], exclude: &[&str]) -> Option<WhenConditions> {
    Some(WhenConditions {
        include: include.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
    })
}

fn branch(b: &str) -> RefContext {
    RefContext::branch(b, "sha")
}

fn tag(t: &str) -> RefContext {
    RefContext::tag(t, "sha")
}

fn pr(n: &str) -> RefContext {
    RefContext::pull_request(n, format!("refs/pull/{n}/head"), "sha")
}

#[test]
fn patterns() {
    let cases = [
        ("main", "main", true),
        ("main", "main2", false),
        ("/main/", "xmainx", true),
        ("/^main$/", "xmainx", false),
        ("#^v[0-9]+#", "v12", true),
        ("#^v[0-9]+#", "x12", false),
        ("#refs/pull/\\d+/head#", "refs/pull/3/head", true),
        // too short or mismatched delimiters: exact
        ("//", "//", true),
        ("//", "", false),
        ("##", "##", true),
        ("/a#", "/a#", true),
        ("/a#", "a", false),
        ("/a", "/a", true),
        // regexps are unanchored searches
        ("/rel/", "pre-release", true),
        // an invalid regexp matches nothing
        ("/(/", "(", false),
        // exact matching is case-sensitive and not a glob
        ("release-*", "release-1", false),
        ("Main", "main", false),
    ];
    for (p, value, want) in cases {
        assert_eq!(pattern_matches(p, value), want, "{p} ~ {value}");
    }
    assert_eq!(Pattern::classify("/x/"), Pattern::Regex("x"));
    assert_eq!(Pattern::classify("#x#"), Pattern::Regex("x"));
    assert_eq!(Pattern::classify("x"), Pattern::Exact("x"));
    assert!(validate_pattern("/(/").is_err());
    assert!(validate_pattern("(").is_ok());
}

#[test]
fn when_table() {
    let main_only = When {
        branch: conds(&["main"], &[]),
        ..Default::default()
    };
    let release = When {
        branch: conds(&["main", "/^release-.*$/"], &["release-legacy"]),
        tag: conds(&["#^v[0-9]+#"], &[]),
        git_ref: conds(&["#refs/pull/\\d+/head#"], &[]),
    };
    let exclude_only = When {
        branch: conds(&[], &["wip"]),
        ..Default::default()
    };
    let ref_excludes_branch = When {
        branch: conds(&["/.*/"], &[]),
        git_ref: conds(&[], &["refs/heads/secret"]),
        ..Default::default()
    };
    let ref_includes_after_branch_exclude = When {
        branch: conds(&[], &["main"]),
        git_ref: conds(&["refs/heads/main"], &[]),
        ..Default::default()
    };
    let tag_patterns_on_branch = When {
        tag: conds(&["main"], &[]),
        ..Default::default()
    };
    let branch_patterns_on_tag = When {
        branch: conds(&["v1"], &[]),
        ..Default::default()
    };
    let empty = When::default();

    let cases: Vec<(&str, &When, RefContext, bool)> = vec![
        ("exact branch", &main_only, branch("main"), true),
        ("other branch", &main_only, branch("dev"), false),
        (
            "branch patterns ignored for tags",
            &main_only,
            tag("main"),
            false,
        ),
        (
            "branch patterns ignored for PRs",
            &main_only,
            pr("1"),
            false,
        ),
        ("include regexp", &release, branch("release-1"), true),
        (
            "exclude wins over include",
            &release,
            branch("release-legacy"),
            false,
        ),
        ("not included", &release, branch("feature"), false),
        ("tag regexp", &release, tag("v2"), true),
        ("tag not matching", &release, tag("x2"), false),
        ("ref regexp for PRs", &release, pr("12"), true),
        (
            "ref is checked for every kind",
            &ref_excludes_branch,
            branch("dev"),
            true,
        ),
        (
            "ref exclude after branch include",
            &ref_excludes_branch,
            branch("secret"),
            false,
        ),
        (
            "ref include after branch exclude",
            &ref_includes_after_branch_exclude,
            branch("main"),
            true,
        ),
        (
            "exclude only never includes",
            &exclude_only,
            branch("dev"),
            false,
        ),
        (
            "exclude only, excluded",
            &exclude_only,
            branch("wip"),
            false,
        ),
        (
            "tag patterns ignored for branches",
            &tag_patterns_on_branch,
            branch("main"),
            false,
        ),
        (
            "branch patterns ignored for tags",
            &branch_patterns_on_tag,
            tag("v1"),
            false,
        ),
        (
            "present but empty when matches nothing",
            &empty,
            branch("main"),
            false,
        ),
    ];
    for (what, when, ctx, want) in cases {
        assert_eq!(when.matches(&ctx), want, "{what}");
        assert_eq!(when_matches(Some(when), &ctx), want, "{what}");
    }
    assert!(when_matches(None, &branch("anything")));
}

#[test]
fn task_when_from_yaml() {
    let yaml = "runs:\n  - name: r\n    tasks:\n      - name: t\n        runtime: {containers: [{image: x}]}\n        when:\n          branch: {include: '/^feat-/', exclude: [feat-old]}\n          tag: v1\n";
    let ctx = RefContext::branch("feat-new", "a");
    let config = parse_config(ConfigFormat::Yaml, yaml.as_bytes(), &ctx).expect("parses");
    let setup = RunSetup {
        ctx,
        ..Default::default()
    };
    let skip_of = |setup: &RunSetup| {
        generate_run_configs(&config, setup)[0]
            .task_by_name("t")
            .map(|t| t.skip)
    };
    assert_eq!(skip_of(&setup), Some(false));
    for (ctx, skip) in [
        (RefContext::branch("feat-old", "a"), true),
        (RefContext::branch("main", "a"), true),
        (RefContext::tag("v1", "a"), false),
        (RefContext::tag("v2", "a"), true),
    ] {
        let s = RunSetup {
            ctx: ctx.clone(),
            ..Default::default()
        };
        assert_eq!(skip_of(&s), Some(skip), "{ctx:?}");
    }
}
