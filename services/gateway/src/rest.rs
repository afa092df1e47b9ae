//! REST/JSON routes under `/api/v1alpha`: thin adapters that authenticate, decode the body
//! (unknown fields and missing required fields → 400, over 1 MiB → 413), call one resource
//! function and encode its view. JSON field names follow the proto field names in snake_case;
//! enums are lowercase words (`public`, `owner`, `internal`, ...).

use std::collections::HashMap;

use agola_common::ApiError;
use agola_proto::common::v1::{
    MemberRole, ParentType, VariableValue, Visibility, When, WhenConditions,
};
use agola_proto::gateway::v1 as pb;
use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::{Caller, authenticate};
use crate::backends::Backends;
use crate::{createrun, orgs, projects, remotesources, runs, secrets, users};

/// Largest accepted request body.
pub const MAX_BODY: usize = 1 << 20;

const GROUP: i32 = ParentType::Projectgroup as i32;
const PROJECT: i32 = ParentType::Project as i32;

/// Unknown routes or methods under the API prefix answer 400, not 404, so a missing resource
/// stays distinguishable from a bad route (spec 00 §5).
pub fn router(backends: Backends) -> axum::Router {
    axum::Router::new()
        .route("/version", get(version))
        .route("/user", get(current_user))
        .route("/user/orgs", get(current_user_orgs))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{user}", get(get_user).delete(delete_user))
        .route("/users/{user}/tokens", axum::routing::post(create_token))
        .route(
            "/users/{user}/tokens/{name}",
            axum::routing::delete(delete_token),
        )
        .route(
            "/users/{user}/linkedaccounts/{laid}",
            axum::routing::delete(delete_linked_account),
        )
        .route(
            "/remotesources",
            get(list_remote_sources).post(create_remote_source),
        )
        .route(
            "/remotesources/{rs}",
            get(get_remote_source)
                .put(update_remote_source)
                .delete(delete_remote_source),
        )
        .route("/orgs", get(list_orgs).post(create_org))
        .route("/orgs/{org}", get(get_org).delete(delete_org))
        .route("/orgs/{org}/members", get(org_members))
        .route(
            "/orgs/{org}/members/{user}",
            put(add_org_member).delete(remove_org_member),
        )
        .route("/projectgroups", axum::routing::post(create_group))
        .route(
            "/projectgroups/{group}",
            get(get_group).put(update_group).delete(delete_group),
        )
        .route("/projectgroups/{group}/subgroups", get(group_subgroups))
        .route("/projectgroups/{group}/projects", get(group_projects))
        .route(
            "/projectgroups/{group}/secrets",
            get(list_secrets::<GROUP>).post(create_secret::<GROUP>),
        )
        .route(
            "/projectgroups/{group}/secrets/{name}",
            put(update_secret::<GROUP>).delete(delete_secret::<GROUP>),
        )
        .route(
            "/projectgroups/{group}/variables",
            get(list_variables::<GROUP>).post(create_variable::<GROUP>),
        )
        .route(
            "/projectgroups/{group}/variables/{name}",
            put(update_variable::<GROUP>).delete(delete_variable::<GROUP>),
        )
        .route("/projects", axum::routing::post(create_project))
        .route(
            "/projects/{project}",
            get(get_project).put(update_project).delete(delete_project),
        )
        .route(
            "/projects/{project}/secrets",
            get(list_secrets::<PROJECT>).post(create_secret::<PROJECT>),
        )
        .route(
            "/projects/{project}/secrets/{name}",
            put(update_secret::<PROJECT>).delete(delete_secret::<PROJECT>),
        )
        .route(
            "/projects/{project}/variables",
            get(list_variables::<PROJECT>).post(create_variable::<PROJECT>),
        )
        .route(
            "/projects/{project}/variables/{name}",
            put(update_variable::<PROJECT>).delete(delete_variable::<PROJECT>),
        )
        .route(
            "/projects/{project}/createrun",
            axum::routing::post(create_run),
        )
        .route("/projects/{project}/runs", get(list_runs))
        .route(
            "/projects/{project}/runs/{number}",
            get(get_run).delete(delete_run),
        )
        .route("/badges/{project}", get(badge))
        .route("/projects/{project}/runs/{number}/actions", put(run_action))
        .route(
            "/projects/{project}/runs/{number}/tasks/{task}",
            get(get_task),
        )
        .route(
            "/projects/{project}/runs/{number}/tasks/{task}/actions",
            put(task_action),
        )
        .route(
            "/projects/{project}/runs/{number}/tasks/{task}/logs",
            get(task_logs).delete(delete_task_logs),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(backends)
}

/// A REST error answer: the error model's status and `{"code","message"}` body.
#[derive(Debug)]
pub enum RestError {
    Api(ApiError),
    /// Body over [`MAX_BODY`]: 413 `request_too_large`.
    TooLarge,
}

impl From<ApiError> for RestError {
    fn from(e: ApiError) -> Self {
        RestError::Api(e)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        match self {
            RestError::Api(e) => error_response(e),
            RestError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({
                    "code": "request_too_large",
                    "message": format!("request body larger than {MAX_BODY} bytes"),
                })),
            )
                .into_response(),
        }
    }
}

type Res = Result<Response, RestError>;

impl FromRequestParts<Backends> for Caller {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, b: &Backends) -> Result<Self, RestError> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| ApiError::unauthorized("invalid authorization header"))
            })
            .transpose()?;
        // `?access_token=` works too (browser log streaming, which cannot set headers).
        let header = match header {
            Some(h) => Some(h),
            None => Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.into_iter().find(|(k, _)| k == "access_token"))
                .map(|(_, v)| format!("token {v}")),
        };
        Ok(authenticate(b, header.as_deref()).await?)
    }
}

/// A JSON request body, capped at [`MAX_BODY`].
struct Body<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = RestError;

    async fn from_request(req: Request, state: &S) -> Result<Self, RestError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                RestError::TooLarge
            } else {
                ApiError::bad_request(format!("reading the request body: {}", e.body_text())).into()
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")).into())
    }
}

fn ok(v: Value) -> Res {
    Ok(Json(v).into_response())
}

fn created(v: Value) -> Res {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn no_content() -> Res {
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn version() -> Json<Value> {
    Json(json!({ "version": crate::VERSION }))
}

async fn unknown_route(method: http::Method, uri: http::Uri) -> Response {
    error_response(ApiError::bad_request(format!(
        "unknown route {method} {}",
        uri.path()
    )))
}

/// The one place REST errors become HTTP answers.
pub fn error_response(err: ApiError) -> Response {
    let (status, body) = err.to_http();
    (status, Json(body)).into_response()
}

// --- JSON views -------------------------------------------------------------------------------

fn visibility_str(v: i32) -> &'static str {
    match Visibility::try_from(v) {
        Ok(Visibility::Public) => "public",
        Ok(Visibility::Private) => "private",
        _ => "unspecified",
    }
}

fn role_str(v: i32) -> &'static str {
    match MemberRole::try_from(v) {
        Ok(MemberRole::Owner) => "owner",
        Ok(MemberRole::Member) => "member",
        _ => "unspecified",
    }
}

fn user_json(u: &pb::User) -> Value {
    json!({
        "id": u.id, "name": u.name, "admin": u.admin, "token_names": u.token_names,
        "linked_accounts": u.linked_accounts.iter().map(|la| json!({
            "id": la.id, "remote_source_id": la.remote_source_id,
            "remote_user_name": la.remote_user_name,
            "remote_user_avatar_url": la.remote_user_avatar_url,
        })).collect::<Vec<_>>(),
    })
}

fn org_json(o: &pb::Org) -> Value {
    json!({ "id": o.id, "name": o.name, "visibility": visibility_str(o.visibility) })
}

fn member_json(m: &pb::OrgMember) -> Value {
    json!({ "user_id": m.user_id, "user_name": m.user_name, "role": role_str(m.role) })
}

fn group_json(g: &pb::ProjectGroup) -> Value {
    json!({
        "id": g.id, "name": g.name, "path": g.path, "parent_path": g.parent_path,
        "visibility": visibility_str(g.visibility),
    })
}

fn project_json(p: &pb::Project) -> Value {
    use agola_proto::common::v1::RemoteRepositoryConfigType as T;
    let config_type = match T::try_from(p.remote_repository_config_type) {
        Ok(T::Manual) => "manual",
        Ok(T::Remotesource) => "remotesource",
        _ => "unspecified",
    };
    json!({
        "id": p.id, "name": p.name, "path": p.path, "parent_path": p.parent_path,
        "visibility": visibility_str(p.visibility),
        "remote_repository_config_type": config_type,
        "remote_source_id": p.remote_source_id, "linked_account_id": p.linked_account_id,
        "repository_path": p.repository_path, "repository_url": p.repository_url,
        "ssh_host_key": p.ssh_host_key, "skip_ssh_host_key_check": p.skip_ssh_host_key_check,
        "pass_vars_to_forked_pr": p.pass_vars_to_forked_pr,
    })
}

fn secret_json(s: &pb::Secret) -> Value {
    json!({ "id": s.id, "name": s.name, "parent_path": s.parent_path, "type": "internal" })
}

fn conditions_json(c: &Option<WhenConditions>) -> Value {
    c.as_ref().map_or(
        Value::Null,
        |c| json!({ "include": c.include, "exclude": c.exclude }),
    )
}

fn variable_json(v: &pb::Variable) -> Value {
    json!({
        "id": v.id, "name": v.name, "parent_path": v.parent_path,
        "values": v.values.iter().map(|val| json!({
            "secret_name": val.secret_name, "secret_var": val.secret_var,
            "when": val.when.as_ref().map_or(Value::Null, |w| json!({
                "branch": conditions_json(&w.branch), "tag": conditions_json(&w.tag),
                "ref": conditions_json(&w.r#ref),
            })),
        })).collect::<Vec<_>>(),
    })
}

// --- Request bodies and queries ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum VisibilityJson {
    Public,
    Private,
}

fn vis(v: Option<VisibilityJson>) -> Visibility {
    match v {
        None => Visibility::Unspecified,
        Some(VisibilityJson::Public) => Visibility::Public,
        Some(VisibilityJson::Private) => Visibility::Private,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Credentials, read by the caller extractor.
    #[serde(default, rename = "access_token")]
    _access_token: Option<String>,
    #[serde(default)]
    start: String,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    asc: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserBody {
    username: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenBody {
    token_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrgBody {
    name: String,
    visibility: Option<VisibilityJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RoleJson {
    Owner,
    Member,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    role: RoleJson,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroupBody {
    name: String,
    parent_ref: String,
    visibility: Option<VisibilityJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateGroupBody {
    name: Option<String>,
    parent_ref: Option<String>,
    visibility: Option<VisibilityJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProjectBody {
    name: String,
    parent_ref: String,
    visibility: Option<VisibilityJson>,
    #[serde(default)]
    remote_source_name: String,
    #[serde(default)]
    repo_path: String,
    #[serde(default)]
    repository_url: String,
    #[serde(default)]
    ssh_private_key: String,
    #[serde(default)]
    ssh_host_key: String,
    #[serde(default)]
    skip_ssh_host_key_check: bool,
    #[serde(default)]
    pass_vars_to_forked_pr: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProjectBody {
    name: Option<String>,
    parent_ref: Option<String>,
    visibility: Option<VisibilityJson>,
    skip_ssh_host_key_check: Option<bool>,
    pass_vars_to_forked_pr: Option<bool>,
    repository_url: Option<String>,
    ssh_private_key: Option<String>,
    ssh_host_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TreeQuery {
    /// Credentials, read by the caller extractor.
    #[serde(default, rename = "access_token")]
    _access_token: Option<String>,
    tree: Option<String>,
    removeoverridden: Option<String>,
}

/// `?tree` and `?tree=true` are set; `?tree=false` is not.
fn flag(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| v != "false" && v != "0")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum SecretTypeJson {
    Internal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSecretBody {
    name: String,
    #[serde(rename = "type")]
    _type: Option<SecretTypeJson>,
    data: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionsJson {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenJson {
    branch: Option<ConditionsJson>,
    tag: Option<ConditionsJson>,
    #[serde(rename = "ref")]
    r#ref: Option<ConditionsJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariableValueJson {
    secret_name: String,
    secret_var: String,
    when: Option<WhenJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateVariableBody {
    name: String,
    values: Vec<VariableValueJson>,
}

fn conditions(c: Option<ConditionsJson>) -> Option<WhenConditions> {
    c.map(|c| WhenConditions {
        include: c.include,
        exclude: c.exclude,
    })
}

// --- Users ------------------------------------------------------------------------------------

async fn current_user(caller: Caller) -> Res {
    ok(user_json(&users::current(&caller)?))
}

async fn current_user_orgs(State(b): State<Backends>, caller: Caller) -> Res {
    let list = users::current_orgs(&b, &caller).await?;
    ok(Value::Array(
        list.iter()
            .map(|uo| {
                json!({
                    "org": uo.org.as_ref().map_or(Value::Null, org_json),
                    "role": role_str(uo.role),
                })
            })
            .collect(),
    ))
}

async fn get_user(State(b): State<Backends>, caller: Caller, Path(u): Path<String>) -> Res {
    ok(user_json(&users::get(&b, &caller, &u).await?))
}

async fn list_users(State(b): State<Backends>, caller: Caller, Query(q): Query<ListQuery>) -> Res {
    let list = users::list(&b, &caller, q.start, q.limit, q.asc).await?;
    ok(Value::Array(list.iter().map(user_json).collect()))
}

async fn create_user(
    State(b): State<Backends>,
    caller: Caller,
    Body(body): Body<CreateUserBody>,
) -> Res {
    created(user_json(&users::create(&b, &caller, body.username).await?))
}

async fn delete_user(State(b): State<Backends>, caller: Caller, Path(u): Path<String>) -> Res {
    users::delete(&b, &caller, &u).await?;
    no_content()
}

async fn create_token(
    State(b): State<Backends>,
    caller: Caller,
    Path(u): Path<String>,
    Body(body): Body<CreateTokenBody>,
) -> Res {
    let token = users::create_token(&b, &caller, &u, body.token_name).await?;
    created(json!({ "token": token }))
}

async fn delete_token(
    State(b): State<Backends>,
    caller: Caller,
    Path((u, name)): Path<(String, String)>,
) -> Res {
    users::delete_token(&b, &caller, &u, &name).await?;
    no_content()
}

async fn delete_linked_account(
    State(b): State<Backends>,
    caller: Caller,
    Path((u, la)): Path<(String, String)>,
) -> Res {
    users::delete_linked_account(&b, &caller, &u, &la).await?;
    no_content()
}

// --- Orgs -------------------------------------------------------------------------------------

async fn list_orgs(State(b): State<Backends>, caller: Caller, Query(q): Query<ListQuery>) -> Res {
    let list = orgs::list(&b, &caller, q.start, q.limit, q.asc).await?;
    ok(Value::Array(list.iter().map(org_json).collect()))
}

async fn get_org(State(b): State<Backends>, caller: Caller, Path(o): Path<String>) -> Res {
    ok(org_json(&orgs::get(&b, &caller, &o).await?))
}

async fn org_members(State(b): State<Backends>, caller: Caller, Path(o): Path<String>) -> Res {
    let list = orgs::members(&b, &caller, &o).await?;
    ok(Value::Array(list.iter().map(member_json).collect()))
}

async fn create_org(
    State(b): State<Backends>,
    caller: Caller,
    Body(body): Body<CreateOrgBody>,
) -> Res {
    let org = orgs::create(&b, &caller, body.name, vis(body.visibility)).await?;
    created(org_json(&org))
}

async fn delete_org(State(b): State<Backends>, caller: Caller, Path(o): Path<String>) -> Res {
    orgs::delete(&b, &caller, &o).await?;
    no_content()
}

async fn add_org_member(
    State(b): State<Backends>,
    caller: Caller,
    Path((o, u)): Path<(String, String)>,
    Body(body): Body<MemberBody>,
) -> Res {
    let role = match body.role {
        RoleJson::Owner => MemberRole::Owner,
        RoleJson::Member => MemberRole::Member,
    };
    let (member, added) = orgs::add_member(&b, &caller, &o, &u, role).await?;
    if added {
        created(member_json(&member))
    } else {
        ok(member_json(&member))
    }
}

async fn remove_org_member(
    State(b): State<Backends>,
    caller: Caller,
    Path((o, u)): Path<(String, String)>,
) -> Res {
    orgs::remove_member(&b, &caller, &o, &u).await?;
    no_content()
}

// --- Project groups and projects --------------------------------------------------------------

async fn get_group(State(b): State<Backends>, caller: Caller, Path(g): Path<String>) -> Res {
    ok(group_json(&projects::get_group(&b, &caller, &g).await?))
}

async fn group_subgroups(State(b): State<Backends>, caller: Caller, Path(g): Path<String>) -> Res {
    let list = projects::subgroups(&b, &caller, &g).await?;
    ok(Value::Array(list.iter().map(group_json).collect()))
}

async fn group_projects(State(b): State<Backends>, caller: Caller, Path(g): Path<String>) -> Res {
    let list = projects::group_projects(&b, &caller, &g).await?;
    ok(Value::Array(list.iter().map(project_json).collect()))
}

async fn create_group(
    State(b): State<Backends>,
    caller: Caller,
    Body(body): Body<CreateGroupBody>,
) -> Res {
    let g = projects::create_group(
        &b,
        &caller,
        body.name,
        &body.parent_ref,
        vis(body.visibility),
    )
    .await?;
    created(group_json(&g))
}

async fn update_group(
    State(b): State<Backends>,
    caller: Caller,
    Path(g): Path<String>,
    Body(body): Body<UpdateGroupBody>,
) -> Res {
    let req = pb::UpdateProjectGroupRequest {
        project_group_ref: g,
        name: body.name,
        parent_ref: body.parent_ref,
        visibility: body.visibility.map(|v| vis(Some(v)).into()),
    };
    ok(group_json(&projects::update_group(&b, &caller, req).await?))
}

async fn delete_group(State(b): State<Backends>, caller: Caller, Path(g): Path<String>) -> Res {
    projects::delete_group(&b, &caller, &g).await?;
    no_content()
}

async fn get_project(State(b): State<Backends>, caller: Caller, Path(p): Path<String>) -> Res {
    ok(project_json(&projects::get_project(&b, &caller, &p).await?))
}

async fn create_project(
    State(b): State<Backends>,
    caller: Caller,
    Body(body): Body<CreateProjectBody>,
) -> Res {
    let req = pb::CreateProjectRequest {
        name: body.name,
        parent_ref: body.parent_ref,
        visibility: vis(body.visibility).into(),
        remote_source_name: body.remote_source_name,
        repo_path: body.repo_path,
        repository_url: body.repository_url,
        ssh_private_key: body.ssh_private_key,
        ssh_host_key: body.ssh_host_key,
        skip_ssh_host_key_check: body.skip_ssh_host_key_check,
        pass_vars_to_forked_pr: body.pass_vars_to_forked_pr,
    };
    created(project_json(
        &projects::create_project(&b, &caller, req).await?,
    ))
}

async fn update_project(
    State(b): State<Backends>,
    caller: Caller,
    Path(p): Path<String>,
    Body(body): Body<UpdateProjectBody>,
) -> Res {
    let req = pb::UpdateProjectRequest {
        project_ref: p,
        name: body.name,
        parent_ref: body.parent_ref,
        visibility: body.visibility.map(|v| vis(Some(v)).into()),
        skip_ssh_host_key_check: body.skip_ssh_host_key_check,
        pass_vars_to_forked_pr: body.pass_vars_to_forked_pr,
        repository_url: body.repository_url,
        ssh_private_key: body.ssh_private_key,
        ssh_host_key: body.ssh_host_key,
    };
    ok(project_json(
        &projects::update_project(&b, &caller, req).await?,
    ))
}

async fn delete_project(State(b): State<Backends>, caller: Caller, Path(p): Path<String>) -> Res {
    projects::delete_project(&b, &caller, &p).await?;
    no_content()
}

// --- Secrets and variables --------------------------------------------------------------------

fn parent_type(p: i32) -> ParentType {
    ParentType::try_from(p).unwrap_or(ParentType::Unspecified)
}

async fn list_secrets<const P: i32>(
    State(b): State<Backends>,
    caller: Caller,
    Path(r): Path<String>,
    Query(q): Query<TreeQuery>,
) -> Res {
    let req = pb::ListSecretsRequest {
        parent_type: P,
        parent_ref: r,
        tree: flag(&q.tree),
        remove_overridden: flag(&q.removeoverridden),
    };
    let list = secrets::list_secrets(&b, &caller, req).await?;
    ok(Value::Array(list.iter().map(secret_json).collect()))
}

async fn create_secret<const P: i32>(
    State(b): State<Backends>,
    caller: Caller,
    Path(r): Path<String>,
    Body(body): Body<CreateSecretBody>,
) -> Res {
    let req = pb::CreateSecretRequest {
        parent_type: P,
        parent_ref: r,
        name: body.name,
        r#type: agola_proto::common::v1::SecretType::Internal.into(),
        data: body.data,
    };
    created(secret_json(
        &secrets::create_secret(&b, &caller, req).await?,
    ))
}

async fn update_secret<const P: i32>(
    State(b): State<Backends>,
    caller: Caller,
    Path((r, name)): Path<(String, String)>,
    Body(body): Body<CreateSecretBody>,
) -> Res {
    let req = pb::UpdateSecretRequest {
        parent_type: P,
        parent_ref: r,
        secret_name: name,
        name: body.name,
        r#type: agola_proto::common::v1::SecretType::Internal.into(),
        data: body.data,
    };
    ok(secret_json(
        &secrets::update_secret(&b, &caller, req).await?,
    ))
}

async fn delete_secret<const P: i32>(
    State(b): State<Backends>,
    caller: Caller,
    Path((r, name)): Path<(String, String)>,
) -> Res {
    secrets::delete_secret(&b, &caller, parent_type(P), &r, &name).await?;
    no_content()
}

async fn list_variables<const P: i32>(
    State(b): State<Backends>,
    caller: Caller,
    Path(r): Path<String>,
    Query(q): Query<TreeQuery>,
) -> Res {
    let req = pb::ListVariablesRequest {
        parent_type: P,
        parent_ref: r,
        tree: flag(&q.tree),
        remove_overridden: flag(&q.removeoverridden),
    };
    let list = secrets::list_variables(&b, &caller, req).await?;
    ok(Value::Array(list.iter().map(variable_json).collect()))
}

fn variable_values(values: Vec<VariableValueJson>) -> Vec<VariableValue> {
    values
        .into_iter()
        .map(|v| VariableValue {
            secret_name: v.secret_name,
            secret_var: v.secret_var,
            when: v.when.map(|w| When {
                branch: conditions(w.branch),
                tag: conditions(w.tag),
                r#ref: conditions(w.r#ref),
            }),
        })
        .collect()
}

async fn create_variable<const P: i32>(
    State(b): State<Backends>,
    caller: Caller,
    Path(r): Path<String>,
    Body(body): Body<CreateVariableBody>,
) -> Res {
    let values = variable_values(body.values);
    let v = secrets::create_variable(&b, &caller, parent_type(P), &r, body.name, values).await?;
    created(variable_json(&v))
}

async fn update_variable<const P: i32>(
    State(b): State<Backends>,
    caller: Caller,
    Path((r, name)): Path<(String, String)>,
    Body(body): Body<CreateVariableBody>,
) -> Res {
    let req = pb::UpdateVariableRequest {
        parent_type: P,
        parent_ref: r,
        variable_name: name,
        name: body.name,
        values: variable_values(body.values),
    };
    ok(variable_json(
        &secrets::update_variable(&b, &caller, req).await?,
    ))
}

async fn delete_variable<const P: i32>(
    State(b): State<Backends>,
    caller: Caller,
    Path((r, name)): Path<(String, String)>,
) -> Res {
    secrets::delete_variable(&b, &caller, parent_type(P), &r, &name).await?;
    no_content()
}

// --- Runs -------------------------------------------------------------------------------------

fn phase_str(v: i32) -> &'static str {
    use agola_proto::common::v1::RunPhase as P;
    match P::try_from(v) {
        Ok(P::Setuperror) => "setuperror",
        Ok(P::Queued) => "queued",
        Ok(P::Cancelled) => "cancelled",
        Ok(P::Running) => "running",
        Ok(P::Finished) => "finished",
        _ => "unspecified",
    }
}

fn result_str(v: i32) -> &'static str {
    use agola_proto::common::v1::RunResult as R;
    match R::try_from(v) {
        Ok(R::Unknown) => "unknown",
        Ok(R::Stopped) => "stopped",
        Ok(R::Success) => "success",
        Ok(R::Failed) => "failed",
        _ => "unspecified",
    }
}

fn task_status_str(v: i32) -> &'static str {
    use agola_proto::common::v1::RunTaskStatus as S;
    match S::try_from(v) {
        Ok(S::Notstarted) => "notstarted",
        Ok(S::Skipped) => "skipped",
        Ok(S::Cancelled) => "cancelled",
        Ok(S::Running) => "running",
        Ok(S::Stopped) => "stopped",
        Ok(S::Success) => "success",
        Ok(S::Failed) => "failed",
        _ => "unspecified",
    }
}

fn condition_str(v: i32) -> &'static str {
    use agola_proto::common::v1::DependCondition as C;
    match C::try_from(v) {
        Ok(C::OnSuccess) => "on_success",
        Ok(C::OnFailure) => "on_failure",
        Ok(C::OnSkipped) => "on_skipped",
        _ => "unspecified",
    }
}

fn time_json(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref()
        .map_or(Value::Null, |t| Value::String(t.to_string()))
}

fn run_summary_json(r: &pb::RunSummary) -> Value {
    json!({
        "number": r.number, "name": r.name, "annotations": r.annotations,
        "phase": phase_str(r.phase), "result": result_str(r.result), "stopping": r.stopping,
        "tasks_waiting_approval": r.tasks_waiting_approval,
        "enqueue_time": time_json(&r.enqueue_time), "start_time": time_json(&r.start_time),
        "end_time": time_json(&r.end_time),
    })
}

pub(crate) fn run_json(r: &pb::Run) -> Value {
    let tasks: serde_json::Map<String, Value> = r
        .tasks
        .iter()
        .map(|(id, t)| {
            (
                id.clone(),
                json!({
                    "id": t.id, "name": t.name, "status": task_status_str(t.status),
                    "level": t.level,
                    "depends": t.depends.iter().map(|d| json!({
                        "task_id": d.task_id,
                        "conditions": d.conditions.iter().map(|c| condition_str(*c)).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "waiting_approval": t.waiting_approval, "approved": t.approved,
                    "approval_annotations": t.approval_annotations,
                    "min_approvers": t.min_approvers, "approvers_count": t.approvers_count,
                    "start_time": time_json(&t.start_time), "end_time": time_json(&t.end_time),
                }),
            )
        })
        .collect();
    json!({
        "number": r.number, "name": r.name, "annotations": r.annotations,
        "phase": phase_str(r.phase), "result": result_str(r.result),
        "setup_errors": r.setup_errors, "stopping": r.stopping,
        "enqueue_time": time_json(&r.enqueue_time), "start_time": time_json(&r.start_time),
        "end_time": time_json(&r.end_time), "tasks": tasks,
        "tasks_waiting_approval": r.tasks_waiting_approval,
        "can_restart_from_scratch": r.can_restart_from_scratch,
        "can_restart_from_failed_tasks": r.can_restart_from_failed_tasks,
    })
}

fn parse_phase(s: &str) -> Result<agola_proto::common::v1::RunPhase, ApiError> {
    use agola_proto::common::v1::RunPhase as P;
    Ok(match s {
        "setuperror" => P::Setuperror,
        "queued" => P::Queued,
        "cancelled" => P::Cancelled,
        "running" => P::Running,
        "finished" => P::Finished,
        _ => return Err(ApiError::bad_request(format!("unknown run phase {s:?}"))),
    })
}

fn parse_result(s: &str) -> Result<agola_proto::common::v1::RunResult, ApiError> {
    use agola_proto::common::v1::RunResult as R;
    Ok(match s {
        "unknown" => R::Unknown,
        "stopped" => R::Stopped,
        "success" => R::Success,
        "failed" => R::Failed,
        _ => return Err(ApiError::bad_request(format!("unknown run result {s:?}"))),
    })
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ApiError> {
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid {name} {v:?}")))
}

async fn list_runs(
    State(b): State<Backends>,
    caller: Caller,
    Path(p): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Res {
    let mut f = runs::ListFilter::default();
    for (k, v) in q {
        match k.as_str() {
            "subgroup" => f.subgroup = v,
            "phase" => f.phases.push(parse_phase(&v)?),
            "result" => f.results.push(parse_result(&v)?),
            "start" => f.start = Some(parse_num("start", &v)?),
            "limit" => f.limit = parse_num("limit", &v)?,
            "asc" => f.asc = v != "false" && v != "0",
            "access_token" => {}
            _ => {
                return Err(ApiError::bad_request(format!("unknown query parameter {k:?}")).into());
            }
        }
    }
    let list = runs::list(&b, &caller, &p, f).await?;
    ok(Value::Array(list.iter().map(run_summary_json).collect()))
}

async fn get_run(
    State(b): State<Backends>,
    caller: Caller,
    Path((p, n)): Path<(String, u64)>,
) -> Res {
    ok(run_json(&runs::get(&b, &caller, &p, n).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RunActionJson {
    Restart,
    Cancel,
    Stop,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunActionBody {
    action_type: RunActionJson,
    #[serde(default)]
    from_start: bool,
}

async fn run_action(
    State(b): State<Backends>,
    caller: Caller,
    Path((p, n)): Path<(String, u64)>,
    Body(body): Body<RunActionBody>,
) -> Res {
    let action = match body.action_type {
        RunActionJson::Restart => pb::RunActionType::Restart,
        RunActionJson::Cancel => pb::RunActionType::Cancel,
        RunActionJson::Stop => pb::RunActionType::Stop,
    };
    match runs::action(&b, &caller, &p, n, action, body.from_start).await? {
        Some(run) => created(run_json(&run)),
        None => no_content(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum TaskActionJson {
    Approve,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskActionBody {
    #[serde(rename = "action_type")]
    _action_type: TaskActionJson,
}

async fn task_action(
    State(b): State<Backends>,
    caller: Caller,
    Path((p, n, task)): Path<(String, u64, String)>,
    Body(_body): Body<TaskActionBody>,
) -> Res {
    runs::approve(&b, &caller, &p, n, &task).await?;
    no_content()
}

fn log_selector(q: Vec<(String, String)>) -> Result<(runs::LogSelector, bool), ApiError> {
    let mut setup = false;
    let mut step = None;
    let mut follow = false;
    for (k, v) in q {
        match k.as_str() {
            "setup" => setup = v != "false" && v != "0",
            "step" => step = Some(parse_num::<i32>("step", &v)?),
            "follow" => follow = v != "false" && v != "0",
            "access_token" => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?}"
                )));
            }
        }
    }
    match (setup, step) {
        (true, None) => Ok((runs::LogSelector::Setup, follow)),
        (false, Some(n)) => Ok((runs::LogSelector::Step(n), follow)),
        _ => Err(ApiError::bad_request("give exactly one of setup and step")),
    }
}

async fn delete_task_logs(
    State(b): State<Backends>,
    caller: Caller,
    Path((p, n, task)): Path<(String, u64, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Res {
    let (which, _) = log_selector(q)?;
    runs::delete_logs(&b, &caller, &p, n, &task, which).await?;
    no_content()
}

async fn delete_run(
    State(b): State<Backends>,
    caller: Caller,
    Path((p, n)): Path<(String, u64)>,
) -> Res {
    runs::delete(&b, &caller, &p, n).await?;
    no_content()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BadgeQuery {
    /// Credentials, read by the caller extractor.
    #[serde(default, rename = "access_token")]
    _access_token: Option<String>,
    #[serde(default)]
    branch: String,
}

async fn badge(
    State(b): State<Backends>,
    caller: Caller,
    Path(p): Path<String>,
    Query(q): Query<BadgeQuery>,
) -> Res {
    let svg = runs::badge(&b, &caller, &p, &q.branch).await?;
    Ok(([(http::header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn task_logs(
    State(b): State<Backends>,
    caller: Caller,
    Path((p, n, task)): Path<(String, u64, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Res {
    let (which, follow) = log_selector(q)?;
    let mut stream = runs::logs(&b, &caller, &p, n, &task, which, follow).await?;
    // The first message carries the runservice's answer (e.g. not found): an error there is
    // still a proper error response.
    let first = stream.message().await.map_err(ApiError::from)?;
    let head = futures::stream::iter(first.map(|m| Ok::<_, tonic::Status>(Bytes::from(m.data))));
    let rest = futures::StreamExt::map(stream, |r| r.map(|m| Bytes::from(m.data)));
    let body = axum::body::Body::from_stream(futures::StreamExt::chain(head, rest));
    Ok((
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRunBody {
    #[serde(default)]
    branch: String,
    #[serde(default)]
    tag: String,
    #[serde(default, rename = "ref")]
    git_ref: String,
    #[serde(default)]
    commit_sha: String,
}

async fn create_run(
    State(b): State<Backends>,
    caller: Caller,
    Path(p): Path<String>,
    Body(body): Body<CreateRunBody>,
) -> Res {
    let req = createrun::RefRequest {
        branch: body.branch,
        tag: body.tag,
        git_ref: body.git_ref,
        commit_sha: body.commit_sha,
    };
    let list = createrun::create(&b, &caller, &p, req).await?;
    created(json!({ "runs": list.iter().map(run_json).collect::<Vec<_>>() }))
}

fn exec_phase_str(v: i32) -> &'static str {
    use agola_proto::common::v1::ExecutorTaskPhase as P;
    match P::try_from(v) {
        Ok(P::Notstarted) => "notstarted",
        Ok(P::Cancelled) => "cancelled",
        Ok(P::Running) => "running",
        Ok(P::Stopped) => "stopped",
        Ok(P::Success) => "success",
        Ok(P::Failed) => "failed",
        _ => "unspecified",
    }
}

fn step_type_str(v: i32) -> &'static str {
    match pb::StepType::try_from(v) {
        Ok(pb::StepType::Run) => "run",
        Ok(pb::StepType::SaveToWorkspace) => "save_to_workspace",
        Ok(pb::StepType::RestoreWorkspace) => "restore_workspace",
        Ok(pb::StepType::SaveCache) => "save_cache",
        Ok(pb::StepType::RestoreCache) => "restore_cache",
        _ => "unspecified",
    }
}

fn task_detail_json(t: &pb::RunTaskDetail) -> Value {
    json!({
        "id": t.id, "name": t.name, "status": task_status_str(t.status), "level": t.level,
        "depends": t.depends.iter().map(|d| json!({
            "task_id": d.task_id,
            "conditions": d.conditions.iter().map(|c| condition_str(*c)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "waiting_approval": t.waiting_approval, "approved": t.approved,
        "approval_annotations": t.approval_annotations,
        "min_approvers": t.min_approvers, "approvers_count": t.approvers_count,
        "start_time": time_json(&t.start_time), "end_time": time_json(&t.end_time),
        "setup_step": t.setup_step.as_ref().map_or(Value::Null, |s| json!({
            "phase": exec_phase_str(s.phase), "start_time": time_json(&s.start_time),
            "end_time": time_json(&s.end_time), "log_archived": s.log_archived,
            "log_lost": s.log_lost,
        })),
        "steps": t.steps.iter().map(|s| json!({
            "type": step_type_str(s.r#type), "name": s.name, "command": s.command,
            "shell": s.shell, "phase": exec_phase_str(s.phase), "exit_status": s.exit_status,
            "start_time": time_json(&s.start_time), "end_time": time_json(&s.end_time),
            "log_archived": s.log_archived, "log_lost": s.log_lost,
        })).collect::<Vec<_>>(),
    })
}

async fn get_task(
    State(b): State<Backends>,
    caller: Caller,
    Path((p, n, task)): Path<(String, u64, String)>,
) -> Res {
    ok(task_detail_json(
        &runs::get_task(&b, &caller, &p, n, &task).await?,
    ))
}

// --- Remote sources ---------------------------------------------------------------------------

fn remote_source_json(r: &pb::RemoteSource) -> Value {
    use agola_proto::common::v1::{RemoteSourceAuthType as A, RemoteSourceType as T};
    let t = match T::try_from(r.r#type) {
        Ok(T::Gitea) => "gitea",
        Ok(T::Github) => "github",
        Ok(T::Gitlab) => "gitlab",
        _ => "unspecified",
    };
    let a = match A::try_from(r.auth_type) {
        Ok(A::Password) => "password",
        Ok(A::Oauth2) => "oauth2",
        _ => "unspecified",
    };
    json!({
        "id": r.id, "name": r.name, "type": t, "auth_type": a,
        "registration_enabled": r.registration_enabled, "login_enabled": r.login_enabled,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RemoteSourceTypeJson {
    Gitea,
    Github,
    Gitlab,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RemoteSourceAuthJson {
    Password,
    Oauth2,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRemoteSourceBody {
    name: String,
    #[serde(rename = "type")]
    kind: RemoteSourceTypeJson,
    auth_type: RemoteSourceAuthJson,
    api_url: String,
    #[serde(default)]
    skip_verify: bool,
    #[serde(default)]
    ssh_host_key: String,
    #[serde(default)]
    skip_ssh_host_key_check: bool,
    #[serde(default)]
    oauth2_client_id: String,
    #[serde(default)]
    oauth2_client_secret: String,
    #[serde(default)]
    registration_enabled: bool,
    #[serde(default)]
    login_enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRemoteSourceBody {
    name: Option<String>,
    api_url: Option<String>,
    skip_verify: Option<bool>,
    ssh_host_key: Option<String>,
    skip_ssh_host_key_check: Option<bool>,
    oauth2_client_id: Option<String>,
    oauth2_client_secret: Option<String>,
    registration_enabled: Option<bool>,
    login_enabled: Option<bool>,
}

async fn list_remote_sources(
    State(b): State<Backends>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> Res {
    let list = remotesources::list(&b, q.start, q.limit, q.asc).await?;
    ok(Value::Array(list.iter().map(remote_source_json).collect()))
}

async fn get_remote_source(
    State(b): State<Backends>,
    _caller: Caller,
    Path(r): Path<String>,
) -> Res {
    ok(remote_source_json(&remotesources::get(&b, &r).await?))
}

async fn create_remote_source(
    State(b): State<Backends>,
    caller: Caller,
    Body(body): Body<CreateRemoteSourceBody>,
) -> Res {
    use agola_proto::common::v1::{RemoteSourceAuthType as A, RemoteSourceType as T};
    let req = pb::CreateRemoteSourceRequest {
        name: body.name,
        r#type: match body.kind {
            RemoteSourceTypeJson::Gitea => T::Gitea,
            RemoteSourceTypeJson::Github => T::Github,
            RemoteSourceTypeJson::Gitlab => T::Gitlab,
        }
        .into(),
        auth_type: match body.auth_type {
            RemoteSourceAuthJson::Password => A::Password,
            RemoteSourceAuthJson::Oauth2 => A::Oauth2,
        }
        .into(),
        api_url: body.api_url,
        skip_verify: body.skip_verify,
        ssh_host_key: body.ssh_host_key,
        skip_ssh_host_key_check: body.skip_ssh_host_key_check,
        oauth2_client_id: body.oauth2_client_id,
        oauth2_client_secret: body.oauth2_client_secret,
        registration_enabled: body.registration_enabled,
        login_enabled: body.login_enabled,
    };
    created(remote_source_json(
        &remotesources::create(&b, &caller, req).await?,
    ))
}

async fn update_remote_source(
    State(b): State<Backends>,
    caller: Caller,
    Path(r): Path<String>,
    Body(body): Body<UpdateRemoteSourceBody>,
) -> Res {
    let req = pb::UpdateRemoteSourceRequest {
        remote_source_ref: r,
        name: body.name,
        api_url: body.api_url,
        skip_verify: body.skip_verify,
        ssh_host_key: body.ssh_host_key,
        skip_ssh_host_key_check: body.skip_ssh_host_key_check,
        oauth2_client_id: body.oauth2_client_id,
        oauth2_client_secret: body.oauth2_client_secret,
        registration_enabled: body.registration_enabled,
        login_enabled: body.login_enabled,
    };
    ok(remote_source_json(
        &remotesources::update(&b, &caller, req).await?,
    ))
}

async fn delete_remote_source(
    State(b): State<Backends>,
    caller: Caller,
    Path(r): Path<String>,
) -> Res {
    remotesources::delete(&b, &caller, &r).await?;
    no_content()
}
