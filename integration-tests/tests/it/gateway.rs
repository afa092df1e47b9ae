//! The gateway's public REST API against a real configstore and runservice: authentication,
//! the error model (400, 401, 403, 404, 409, 413, 500 without detail), users and tokens, orgs
//! and members, project groups, projects, secrets and variables, and who may see what.

use agola::config::{Component, Config};
use agola_integration_tests::TestCluster;
use http_body_util::BodyExt;
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret-token";

struct Api {
    base: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl Api {
    fn new(cluster: &TestCluster) -> Self {
        Api {
            base: format!("{}/api/v1alpha", cluster.url(Component::Gateway)),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, bytes::Bytes) {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("token {t}"));
        }
        let resp = self
            .client
            .request(req.body(body.into()).expect("request"))
            .await
            .expect("http request");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, body)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (status, body) = self.raw(method, path, token, bytes).await;
        let v = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
        };
        (status, v)
    }

    /// Creates a user and an API token for it; returns the token.
    async fn user(&self, name: &str) -> String {
        let (s, _) = self
            .call(
                "POST",
                "/users",
                Some(ADMIN),
                Some(json!({"username": name})),
            )
            .await;
        assert_eq!(s, 201, "create user {name}");
        let (s, v) = self
            .call(
                "POST",
                &format!("/users/{name}/tokens"),
                Some(ADMIN),
                Some(json!({"token_name": "t"})),
            )
            .await;
        assert_eq!(s, 201, "create token for {name}: {v}");
        v["token"].as_str().expect("token").to_owned()
    }
}

fn enc(r: &str) -> String {
    r.replace('/', "%2F")
}

async fn cluster(components: &[Component]) -> TestCluster {
    let mut config = Config::default();
    config.gateway.admin_token = Some(ADMIN.into());
    TestCluster::start(config, components.iter().copied().collect())
        .await
        .expect("start cluster")
}

async fn base_cluster() -> TestCluster {
    cluster(&[
        Component::Gateway,
        Component::Configstore,
        Component::Runservice,
    ])
    .await
}

#[tokio::test]
async fn authentication_and_users() {
    let cluster = base_cluster().await;
    let api = Api::new(&cluster);

    // Anonymous on an auth-forced route, an invalid token, an unsupported scheme: 401.
    let (s, v) = api.call("GET", "/user", None, None).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")));
    let (s, _) = api.call("GET", "/user", Some("nope"), None).await;
    assert_eq!(s, 401);
    let (s, _) = api
        .client
        .request(
            http::Request::builder()
                .uri(format!("{}/user", api.base))
                .header("authorization", "basic abc")
                .body(Default::default())
                .expect("request"),
        )
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("request");
    assert_eq!(s, 401);

    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let (s, v) = api.call("GET", "/user", Some(&alice), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["name"], "alice");
    assert_eq!(v["token_names"], json!(["t"]));
    assert!(
        !v.to_string().contains(&alice),
        "token values are never returned"
    );

    // Admin-only user management: 403 for a user, 401 for anonymous.
    let (s, v) = api
        .call(
            "POST",
            "/users",
            Some(&alice),
            Some(json!({"username": "carol"})),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")));
    let (s, _) = api.call("GET", "/users", None, None).await;
    assert_eq!(s, 401);
    let (s, v) = api.call("GET", "/users", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2));

    // Duplicates pass the configstore's 409 through with its message.
    let (s, v) = api
        .call(
            "POST",
            "/users",
            Some(ADMIN),
            Some(json!({"username": "alice"})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "already_exists");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("alice")),
        "{v}"
    );

    // Bad bodies: unknown field, missing field, not JSON → 400 naming the problem.
    let (s, v) = api
        .call(
            "POST",
            "/users",
            Some(ADMIN),
            Some(json!({"username": "x", "extra": 1})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("extra")),
        "{v}"
    );
    let (s, v) = api
        .call("POST", "/users", Some(ADMIN), Some(json!({})))
        .await;
    assert_eq!(s, 400);
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("username")),
        "{v}"
    );
    // A configstore validation error passes through as 400.
    let (s, v) = api
        .call(
            "POST",
            "/users",
            Some(ADMIN),
            Some(json!({"username": "bad name!"})),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_request")), "{v}");

    // Bodies over 1 MiB: 413 request_too_large.
    let big = format!("{{\"username\":\"{}\"}}", "a".repeat(1 << 20));
    let (s, body) = api
        .raw("POST", "/users", Some(ADMIN), big.into_bytes())
        .await;
    assert_eq!(s, 413);
    let v: Value = serde_json::from_slice(&body).expect("json error body");
    assert_eq!(v["code"], "request_too_large");

    // Unknown routes → 400; unknown users → 404.
    let (s, _) = api.call("GET", "/nope", None, None).await;
    assert_eq!(s, 400);
    let (s, v) = api.call("GET", "/users/nobody", Some(&alice), None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")));

    // Tokens: only the user itself or an admin; deleting one revokes it.
    let (s, _) = api
        .call(
            "POST",
            "/users/alice/tokens",
            Some(&bob),
            Some(json!({"token_name": "x"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = api
        .call(
            "POST",
            "/users/bob/tokens",
            Some(&bob),
            Some(json!({"token_name": "second"})),
        )
        .await;
    assert_eq!(s, 201);
    let second = v["token"].as_str().expect("token").to_owned();
    let (s, _) = api
        .call("DELETE", "/users/bob/tokens/second", Some(&bob), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = api.call("GET", "/user", Some(&second), None).await;
    assert_eq!(s, 401);

    let (s, _) = api.call("DELETE", "/users/bob", Some(&alice), None).await;
    assert_eq!(s, 403);
    let (s, _) = api.call("DELETE", "/users/bob", Some(ADMIN), None).await;
    assert_eq!(s, 204);
    let (s, _) = api.call("GET", "/user", Some(&bob), None).await;
    assert_eq!(s, 401);

    cluster.stop().await.expect("clean stop");
}

#[tokio::test]
async fn backend_failures_are_500_without_detail() {
    let mut config = Config::default();
    config.gateway.admin_token = Some(ADMIN.into());
    // Nothing listens there (port 1 is privileged and unused on loopback).
    config.gateway.configstore_url = "http://127.0.0.1:1".into();
    let cluster = TestCluster::start(config, [Component::Gateway].into())
        .await
        .expect("start cluster");
    let api = Api::new(&cluster);
    let (s, v) = api
        .call("GET", "/user", Some("some-user-token"), None)
        .await;
    assert_eq!(s, 500);
    assert_eq!(
        v,
        json!({"code": "internal", "message": "internal server error"})
    );
    let (s, v) = api.call("GET", "/orgs", None, None).await;
    assert_eq!(s, 500);
    assert_eq!(
        v,
        json!({"code": "internal", "message": "internal server error"})
    );
    cluster.stop().await.expect("clean stop");
}

#[tokio::test]
async fn orgs_projects_and_permissions() {
    let cluster = base_cluster().await;
    let api = Api::new(&cluster);
    let owner = api.user("owner").await;
    let member = api.user("member").await;
    let stranger = api.user("stranger").await;

    let (s, v) = api
        .call(
            "POST",
            "/orgs",
            Some(&owner),
            Some(json!({"name": "acme", "visibility": "private"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["visibility"], "private");
    let (s, _) = api
        .call("POST", "/orgs", Some(&owner), Some(json!({"name": "acme"})))
        .await;
    assert_eq!(s, 409);
    let (s, _) = api
        .call("POST", "/orgs", None, Some(json!({"name": "anon"})))
        .await;
    assert_eq!(s, 401);

    // A private org is invisible to strangers and anonymous callers.
    let (s, _) = api.call("GET", "/orgs/acme", Some(&stranger), None).await;
    assert_eq!(s, 404);
    let (s, _) = api.call("GET", "/orgs/acme", None, None).await;
    assert_eq!(s, 404);
    let (s, v) = api.call("GET", "/orgs", Some(&stranger), None).await;
    assert_eq!((s, v), (200, json!([])));
    let (s, v) = api.call("GET", "/orgs", Some(&owner), None).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1));

    // Members: owner adds (201), changes the role (200); strangers cannot see the org (404).
    let (s, v) = api
        .call(
            "PUT",
            "/orgs/acme/members/member",
            Some(&owner),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call(
            "PUT",
            "/orgs/acme/members/member",
            Some(&owner),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["role"], "member");
    let (s, _) = api
        .call(
            "PUT",
            "/orgs/acme/members/stranger",
            Some(&stranger),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(s, 404);
    // A member sees the org but may not administer it: 403.
    let (s, _) = api
        .call(
            "PUT",
            "/orgs/acme/members/stranger",
            Some(&member),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = api
        .call("GET", "/orgs/acme/members", Some(&member), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2));

    // Project groups: the org's root group is org/acme.
    let (s, v) = api
        .call(
            "POST",
            "/projectgroups",
            Some(&owner),
            Some(json!({"name": "team", "parent_ref": "org/acme", "visibility": "public"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["path"], "org/acme/team");
    let (s, _) = api
        .call(
            "POST",
            "/projectgroups",
            Some(&member),
            Some(json!({"name": "mine", "parent_ref": "org/acme"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = api
        .call(
            "PUT",
            &format!("/projectgroups/{}", enc("org/acme/team")),
            Some(&owner),
            Some(json!({"visibility": "private"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["visibility"], "private");

    // Projects: one public, one private, in the private group.
    for (name, visibility) in [("pub", "public"), ("priv", "private")] {
        let (s, v) = api
            .call(
                "POST",
                "/projects",
                Some(&owner),
                Some(json!({
                    "name": name, "parent_ref": "org/acme/team", "visibility": visibility,
                    "repository_url": "file:///nonexistent", "ssh_private_key": "PRIVATE-KEY",
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["path"], format!("org/acme/team/{name}"));
        assert!(!v.to_string().contains("PRIVATE-KEY"));
    }
    let pubp = format!("/projects/{}", enc("org/acme/team/pub"));
    let privp = format!("/projects/{}", enc("org/acme/team/priv"));
    for (who, token, pub_status, priv_status) in [
        ("owner", Some(owner.as_str()), 200, 200),
        ("member", Some(member.as_str()), 200, 200),
        ("stranger", Some(stranger.as_str()), 200, 404),
        ("anonymous", None, 200, 404),
    ] {
        let (s, _) = api.call("GET", &pubp, token, None).await;
        assert_eq!(s, pub_status, "{who} reading the public project");
        let (s, _) = api.call("GET", &privp, token, None).await;
        assert_eq!(s, priv_status, "{who} reading the private project");
    }
    let (s, v) = api
        .call(
            "GET",
            &format!("/projectgroups/{}/projects", enc("org/acme/team")),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    let (s, _) = api
        .call(
            "PUT",
            &pubp,
            Some(&member),
            Some(json!({"visibility": "private"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .call(
            "PUT",
            &privp,
            Some(&stranger),
            Some(json!({"visibility": "public"})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, v) = api
        .call(
            "PUT",
            &pubp,
            Some(&owner),
            Some(json!({"pass_vars_to_forked_pr": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["pass_vars_to_forked_pr"], true);
    let (s, _) = api
        .call("PUT", &pubp, Some(&owner), Some(json!({"bogus": true})))
        .await;
    assert_eq!(s, 400);

    // Secrets and variables: members list them, never with values; owners create and delete.
    let gsec = format!("/projectgroups/{}/secrets", enc("org/acme/team"));
    let (s, v) = api
        .call(
            "POST",
            &gsec,
            Some(&owner),
            Some(json!({"name": "creds", "type": "internal", "data": {"password": "hunter2"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(!v.to_string().contains("hunter2"));
    let (s, _) = api
        .call(
            "POST",
            &gsec,
            Some(&member),
            Some(json!({"name": "x", "data": {"a": "b"}})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = api
        .call(
            "POST",
            &format!("{privp}/secrets"),
            Some(&owner),
            Some(json!({"name": "creds", "data": {"password": "closer"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call(
            "POST",
            &format!("{privp}/variables"),
            Some(&owner),
            Some(json!({"name": "password", "values": [{"secret_name": "creds", "secret_var": "password", "when": {"branch": {"include": ["main"]}}}]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["values"][0]["secret_var"], "password");
    let (s, v) = api
        .call("GET", &format!("{privp}/secrets?tree"), Some(&member), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    let text = v.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("closer"),
        "{text}"
    );
    assert!(v[0].get("data").is_none());
    let (s, v) = api
        .call(
            "GET",
            &format!("{privp}/secrets?tree&removeoverridden"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["parent_path"], "org/acme/team/priv");
    let (s, _) = api
        .call("GET", &format!("{privp}/secrets"), Some(&stranger), None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = api
        .call("GET", &format!("{pubp}/secrets"), Some(&stranger), None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .call("GET", &format!("{pubp}/secrets"), None, None)
        .await;
    assert_eq!(s, 401);
    let (s, v) = api
        .call(
            "GET",
            &format!("{privp}/variables?tree"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let (s, _) = api
        .call(
            "DELETE",
            &format!("{privp}/variables/password"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call("DELETE", &format!("{gsec}/creds"), Some(&owner), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call("DELETE", &format!("{gsec}/creds"), Some(&owner), None)
        .await;
    assert_eq!(s, 404);

    // Deletes: 204, then gone.
    let (s, _) = api.call("DELETE", &privp, Some(&member), None).await;
    assert_eq!(s, 403);
    let (s, _) = api.call("DELETE", &privp, Some(&owner), None).await;
    assert_eq!(s, 204);
    let (s, _) = api.call("GET", &privp, Some(&owner), None).await;
    assert_eq!(s, 404);
    let (s, _) = api
        .call(
            "DELETE",
            &format!("/projectgroups/{}", enc("org/acme/team")),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call("DELETE", "/orgs/acme/members/member", Some(&owner), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = api.call("GET", "/orgs/acme", Some(&member), None).await;
    assert_eq!(s, 404);
    let (s, _) = api.call("DELETE", "/orgs/acme", Some(&owner), None).await;
    assert_eq!(s, 204);

    cluster.stop().await.expect("clean stop");
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository whose `main` has a run (hello, then deploy waiting one approval) and whose
/// `broken` branch has an invalid config.
fn test_repo(dir: &std::path::Path) {
    let cfg = dir.join(".agola");
    std::fs::create_dir_all(&cfg).expect("mkdir");
    std::fs::write(
        cfg.join("config.yml"),
        "runs:\n  - name: ci\n    tasks:\n      - name: hello\n        runtime: { containers: [ { image: busybox } ] }\n        environment: { GREETING: { from_variable: greeting } }\n        steps: [ { run: 'echo hi $GREETING' } ]\n      - name: deploy\n        approval: true\n        depends: [ hello ]\n        runtime: { containers: [ { image: busybox } ] }\n        steps: [ { run: 'echo deployed' } ]\n",
    )
    .expect("write config");
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "ci"]);
    git(dir, &["checkout", "-q", "-b", "broken"]);
    std::fs::write(
        cfg.join("config.yml"),
        "runs:\n  - name: bad\n    tasks: []\n",
    )
    .expect("write");
    git(dir, &["commit", "-q", "-am", "broken config"]);
    git(dir, &["checkout", "-q", "main"]);
    git(dir, &["checkout", "-q", "-b", "two"]);
    std::fs::write(
        cfg.join("config.yml"),
        "runs:\n  - name: two\n    tasks:\n      - name: deploy\n        approval: { min_approvers: 2 }\n        runtime: { containers: [ { image: busybox } ] }\n        steps: [ { run: 'echo deployed' } ]\n",
    )
    .expect("write");
    git(dir, &["commit", "-q", "-am", "two approvers"]);
    git(dir, &["checkout", "-q", "main"]);
}

async fn wait_run(api: &Api, path: &str, token: &str, pred: impl Fn(&Value) -> bool) -> Value {
    agola_integration_tests::wait_until(
        "a run state",
        std::time::Duration::from_secs(60),
        || async {
            let (s, v) = api.call("GET", path, Some(token), None).await;
            (s == 200 && pred(&v)).then_some(v)
        },
    )
    .await
    .expect("run state reached")
}

#[tokio::test]
async fn createrun_runs_approvals_and_logs() {
    let mut config = Config::default();
    config.gateway.admin_token = Some(ADMIN.into());
    config.executor.driver.kind = agola_executor::DriverType::Local;
    config.scheduler.interval_ms = 100;
    let cluster = TestCluster::start(
        config,
        [
            Component::Gateway,
            Component::Configstore,
            Component::Runservice,
            Component::Executor,
            Component::Scheduler,
        ]
        .into(),
    )
    .await
    .expect("start cluster");
    let api = Api::new(&cluster);
    let owner = api.user("owner").await;
    let member = api.user("member").await;
    let stranger = api.user("stranger").await;
    let repo = tempfile::tempdir().expect("tempdir");
    test_repo(repo.path());

    let (s, _) = api
        .call("POST", "/orgs", Some(&owner), Some(json!({"name": "acme"})))
        .await;
    assert_eq!(s, 201);
    let (s, _) = api
        .call(
            "PUT",
            "/orgs/acme/members/member",
            Some(&owner),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = api
        .call(
            "POST",
            "/projects",
            Some(&owner),
            Some(
                json!({"name": "app", "parent_ref": "org/acme", "visibility": "private",
                        "repository_url": repo.path().display().to_string()}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let proj = format!("/projects/{}", enc("org/acme/app"));
    let (s, _) = api
        .call(
            "POST",
            &format!("{proj}/secrets"),
            Some(&owner),
            Some(json!({"name": "s", "data": {"g": "from-secret"}})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = api
        .call(
            "POST",
            &format!("{proj}/variables"),
            Some(&owner),
            Some(json!({"name": "greeting", "values": [{"secret_name": "s", "secret_var": "g"}]})),
        )
        .await;
    assert_eq!(s, 201);

    // Bad requests: neither or two refs; strangers do not see the private project.
    let (s, _) = api
        .call(
            "POST",
            &format!("{proj}/createrun"),
            Some(&member),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .call(
            "POST",
            &format!("{proj}/createrun"),
            Some(&member),
            Some(json!({"branch": "main", "tag": "v1"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .call(
            "POST",
            &format!("{proj}/createrun"),
            Some(&stranger),
            Some(json!({"branch": "main"})),
        )
        .await;
    assert_eq!(s, 404);

    let (s, v) = api
        .call(
            "POST",
            &format!("{proj}/createrun"),
            Some(&member),
            Some(json!({"branch": "main"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let runs = v["runs"].as_array().expect("runs").clone();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["name"], "ci");
    assert_eq!(runs[0]["annotations"]["run_creation_trigger"], "manual");
    let number = runs[0]["number"].as_u64().expect("number");
    let run_path = format!("{proj}/runs/{number}");

    // The run reaches the approval task; the member records an approval (204), a second one
    // by the same user is 400, and the scheduler then approves and the run succeeds.
    let run = wait_run(&api, &run_path, &member, |v| {
        v["tasks_waiting_approval"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let deploy = run["tasks_waiting_approval"][0]
        .as_str()
        .expect("task id")
        .to_owned();
    let hello = run["tasks"]
        .as_object()
        .and_then(|t| t.values().find(|t| t["name"] == "hello"))
        .and_then(|t| t["id"].as_str())
        .expect("hello task")
        .to_owned();
    let (s, _) = api
        .call(
            "PUT",
            &format!("{run_path}/tasks/{deploy}/actions"),
            Some(&stranger),
            Some(json!({"action_type": "approve"})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, v) = api
        .call(
            "PUT",
            &format!("{run_path}/tasks/{deploy}/actions"),
            Some(&member),
            Some(json!({"action_type": "approve"})),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = api
        .call(
            "PUT",
            &format!("{run_path}/tasks/{deploy}/actions"),
            Some(&member),
            Some(json!({"action_type": "approve"})),
        )
        .await;
    assert!(s == 400, "second approval: {s} {v}");
    let run = wait_run(&api, &run_path, &member, |v| v["phase"] == "finished").await;
    assert_eq!(run["result"], "success", "{run}");

    // The step log, with the variable resolved from the secret.
    let (s, body) = api
        .raw(
            "GET",
            &format!("{run_path}/tasks/{hello}/logs?step=0"),
            Some(&member),
            Vec::new(),
        )
        .await;
    assert_eq!(s, 200);
    let log = String::from_utf8_lossy(&body);
    assert!(log.contains("hi from-secret"), "{log}");
    let (s, _) = api
        .raw(
            "GET",
            &format!("{run_path}/tasks/{hello}/logs"),
            Some(&member),
            Vec::new(),
        )
        .await;
    assert_eq!(s, 400);

    // The task detail: steps from the run config with their status.
    let (s, v) = api
        .call(
            "GET",
            &format!("{run_path}/tasks/{hello}"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "hello");
    assert_eq!(v["status"], "success");
    assert_eq!(v["steps"][0]["type"], "run");
    assert_eq!(v["steps"][0]["command"], "echo hi $GREETING");
    assert_eq!(v["steps"][0]["exit_status"], 0);
    assert_eq!(v["steps"][0]["phase"], "success");
    let (s, _) = api
        .call(
            "GET",
            &format!("{run_path}/tasks/nope"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(s, 404);

    // The runservice's 400 for a stop of a finished run passes through; strangers get 404.
    let (s, v) = api
        .call(
            "PUT",
            &format!("{run_path}/actions"),
            Some(&member),
            Some(json!({"action_type": "stop"})),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    let (s, _) = api
        .call(
            "PUT",
            &format!("{run_path}/actions"),
            Some(&stranger),
            Some(json!({"action_type": "cancel"})),
        )
        .await;
    assert_eq!(s, 404);

    let (s, v) = api.call("GET", "/user/orgs", Some(&member), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!([{"org": {"id": v[0]["org"]["id"], "name": "acme", "visibility": "public"}, "role": "member"}])
    );

    // Listing, filters, and visibility of the runs.
    let (s, v) = api
        .call(
            "GET",
            &format!("{proj}/runs?phase=finished"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let (s, v) = api
        .call(
            "GET",
            &format!("{proj}/runs?subgroup=branch/other"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!((s, v), (200, json!([])));
    let (s, _) = api
        .call("GET", &format!("{proj}/runs"), Some(&stranger), None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = api
        .call("GET", &format!("{proj}/runs/9999"), Some(&member), None)
        .await;
    assert_eq!(s, 404);

    // Logs also authenticate with ?access_token= (browsers cannot set headers on streams).
    let (s, body) = api
        .raw(
            "GET",
            &format!("{run_path}/tasks/{hello}/logs?step=0&access_token={member}"),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("hi from-secret"));
    let (s, _) = api
        .raw(
            "GET",
            &format!("{run_path}/tasks/{hello}/logs?step=0&access_token=bogus"),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(s, 401);

    // Restart: 201 with the new run (the gateway sends freshly resolved variables; the
    // runservice does not re-apply them yet).
    let (s, v) = api
        .call(
            "PUT",
            &format!("{run_path}/actions"),
            Some(&member),
            Some(json!({"action_type": "restart", "from_start": true})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(v["number"].as_u64().is_some_and(|n| n > number));

    // A broken config creates the "Setup Error" run.
    let (s, v) = api
        .call(
            "POST",
            &format!("{proj}/createrun"),
            Some(&member),
            Some(json!({"branch": "broken"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["runs"][0]["name"], "Setup Error");
    assert_eq!(v["runs"][0]["phase"], "setuperror");
    assert!(
        v["runs"][0]["setup_errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{v}"
    );

    // Badges: the last run's phase (the setup error run), "unknown" for a branch without runs.
    let badge = format!("/badges/{}", enc("org/acme/app"));
    let (s, body) = api.raw("GET", &badge, Some(&member), Vec::new()).await;
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("build: setuperror"));
    let (s, body) = api
        .raw(
            "GET",
            &format!("{badge}?branch=none"),
            Some(&member),
            Vec::new(),
        )
        .await;
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("build: unknown"));
    let (s, _) = api.raw("GET", &badge, None, Vec::new()).await;
    assert_eq!(s, 404);

    // Deleting a run: owners only, and the runservice refuses runs not archived yet (400).
    let (s, _) = api.call("DELETE", &run_path, Some(&member), None).await;
    assert_eq!(s, 403);
    let (s, v) = api.call("DELETE", &run_path, Some(&owner), None).await;
    assert_eq!(s, 400, "{v}");

    // The same runs over gRPC.
    {
        use agola_proto::gateway::v1 as pb;
        use agola_proto::gateway::v1::project_service_client::ProjectServiceClient;
        use agola_proto::gateway::v1::run_service_client::RunServiceClient;
        let channel = tonic::transport::Channel::from_shared(cluster.url(Component::Gateway))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut grpc = RunServiceClient::new(channel.clone());
        let owner_ref = || {
            Some(pb::get_run_request::Owner::ProjectRef(
                "org/acme/app".into(),
            ))
        };
        let run = grpc
            .get_run(authed(
                pb::GetRunRequest {
                    owner: owner_ref(),
                    number,
                },
                Some(&member),
            ))
            .await
            .expect("grpc get run")
            .into_inner()
            .run
            .expect("run");
        assert_eq!(run.name, "ci");
        let err = grpc
            .get_run(authed(
                pb::GetRunRequest {
                    owner: owner_ref(),
                    number,
                },
                Some(&stranger),
            ))
            .await
            .expect_err("stranger");
        assert_eq!(err.code(), tonic::Code::NotFound);
        let mut stream = grpc
            .get_run_task_logs(authed(
                pb::GetRunTaskLogsRequest {
                    owner: Some(pb::get_run_task_logs_request::Owner::ProjectRef(
                        "org/acme/app".into(),
                    )),
                    number,
                    task_id: hello.clone(),
                    setup: false,
                    step: Some(0),
                    follow: false,
                },
                Some(&member),
            ))
            .await
            .expect("grpc logs")
            .into_inner();
        let mut log = Vec::new();
        while let Some(chunk) = stream.message().await.expect("log chunk") {
            log.extend_from_slice(&chunk.data);
        }
        assert!(String::from_utf8_lossy(&log).contains("hi from-secret"));
        let err = grpc
            .list_runs(authed(
                pb::ListRunsRequest {
                    owner: Some(pb::list_runs_request::Owner::UserRef("member".into())),
                    ..Default::default()
                },
                Some(&member),
            ))
            .await
            .expect_err("user runs");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = ProjectServiceClient::new(channel)
            .reconfig_project(authed(
                pb::ReconfigProjectRequest {
                    project_ref: "org/acme/app".into(),
                },
                Some(&owner),
            ))
            .await
            .expect_err("plain git project");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    // Two approvers at the same time: both recorded (retries on the change group), then the
    // scheduler approves and the run succeeds.
    let (s, v) = api
        .call(
            "POST",
            &format!("{proj}/createrun"),
            Some(&member),
            Some(json!({"branch": "two"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let two = format!(
        "{proj}/runs/{}",
        v["runs"][0]["number"].as_u64().expect("number")
    );
    let run = wait_run(&api, &two, &member, |v| {
        v["tasks_waiting_approval"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let task = run["tasks_waiting_approval"][0]
        .as_str()
        .expect("task")
        .to_owned();
    let approve = |token: String| {
        let path = format!("{two}/tasks/{task}/actions");
        let api = &api;
        async move {
            api.call(
                "PUT",
                &path,
                Some(&token),
                Some(json!({"action_type": "approve"})),
            )
            .await
            .0
        }
    };
    let (a, b) = tokio::join!(approve(owner.clone()), approve(member.clone()));
    assert_eq!((a, b), (204, 204));
    let run = wait_run(&api, &two, &member, |v| v["phase"] == "finished").await;
    assert_eq!(run["result"], "success", "{run}");
    let approvers = run["tasks"][&task]["approval_annotations"]["approvers"]
        .as_str()
        .and_then(|a| serde_json::from_str::<Vec<String>>(a).ok())
        .expect("approvers");
    assert_eq!(approvers.len(), 2);

    // A ref the repository does not have: 400.
    let (s, _) = api
        .call(
            "POST",
            &format!("{proj}/createrun"),
            Some(&member),
            Some(json!({"branch": "nope"})),
        )
        .await;
    assert_eq!(s, 400);

    cluster.stop().await.expect("clean stop");
}

fn authed<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("token {t}").parse().expect("metadata"),
        );
    }
    req
}

#[tokio::test]
async fn grpc_uses_the_same_auth_and_rules() {
    use agola_proto::common::v1::{ParentType, Visibility};
    use agola_proto::gateway::v1 as pb;
    use agola_proto::gateway::v1::org_service_client::OrgServiceClient;
    use agola_proto::gateway::v1::project_group_service_client::ProjectGroupServiceClient;
    use agola_proto::gateway::v1::secret_service_client::SecretServiceClient;

    let cluster = base_cluster().await;
    let api = Api::new(&cluster);
    let owner = api.user("owner").await;
    let stranger = api.user("stranger").await;
    let channel = tonic::transport::Channel::from_shared(cluster.url(Component::Gateway))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut orgs = OrgServiceClient::new(channel.clone());
    let mut groups = ProjectGroupServiceClient::new(channel.clone());
    let mut secrets = SecretServiceClient::new(channel);

    let create = |token| {
        authed(
            pb::CreateOrgRequest {
                name: "acme".into(),
                visibility: Visibility::Private.into(),
            },
            token,
        )
    };
    let err = orgs.create_org(create(None)).await.expect_err("anonymous");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = orgs
        .create_org(create(Some("bogus")))
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    orgs.create_org(create(Some(&owner)))
        .await
        .expect("create org");
    let err = orgs
        .create_org(create(Some(&owner)))
        .await
        .expect_err("duplicate");
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert_eq!(
        err.metadata()
            .get("agola-error-code")
            .and_then(|v| v.to_str().ok()),
        Some("already_exists")
    );
    let get = |token| {
        authed(
            pb::GetOrgRequest {
                org_ref: "acme".into(),
            },
            token,
        )
    };
    let err = orgs
        .get_org(get(Some(&stranger)))
        .await
        .expect_err("private org");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        orgs.get_org(get(Some(&owner)))
            .await
            .expect("owner reads")
            .into_inner()
            .org
            .map(|o| o.name),
        Some("acme".into())
    );

    let g = groups
        .create_project_group(authed(
            pb::CreateProjectGroupRequest {
                name: "team".into(),
                parent_ref: "org/acme".into(),
                visibility: Visibility::Private.into(),
            },
            Some(&owner),
        ))
        .await
        .expect("create group")
        .into_inner()
        .project_group
        .expect("group");
    assert_eq!(g.path, "org/acme/team");

    let secret_req = |token| {
        authed(
            pb::CreateSecretRequest {
                parent_type: ParentType::Projectgroup.into(),
                parent_ref: "org/acme/team".into(),
                name: "creds".into(),
                r#type: 0,
                data: [("k".to_owned(), "v".to_owned())].into(),
            },
            token,
        )
    };
    let err = secrets
        .create_secret(secret_req(Some(&stranger)))
        .await
        .expect_err("stranger");
    assert_eq!(err.code(), tonic::Code::NotFound);
    secrets
        .create_secret(secret_req(Some(&owner)))
        .await
        .expect("create secret");
    secrets
        .update_secret(authed(
            pb::UpdateSecretRequest {
                parent_type: ParentType::Projectgroup.into(),
                parent_ref: "org/acme/team".into(),
                secret_name: "creds".into(),
                name: "renamed".into(),
                r#type: 0,
                data: [("k".to_owned(), "v2".to_owned())].into(),
            },
            Some(&owner),
        ))
        .await
        .expect("update secret");
    let list = secrets
        .list_secrets(authed(
            pb::ListSecretsRequest {
                parent_type: ParentType::Projectgroup.into(),
                parent_ref: "org/acme/team".into(),
                tree: false,
                remove_overridden: false,
            },
            Some(&owner),
        ))
        .await
        .expect("list secrets")
        .into_inner()
        .secrets;
    assert_eq!(
        list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["renamed"]
    );

    cluster.stop().await.expect("clean stop");
}

#[tokio::test]
async fn grpc_user_service() {
    use agola_proto::gateway::v1 as pb;
    use agola_proto::gateway::v1::user_service_client::UserServiceClient;

    let cluster = base_cluster().await;
    let channel = tonic::transport::Channel::from_shared(cluster.url(Component::Gateway))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut users = UserServiceClient::new(channel);
    let err = users
        .create_user(authed(
            pb::CreateUserRequest {
                username: "u".into(),
            },
            None,
        ))
        .await
        .expect_err("anonymous");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let user = users
        .create_user(authed(
            pb::CreateUserRequest {
                username: "u".into(),
            },
            Some(ADMIN),
        ))
        .await
        .expect("create user")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(user.name, "u");
    let token = users
        .create_user_token(authed(
            pb::CreateUserTokenRequest {
                user_ref: "u".into(),
                token_name: "cli".into(),
            },
            Some(ADMIN),
        ))
        .await
        .expect("token")
        .into_inner()
        .token;
    let me = users
        .get_current_user(authed(pb::GetCurrentUserRequest {}, Some(&token)))
        .await
        .expect("current user")
        .into_inner()
        .user
        .expect("user");
    assert_eq!((me.id, me.token_names), (user.id, vec!["cli".to_owned()]));
    let err = users
        .list_users(authed(pb::ListUsersRequest::default(), Some(&token)))
        .await
        .expect_err("not admin");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = users
        .create_user_linked_account(authed(
            pb::CreateUserLinkedAccountRequest {
                user_ref: "u".into(),
                ..Default::default()
            },
            Some(&token),
        ))
        .await
        .expect_err("no remote sources");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    users
        .delete_user_token(authed(
            pb::DeleteUserTokenRequest {
                user_ref: "u".into(),
                token_name: "cli".into(),
            },
            Some(&token),
        ))
        .await
        .expect("delete own token");
    let err = users
        .get_current_user(authed(pb::GetCurrentUserRequest {}, Some(&token)))
        .await
        .expect_err("revoked");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    cluster.stop().await.expect("clean stop");
}

#[tokio::test]
async fn remote_sources_are_admin_managed_and_keep_secrets() {
    let cluster = base_cluster().await;
    let api = Api::new(&cluster);
    let user = api.user("u").await;
    let body = json!({
        "name": "gitea", "type": "gitea", "auth_type": "oauth2",
        "api_url": "https://gitea.example.com", "oauth2_client_id": "cid",
        "oauth2_client_secret": "TOP-SECRET",
    });
    let (s, _) = api
        .call("POST", "/remotesources", Some(&user), Some(body.clone()))
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .call("POST", "/remotesources", None, Some(body.clone()))
        .await;
    assert_eq!(s, 401);
    let (s, v) = api
        .call("POST", "/remotesources", Some(ADMIN), Some(body.clone()))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["type"].as_str(), v["auth_type"].as_str()),
        (Some("gitea"), Some("oauth2"))
    );
    let (s, _) = api
        .call("POST", "/remotesources", Some(ADMIN), Some(body))
        .await;
    assert_eq!(s, 409);
    let (s, v) = api.call("GET", "/remotesources", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert!(!v.to_string().contains("TOP-SECRET"));
    let (s, v) = api
        .call(
            "PUT",
            "/remotesources/gitea",
            Some(ADMIN),
            Some(json!({"login_enabled": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["login_enabled"], true);
    let (s, _) = api
        .call("DELETE", "/remotesources/gitea", Some(&user), None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .call("DELETE", "/remotesources/gitea", Some(ADMIN), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = api.call("GET", "/remotesources/gitea", None, None).await;
    assert_eq!(s, 404);
    cluster.stop().await.expect("clean stop");
}
