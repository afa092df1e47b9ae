//! Thin tonic handlers of the public gRPC API.

use agola_common::ApiError;
use agola_proto::gateway::v1 as pb;
use agola_proto::gateway::v1::org_service_server::OrgService;
use agola_proto::gateway::v1::project_group_service_server::ProjectGroupService;
use agola_proto::gateway::v1::project_service_server::ProjectService;
use agola_proto::gateway::v1::remote_source_service_server::RemoteSourceService;
use agola_proto::gateway::v1::run_service_server::RunService;
use agola_proto::gateway::v1::secret_service_server::SecretService;
use agola_proto::gateway::v1::user_service_server::UserService;
use agola_proto::gateway::v1::variable_service_server::VariableService;
use agola_proto::gateway::v1::version_service_server::VersionService;
use agola_proto::gateway::v1::{GetVersionRequest, GetVersionResponse};
use tonic::{Request, Response, Status};

use crate::auth::{Caller, authenticate};
use crate::backends::Backends;
use crate::{createrun, orgs, projects, remotesources, runs, secrets, users};

/// `agola.gateway.v1.VersionService`.
#[derive(Debug, Clone, Copy)]
pub struct Version;

#[tonic::async_trait]
impl VersionService for Version {
    async fn get_version(
        &self,
        _request: Request<GetVersionRequest>,
    ) -> Result<Response<GetVersionResponse>, Status> {
        Ok(Response::new(GetVersionResponse {
            version: crate::VERSION.to_owned(),
        }))
    }
}

/// The caller of a gRPC request, from its `authorization` metadata.
async fn caller<T>(b: &Backends, request: &Request<T>) -> Result<Caller, Status> {
    let header = request
        .metadata()
        .get("authorization")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::unauthorized("invalid authorization metadata"))
        })
        .transpose()?;
    Ok(authenticate(b, header).await?)
}

/// `agola.gateway.v1.OrgService`.
#[derive(Debug, Clone)]
pub struct Orgs(pub Backends);

#[tonic::async_trait]
impl OrgService for Orgs {
    async fn list_orgs(
        &self,
        request: Request<pb::ListOrgsRequest>,
    ) -> Result<Response<pb::ListOrgsResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let orgs = orgs::list(&self.0, &c, r.start, r.limit, r.asc).await?;
        Ok(Response::new(pb::ListOrgsResponse { orgs }))
    }

    async fn get_org(
        &self,
        request: Request<pb::GetOrgRequest>,
    ) -> Result<Response<pb::GetOrgResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let org = orgs::get(&self.0, &c, &request.into_inner().org_ref).await?;
        Ok(Response::new(pb::GetOrgResponse { org: Some(org) }))
    }

    async fn list_org_members(
        &self,
        request: Request<pb::ListOrgMembersRequest>,
    ) -> Result<Response<pb::ListOrgMembersResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let members = orgs::members(&self.0, &c, &request.into_inner().org_ref).await?;
        Ok(Response::new(pb::ListOrgMembersResponse { members }))
    }

    async fn create_org(
        &self,
        request: Request<pb::CreateOrgRequest>,
    ) -> Result<Response<pb::CreateOrgResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let visibility = r.visibility();
        let org = orgs::create(&self.0, &c, r.name, visibility).await?;
        Ok(Response::new(pb::CreateOrgResponse { org: Some(org) }))
    }

    async fn delete_org(
        &self,
        request: Request<pb::DeleteOrgRequest>,
    ) -> Result<Response<pb::DeleteOrgResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        orgs::delete(&self.0, &c, &request.into_inner().org_ref).await?;
        Ok(Response::new(pb::DeleteOrgResponse {}))
    }

    async fn add_org_member(
        &self,
        request: Request<pb::AddOrgMemberRequest>,
    ) -> Result<Response<pb::AddOrgMemberResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let role = r.role();
        let (member, created) =
            orgs::add_member(&self.0, &c, &r.org_ref, &r.user_ref, role).await?;
        Ok(Response::new(pb::AddOrgMemberResponse {
            member: Some(member),
            created,
        }))
    }

    async fn remove_org_member(
        &self,
        request: Request<pb::RemoveOrgMemberRequest>,
    ) -> Result<Response<pb::RemoveOrgMemberResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        orgs::remove_member(&self.0, &c, &r.org_ref, &r.user_ref).await?;
        Ok(Response::new(pb::RemoveOrgMemberResponse {}))
    }
}

/// `agola.gateway.v1.ProjectGroupService`.
#[derive(Debug, Clone)]
pub struct ProjectGroups(pub Backends);

#[tonic::async_trait]
impl ProjectGroupService for ProjectGroups {
    async fn get_project_group(
        &self,
        request: Request<pb::GetProjectGroupRequest>,
    ) -> Result<Response<pb::GetProjectGroupResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let g = projects::get_group(&self.0, &c, &request.into_inner().project_group_ref).await?;
        Ok(Response::new(pb::GetProjectGroupResponse {
            project_group: Some(g),
        }))
    }

    async fn list_project_group_subgroups(
        &self,
        request: Request<pb::ListProjectGroupSubgroupsRequest>,
    ) -> Result<Response<pb::ListProjectGroupSubgroupsResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let project_groups =
            projects::subgroups(&self.0, &c, &request.into_inner().project_group_ref).await?;
        Ok(Response::new(pb::ListProjectGroupSubgroupsResponse {
            project_groups,
        }))
    }

    async fn list_project_group_projects(
        &self,
        request: Request<pb::ListProjectGroupProjectsRequest>,
    ) -> Result<Response<pb::ListProjectGroupProjectsResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let projects =
            projects::group_projects(&self.0, &c, &request.into_inner().project_group_ref).await?;
        Ok(Response::new(pb::ListProjectGroupProjectsResponse {
            projects,
        }))
    }

    async fn create_project_group(
        &self,
        request: Request<pb::CreateProjectGroupRequest>,
    ) -> Result<Response<pb::CreateProjectGroupResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let visibility = r.visibility();
        let g = projects::create_group(&self.0, &c, r.name, &r.parent_ref, visibility).await?;
        Ok(Response::new(pb::CreateProjectGroupResponse {
            project_group: Some(g),
        }))
    }

    async fn update_project_group(
        &self,
        request: Request<pb::UpdateProjectGroupRequest>,
    ) -> Result<Response<pb::UpdateProjectGroupResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let g = projects::update_group(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateProjectGroupResponse {
            project_group: Some(g),
        }))
    }

    async fn delete_project_group(
        &self,
        request: Request<pb::DeleteProjectGroupRequest>,
    ) -> Result<Response<pb::DeleteProjectGroupResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        projects::delete_group(&self.0, &c, &request.into_inner().project_group_ref).await?;
        Ok(Response::new(pb::DeleteProjectGroupResponse {}))
    }
}

/// `agola.gateway.v1.SecretService`.
#[derive(Debug, Clone)]
pub struct Secrets(pub Backends);

#[tonic::async_trait]
impl SecretService for Secrets {
    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let secrets = secrets::list_secrets(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::ListSecretsResponse { secrets }))
    }

    async fn create_secret(
        &self,
        request: Request<pb::CreateSecretRequest>,
    ) -> Result<Response<pb::CreateSecretResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let s = secrets::create_secret(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::CreateSecretResponse { secret: Some(s) }))
    }

    async fn update_secret(
        &self,
        request: Request<pb::UpdateSecretRequest>,
    ) -> Result<Response<pb::UpdateSecretResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let s = secrets::update_secret(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateSecretResponse { secret: Some(s) }))
    }

    async fn delete_secret(
        &self,
        request: Request<pb::DeleteSecretRequest>,
    ) -> Result<Response<pb::DeleteSecretResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let pt = r.parent_type();
        secrets::delete_secret(&self.0, &c, pt, &r.parent_ref, &r.secret_name).await?;
        Ok(Response::new(pb::DeleteSecretResponse {}))
    }
}

/// `agola.gateway.v1.VariableService`.
#[derive(Debug, Clone)]
pub struct Variables(pub Backends);

#[tonic::async_trait]
impl VariableService for Variables {
    async fn list_variables(
        &self,
        request: Request<pb::ListVariablesRequest>,
    ) -> Result<Response<pb::ListVariablesResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let variables = secrets::list_variables(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::ListVariablesResponse { variables }))
    }

    async fn create_variable(
        &self,
        request: Request<pb::CreateVariableRequest>,
    ) -> Result<Response<pb::CreateVariableResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let pt = r.parent_type();
        let v = secrets::create_variable(&self.0, &c, pt, &r.parent_ref, r.name, r.values).await?;
        Ok(Response::new(pb::CreateVariableResponse {
            variable: Some(v),
        }))
    }

    async fn update_variable(
        &self,
        request: Request<pb::UpdateVariableRequest>,
    ) -> Result<Response<pb::UpdateVariableResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let v = secrets::update_variable(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateVariableResponse {
            variable: Some(v),
        }))
    }

    async fn delete_variable(
        &self,
        request: Request<pb::DeleteVariableRequest>,
    ) -> Result<Response<pb::DeleteVariableResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let pt = r.parent_type();
        secrets::delete_variable(&self.0, &c, pt, &r.parent_ref, &r.variable_name).await?;
        Ok(Response::new(pb::DeleteVariableResponse {}))
    }
}

/// The project ref of a run request's owner; user direct runs are not built yet.
macro_rules! project_owner {
    ($owner:expr, $module:ident) => {
        match $owner {
            Some(pb::$module::Owner::ProjectRef(r)) => Ok::<String, ApiError>(r),
            Some(pb::$module::Owner::UserRef(_)) => Err(ApiError::bad_request(
                "user direct runs are not supported yet",
            )),
            None => Err(ApiError::bad_request("missing field `project_ref`")),
        }
    };
}

fn log_selector(setup: bool, step: Option<i32>) -> Result<runs::LogSelector, ApiError> {
    match (setup, step) {
        (true, None) => Ok(runs::LogSelector::Setup),
        (false, Some(n)) => Ok(runs::LogSelector::Step(n)),
        _ => Err(ApiError::bad_request("give exactly one of setup and step")),
    }
}

/// `agola.gateway.v1.RunService` (project runs).
#[derive(Debug, Clone)]
pub struct Runs(pub Backends);

#[tonic::async_trait]
impl RunService for Runs {
    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let project = project_owner!(r.owner.clone(), list_runs_request)?;
        let filter = runs::ListFilter {
            phases: r.phases().collect(),
            results: r.results().collect(),
            subgroup: r.subgroup,
            start: r.start,
            limit: r.limit,
            asc: r.asc,
        };
        let runs = runs::list(&self.0, &c, &project, filter).await?;
        Ok(Response::new(pb::ListRunsResponse { runs }))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let project = project_owner!(r.owner, get_run_request)?;
        let run = runs::get(&self.0, &c, &project, r.number).await?;
        Ok(Response::new(pb::GetRunResponse { run: Some(run) }))
    }

    async fn run_action(
        &self,
        request: Request<pb::RunActionRequest>,
    ) -> Result<Response<pb::RunActionResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let action = r.action_type();
        let project = project_owner!(r.owner, run_action_request)?;
        let run = runs::action(&self.0, &c, &project, r.number, action, r.from_start).await?;
        Ok(Response::new(pb::RunActionResponse { run }))
    }

    async fn delete_run(
        &self,
        request: Request<pb::DeleteRunRequest>,
    ) -> Result<Response<pb::DeleteRunResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let project = project_owner!(r.owner, delete_run_request)?;
        runs::delete(&self.0, &c, &project, r.number).await?;
        Ok(Response::new(pb::DeleteRunResponse {}))
    }

    async fn get_run_task(
        &self,
        request: Request<pb::GetRunTaskRequest>,
    ) -> Result<Response<pb::GetRunTaskResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let project = project_owner!(r.owner, get_run_task_request)?;
        let task = runs::get_task(&self.0, &c, &project, r.number, &r.task_id).await?;
        Ok(Response::new(pb::GetRunTaskResponse { task: Some(task) }))
    }

    async fn run_task_action(
        &self,
        request: Request<pb::RunTaskActionRequest>,
    ) -> Result<Response<pb::RunTaskActionResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        if r.action_type() != pb::RunTaskActionType::Approve {
            return Err(ApiError::bad_request("action_type must be approve").into());
        }
        let project = project_owner!(r.owner, run_task_action_request)?;
        runs::approve(&self.0, &c, &project, r.number, &r.task_id).await?;
        Ok(Response::new(pb::RunTaskActionResponse {}))
    }

    type GetRunTaskLogsStream =
        futures::stream::BoxStream<'static, Result<pb::GetRunTaskLogsResponse, Status>>;

    async fn get_run_task_logs(
        &self,
        request: Request<pb::GetRunTaskLogsRequest>,
    ) -> Result<Response<Self::GetRunTaskLogsStream>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let which = log_selector(r.setup, r.step)?;
        let project = project_owner!(r.owner, get_run_task_logs_request)?;
        let stream =
            runs::logs(&self.0, &c, &project, r.number, &r.task_id, which, r.follow).await?;
        let stream = futures::StreamExt::map(stream, |m| {
            m.map(|m| pb::GetRunTaskLogsResponse { data: m.data })
                .map_err(|s| ApiError::from(s).to_status())
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn delete_run_task_logs(
        &self,
        request: Request<pb::DeleteRunTaskLogsRequest>,
    ) -> Result<Response<pb::DeleteRunTaskLogsResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let which = log_selector(r.setup, r.step)?;
        let project = project_owner!(r.owner, delete_run_task_logs_request)?;
        runs::delete_logs(&self.0, &c, &project, r.number, &r.task_id, which).await?;
        Ok(Response::new(pb::DeleteRunTaskLogsResponse {}))
    }

    async fn create_project_run(
        &self,
        request: Request<pb::CreateProjectRunRequest>,
    ) -> Result<Response<pb::CreateProjectRunResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let req = createrun::RefRequest {
            branch: r.branch,
            tag: r.tag,
            git_ref: r.r#ref,
            commit_sha: r.commit_sha,
        };
        let runs = createrun::create(&self.0, &c, &r.project_ref, req).await?;
        Ok(Response::new(pb::CreateProjectRunResponse { runs }))
    }

    async fn create_user_run(
        &self,
        request: Request<pb::CreateUserRunRequest>,
    ) -> Result<Response<pb::CreateUserRunResponse>, Status> {
        caller(&self.0, &request).await?.require_user()?;
        Err(ApiError::bad_request("user direct runs are not supported yet").into())
    }
}

/// `agola.gateway.v1.ProjectService`.
#[derive(Debug, Clone)]
pub struct Projects(pub Backends);

#[tonic::async_trait]
impl ProjectService for Projects {
    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let p = projects::get_project(&self.0, &c, &request.into_inner().project_ref).await?;
        Ok(Response::new(pb::GetProjectResponse { project: Some(p) }))
    }

    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::CreateProjectResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let p = projects::create_project(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::CreateProjectResponse {
            project: Some(p),
        }))
    }

    async fn update_project(
        &self,
        request: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::UpdateProjectResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let p = projects::update_project(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateProjectResponse {
            project: Some(p),
        }))
    }

    async fn delete_project(
        &self,
        request: Request<pb::DeleteProjectRequest>,
    ) -> Result<Response<pb::DeleteProjectResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        projects::delete_project(&self.0, &c, &request.into_inner().project_ref).await?;
        Ok(Response::new(pb::DeleteProjectResponse {}))
    }

    async fn reconfig_project(
        &self,
        request: Request<pb::ReconfigProjectRequest>,
    ) -> Result<Response<pb::ReconfigProjectResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let project_ref = request.into_inner().project_ref;
        Err(projects::remote_source_only(&self.0, &c, &project_ref)
            .await
            .into())
    }

    async fn update_project_repo_linked_account(
        &self,
        request: Request<pb::UpdateProjectRepoLinkedAccountRequest>,
    ) -> Result<Response<pb::UpdateProjectRepoLinkedAccountResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let project_ref = request.into_inner().project_ref;
        Err(projects::remote_source_only(&self.0, &c, &project_ref)
            .await
            .into())
    }

    async fn get_project_badge(
        &self,
        request: Request<pb::GetProjectBadgeRequest>,
    ) -> Result<Response<pb::GetProjectBadgeResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let svg = runs::badge(&self.0, &c, &r.project_ref, &r.branch).await?;
        Ok(Response::new(pb::GetProjectBadgeResponse { svg }))
    }
}

/// `agola.gateway.v1.UserService`. Remote sources are not supported yet, so listing remote
/// repositories and linking accounts answer 400.
#[derive(Debug, Clone)]
pub struct Users(pub Backends);

fn no_remote_sources() -> Status {
    ApiError::bad_request("remote sources are not supported yet").into()
}

#[tonic::async_trait]
impl UserService for Users {
    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::GetCurrentUserResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let user = users::current(&c)?;
        Ok(Response::new(pb::GetCurrentUserResponse {
            user: Some(user),
        }))
    }

    async fn list_current_user_orgs(
        &self,
        request: Request<pb::ListCurrentUserOrgsRequest>,
    ) -> Result<Response<pb::ListCurrentUserOrgsResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let orgs = users::current_orgs(&self.0, &c).await?;
        Ok(Response::new(pb::ListCurrentUserOrgsResponse { orgs }))
    }

    async fn list_current_user_remote_repos(
        &self,
        request: Request<pb::ListCurrentUserRemoteReposRequest>,
    ) -> Result<Response<pb::ListCurrentUserRemoteReposResponse>, Status> {
        caller(&self.0, &request).await?.require_user()?;
        Err(no_remote_sources())
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let user = users::get(&self.0, &c, &request.into_inner().user_ref).await?;
        Ok(Response::new(pb::GetUserResponse { user: Some(user) }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let users = users::list(&self.0, &c, r.start, r.limit, r.asc).await?;
        Ok(Response::new(pb::ListUsersResponse { users }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let user = users::create(&self.0, &c, request.into_inner().username).await?;
        Ok(Response::new(pb::CreateUserResponse { user: Some(user) }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        users::delete(&self.0, &c, &request.into_inner().user_ref).await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn create_user_linked_account(
        &self,
        request: Request<pb::CreateUserLinkedAccountRequest>,
    ) -> Result<Response<pb::CreateUserLinkedAccountResponse>, Status> {
        caller(&self.0, &request).await?.require_auth()?;
        Err(no_remote_sources())
    }

    async fn delete_user_linked_account(
        &self,
        request: Request<pb::DeleteUserLinkedAccountRequest>,
    ) -> Result<Response<pb::DeleteUserLinkedAccountResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        users::delete_linked_account(&self.0, &c, &r.user_ref, &r.linked_account_id).await?;
        Ok(Response::new(pb::DeleteUserLinkedAccountResponse {}))
    }

    async fn create_user_token(
        &self,
        request: Request<pb::CreateUserTokenRequest>,
    ) -> Result<Response<pb::CreateUserTokenResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let token = users::create_token(&self.0, &c, &r.user_ref, r.token_name).await?;
        Ok(Response::new(pb::CreateUserTokenResponse { token }))
    }

    async fn delete_user_token(
        &self,
        request: Request<pb::DeleteUserTokenRequest>,
    ) -> Result<Response<pb::DeleteUserTokenResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = request.into_inner();
        users::delete_token(&self.0, &c, &r.user_ref, &r.token_name).await?;
        Ok(Response::new(pb::DeleteUserTokenResponse {}))
    }
}

/// `agola.gateway.v1.RemoteSourceService`.
#[derive(Debug, Clone)]
pub struct RemoteSources(pub Backends);

#[tonic::async_trait]
impl RemoteSourceService for RemoteSources {
    async fn list_remote_sources(
        &self,
        request: Request<pb::ListRemoteSourcesRequest>,
    ) -> Result<Response<pb::ListRemoteSourcesResponse>, Status> {
        caller(&self.0, &request).await?;
        let r = request.into_inner();
        let remote_sources = remotesources::list(&self.0, r.start, r.limit, r.asc).await?;
        Ok(Response::new(pb::ListRemoteSourcesResponse {
            remote_sources,
        }))
    }

    async fn get_remote_source(
        &self,
        request: Request<pb::GetRemoteSourceRequest>,
    ) -> Result<Response<pb::GetRemoteSourceResponse>, Status> {
        caller(&self.0, &request).await?;
        let r = remotesources::get(&self.0, &request.into_inner().remote_source_ref).await?;
        Ok(Response::new(pb::GetRemoteSourceResponse {
            remote_source: Some(r),
        }))
    }

    async fn create_remote_source(
        &self,
        request: Request<pb::CreateRemoteSourceRequest>,
    ) -> Result<Response<pb::CreateRemoteSourceResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = remotesources::create(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::CreateRemoteSourceResponse {
            remote_source: Some(r),
        }))
    }

    async fn update_remote_source(
        &self,
        request: Request<pb::UpdateRemoteSourceRequest>,
    ) -> Result<Response<pb::UpdateRemoteSourceResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        let r = remotesources::update(&self.0, &c, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateRemoteSourceResponse {
            remote_source: Some(r),
        }))
    }

    async fn delete_remote_source(
        &self,
        request: Request<pb::DeleteRemoteSourceRequest>,
    ) -> Result<Response<pb::DeleteRemoteSourceResponse>, Status> {
        let c = caller(&self.0, &request).await?;
        remotesources::delete(&self.0, &c, &request.into_inner().remote_source_ref).await?;
        Ok(Response::new(pb::DeleteRemoteSourceResponse {}))
    }
}
