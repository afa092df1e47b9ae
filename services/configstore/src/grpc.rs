//! Thin tonic handlers of `agola.configstore.v1.ConfigstoreService`: convert the request,
//! make one [`Store`] call, convert the answer back. Errors become statuses once, through
//! [`crate::Error`].

use agola_proto::configstore::v1 as pb;
use agola_proto::configstore::v1::configstore_service_server::ConfigstoreService;
use tonic::{Request, Response, Status};

use crate::convert::{self, required};
use crate::projects::{NewProjectGroup, ProjectGroupChanges};
use crate::store::Store;
use crate::users::NewUser;

type Reply<T> = Result<Response<T>, Status>;

/// The configstore API.
#[derive(Debug, Clone)]
pub struct ConfigstoreApi {
    pub store: Store,
}

#[tonic::async_trait]
impl ConfigstoreService for ConfigstoreApi {
    // --- project groups ----------------------------------------------------------------------

    async fn get_project_group(
        &self,
        req: Request<pb::GetProjectGroupRequest>,
    ) -> Reply<pb::GetProjectGroupResponse> {
        let g = self
            .store
            .get_project_group(&req.into_inner().project_group_ref)?;
        Ok(Response::new(pb::GetProjectGroupResponse {
            project_group: Some(convert::group_to_pb(&g)),
        }))
    }

    async fn get_project_group_subgroups(
        &self,
        req: Request<pb::GetProjectGroupSubgroupsRequest>,
    ) -> Reply<pb::GetProjectGroupSubgroupsResponse> {
        let gs = self
            .store
            .project_group_subgroups(&req.into_inner().project_group_ref)?;
        Ok(Response::new(pb::GetProjectGroupSubgroupsResponse {
            project_groups: gs.iter().map(convert::group_to_pb).collect(),
        }))
    }

    async fn get_project_group_projects(
        &self,
        req: Request<pb::GetProjectGroupProjectsRequest>,
    ) -> Reply<pb::GetProjectGroupProjectsResponse> {
        let ps = self
            .store
            .project_group_projects(&req.into_inner().project_group_ref)?;
        Ok(Response::new(pb::GetProjectGroupProjectsResponse {
            projects: ps.iter().map(convert::project_to_pb).collect(),
        }))
    }

    async fn create_project_group(
        &self,
        req: Request<pb::CreateProjectGroupRequest>,
    ) -> Reply<pb::CreateProjectGroupResponse> {
        let req = req.into_inner();
        let g = required(req.project_group.as_ref(), "project_group")?;
        let new = NewProjectGroup {
            name: g.name.clone(),
            parent: convert::parent_ref(g.parent.as_ref(), "project_group.parent")?.ok_or_else(
                || crate::Error::InvalidArgument("project_group.parent is required".to_owned()),
            )?,
            visibility: convert::visibility_from_pb(g.visibility, "project_group.visibility")?
                .ok_or_else(|| {
                    crate::Error::InvalidArgument("project_group.visibility is required".to_owned())
                })?,
        };
        let g = self.store.create_project_group(new).await?;
        Ok(Response::new(pb::CreateProjectGroupResponse {
            project_group: Some(convert::group_to_pb(&g)),
        }))
    }

    async fn update_project_group(
        &self,
        req: Request<pb::UpdateProjectGroupRequest>,
    ) -> Reply<pb::UpdateProjectGroupResponse> {
        let req = req.into_inner();
        let g = required(req.project_group.as_ref(), "project_group")?;
        let changes = ProjectGroupChanges {
            name: Some(g.name.clone()).filter(|n| !n.is_empty()),
            parent: convert::parent_ref(g.parent.as_ref(), "project_group.parent")?,
            visibility: convert::visibility_from_pb(g.visibility, "project_group.visibility")?,
        };
        let g = self
            .store
            .update_project_group(&req.project_group_ref, changes)
            .await?;
        Ok(Response::new(pb::UpdateProjectGroupResponse {
            project_group: Some(convert::group_to_pb(&g)),
        }))
    }

    async fn delete_project_group(
        &self,
        req: Request<pb::DeleteProjectGroupRequest>,
    ) -> Reply<pb::DeleteProjectGroupResponse> {
        self.store
            .delete_project_group(&req.into_inner().project_group_ref)
            .await?;
        Ok(Response::new(pb::DeleteProjectGroupResponse {}))
    }

    // --- projects ----------------------------------------------------------------------------

    async fn get_project(
        &self,
        req: Request<pb::GetProjectRequest>,
    ) -> Reply<pb::GetProjectResponse> {
        let p = self.store.get_project(&req.into_inner().project_ref)?;
        Ok(Response::new(pb::GetProjectResponse {
            project: Some(convert::project_to_pb(&p)),
        }))
    }

    async fn create_project(
        &self,
        req: Request<pb::CreateProjectRequest>,
    ) -> Reply<pb::CreateProjectResponse> {
        let req = req.into_inner();
        let input = convert::project_input(required(req.project.as_ref(), "project")?)?;
        let p = self.store.create_project(input).await?;
        Ok(Response::new(pb::CreateProjectResponse {
            project: Some(convert::project_to_pb(&p)),
        }))
    }

    async fn update_project(
        &self,
        req: Request<pb::UpdateProjectRequest>,
    ) -> Reply<pb::UpdateProjectResponse> {
        let req = req.into_inner();
        let input = convert::project_input(required(req.project.as_ref(), "project")?)?;
        let p = self.store.update_project(&req.project_ref, input).await?;
        Ok(Response::new(pb::UpdateProjectResponse {
            project: Some(convert::project_to_pb(&p)),
        }))
    }

    async fn delete_project(
        &self,
        req: Request<pb::DeleteProjectRequest>,
    ) -> Reply<pb::DeleteProjectResponse> {
        self.store
            .delete_project(&req.into_inner().project_ref)
            .await?;
        Ok(Response::new(pb::DeleteProjectResponse {}))
    }

    // --- secrets -----------------------------------------------------------------------------

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Reply<pb::ListSecretsResponse> {
        let req = req.into_inner();
        let kind = convert::owner_type_from_pb(req.parent_type)?;
        let secrets = self.store.list_secrets(kind, &req.parent_ref, req.tree)?;
        Ok(Response::new(pb::ListSecretsResponse {
            secrets: secrets.iter().map(convert::secret_to_pb).collect(),
        }))
    }

    async fn create_secret(
        &self,
        req: Request<pb::CreateSecretRequest>,
    ) -> Reply<pb::CreateSecretResponse> {
        let req = req.into_inner();
        let kind = convert::owner_type_from_pb(req.parent_type)?;
        let input = convert::secret_input(required(req.secret.as_ref(), "secret")?)?;
        let s = self
            .store
            .create_secret(kind, &req.parent_ref, input)
            .await?;
        Ok(Response::new(pb::CreateSecretResponse {
            secret: Some(convert::secret_to_pb(&s)),
        }))
    }

    async fn update_secret(
        &self,
        req: Request<pb::UpdateSecretRequest>,
    ) -> Reply<pb::UpdateSecretResponse> {
        let req = req.into_inner();
        let kind = convert::owner_type_from_pb(req.parent_type)?;
        let input = convert::secret_input(required(req.secret.as_ref(), "secret")?)?;
        let s = self
            .store
            .update_secret(kind, &req.parent_ref, &req.secret_name, input)
            .await?;
        Ok(Response::new(pb::UpdateSecretResponse {
            secret: Some(convert::secret_to_pb(&s)),
        }))
    }

    async fn delete_secret(
        &self,
        req: Request<pb::DeleteSecretRequest>,
    ) -> Reply<pb::DeleteSecretResponse> {
        let req = req.into_inner();
        let kind = convert::owner_type_from_pb(req.parent_type)?;
        self.store
            .delete_secret(kind, &req.parent_ref, &req.secret_name)
            .await?;
        Ok(Response::new(pb::DeleteSecretResponse {}))
    }

    // --- variables ---------------------------------------------------------------------------

    async fn list_variables(
        &self,
        req: Request<pb::ListVariablesRequest>,
    ) -> Reply<pb::ListVariablesResponse> {
        let req = req.into_inner();
        let kind = convert::owner_type_from_pb(req.parent_type)?;
        let vars = self.store.list_variables(kind, &req.parent_ref, req.tree)?;
        Ok(Response::new(pb::ListVariablesResponse {
            variables: vars.iter().map(convert::variable_to_pb).collect(),
        }))
    }

    async fn create_variable(
        &self,
        req: Request<pb::CreateVariableRequest>,
    ) -> Reply<pb::CreateVariableResponse> {
        let req = req.into_inner();
        let kind = convert::owner_type_from_pb(req.parent_type)?;
        let input = convert::variable_input(required(req.variable.as_ref(), "variable")?)?;
        let v = self
            .store
            .create_variable(kind, &req.parent_ref, input)
            .await?;
        Ok(Response::new(pb::CreateVariableResponse {
            variable: Some(convert::variable_to_pb(&v)),
        }))
    }

    async fn update_variable(
        &self,
        req: Request<pb::UpdateVariableRequest>,
    ) -> Reply<pb::UpdateVariableResponse> {
        let req = req.into_inner();
        let kind = convert::owner_type_from_pb(req.parent_type)?;
        let input = convert::variable_input(required(req.variable.as_ref(), "variable")?)?;
        let v = self
            .store
            .update_variable(kind, &req.parent_ref, &req.variable_name, input)
            .await?;
        Ok(Response::new(pb::UpdateVariableResponse {
            variable: Some(convert::variable_to_pb(&v)),
        }))
    }

    async fn delete_variable(
        &self,
        req: Request<pb::DeleteVariableRequest>,
    ) -> Reply<pb::DeleteVariableResponse> {
        let req = req.into_inner();
        let kind = convert::owner_type_from_pb(req.parent_type)?;
        self.store
            .delete_variable(kind, &req.parent_ref, &req.variable_name)
            .await?;
        Ok(Response::new(pb::DeleteVariableResponse {}))
    }

    // --- users -------------------------------------------------------------------------------

    async fn get_user(&self, req: Request<pb::GetUserRequest>) -> Reply<pb::GetUserResponse> {
        let u = self.store.get_user(&req.into_inner().user_ref)?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(convert::user_to_pb(&u)),
        }))
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> Reply<pb::ListUsersResponse> {
        let req = req.into_inner();
        let users = self.store.list_users(&req.start, req.limit, req.asc)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.iter().map(convert::user_to_pb).collect(),
        }))
    }

    async fn get_user_by_token(
        &self,
        req: Request<pb::GetUserByTokenRequest>,
    ) -> Reply<pb::GetUserByTokenResponse> {
        let u = self.store.get_user_by_token(&req.into_inner().token)?;
        Ok(Response::new(pb::GetUserByTokenResponse {
            user: Some(convert::user_to_pb(&u)),
        }))
    }

    async fn get_user_by_linked_account(
        &self,
        req: Request<pb::GetUserByLinkedAccountRequest>,
    ) -> Reply<pb::GetUserByLinkedAccountResponse> {
        let u = self
            .store
            .get_user_by_linked_account(&req.into_inner().linked_account_id)?;
        Ok(Response::new(pb::GetUserByLinkedAccountResponse {
            user: Some(convert::user_to_pb(&u)),
        }))
    }

    async fn get_user_by_remote_user(
        &self,
        req: Request<pb::GetUserByRemoteUserRequest>,
    ) -> Reply<pb::GetUserByRemoteUserResponse> {
        let req = req.into_inner();
        let u = self
            .store
            .get_user_by_remote_user(&req.remote_user_id, &req.remote_source_id)?;
        Ok(Response::new(pb::GetUserByRemoteUserResponse {
            user: Some(convert::user_to_pb(&u)),
        }))
    }

    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Reply<pb::CreateUserResponse> {
        let req = req.into_inner();
        let new = NewUser {
            name: req.name,
            admin: req.admin,
            linked_account: req
                .linked_account
                .as_ref()
                .map(|la| convert::linked_account_input(la, "linked_account"))
                .transpose()?,
        };
        let u = self.store.create_user(new).await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(convert::user_to_pb(&u)),
        }))
    }

    async fn update_user(
        &self,
        req: Request<pb::UpdateUserRequest>,
    ) -> Reply<pb::UpdateUserResponse> {
        let req = req.into_inner();
        let u = self
            .store
            .update_user(&req.user_ref, &req.name, req.admin)
            .await?;
        Ok(Response::new(pb::UpdateUserResponse {
            user: Some(convert::user_to_pb(&u)),
        }))
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Reply<pb::DeleteUserResponse> {
        self.store.delete_user(&req.into_inner().user_ref).await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_user_orgs(
        &self,
        req: Request<pb::ListUserOrgsRequest>,
    ) -> Reply<pb::ListUserOrgsResponse> {
        let orgs = self.store.list_user_orgs(&req.into_inner().user_ref)?;
        Ok(Response::new(pb::ListUserOrgsResponse {
            orgs: orgs.iter().map(convert::user_org_to_pb).collect(),
        }))
    }

    async fn create_user_linked_account(
        &self,
        req: Request<pb::CreateUserLinkedAccountRequest>,
    ) -> Reply<pb::CreateUserLinkedAccountResponse> {
        let req = req.into_inner();
        let input = convert::linked_account_input(
            required(req.linked_account.as_ref(), "linked_account")?,
            "linked_account",
        )?;
        let la = self
            .store
            .create_user_linked_account(&req.user_ref, input)
            .await?;
        Ok(Response::new(pb::CreateUserLinkedAccountResponse {
            linked_account: Some(convert::linked_account_to_pb(&la)),
        }))
    }

    async fn update_user_linked_account(
        &self,
        req: Request<pb::UpdateUserLinkedAccountRequest>,
    ) -> Reply<pb::UpdateUserLinkedAccountResponse> {
        let req = req.into_inner();
        let input = convert::linked_account_from_pb(
            required(req.linked_account.as_ref(), "linked_account")?,
            "linked_account",
        )?;
        let la = self
            .store
            .update_user_linked_account(&req.user_ref, &req.linked_account_id, input)
            .await?;
        Ok(Response::new(pb::UpdateUserLinkedAccountResponse {
            linked_account: Some(convert::linked_account_to_pb(&la)),
        }))
    }

    async fn delete_user_linked_account(
        &self,
        req: Request<pb::DeleteUserLinkedAccountRequest>,
    ) -> Reply<pb::DeleteUserLinkedAccountResponse> {
        let req = req.into_inner();
        self.store
            .delete_user_linked_account(&req.user_ref, &req.linked_account_id)
            .await?;
        Ok(Response::new(pb::DeleteUserLinkedAccountResponse {}))
    }

    async fn create_user_token(
        &self,
        req: Request<pb::CreateUserTokenRequest>,
    ) -> Reply<pb::CreateUserTokenResponse> {
        let req = req.into_inner();
        let token = self
            .store
            .create_user_token(&req.user_ref, &req.token_name)
            .await?;
        Ok(Response::new(pb::CreateUserTokenResponse { token }))
    }

    async fn delete_user_token(
        &self,
        req: Request<pb::DeleteUserTokenRequest>,
    ) -> Reply<pb::DeleteUserTokenResponse> {
        let req = req.into_inner();
        self.store
            .delete_user_token(&req.user_ref, &req.token_name)
            .await?;
        Ok(Response::new(pb::DeleteUserTokenResponse {}))
    }

    // --- orgs --------------------------------------------------------------------------------

    async fn get_org(&self, req: Request<pb::GetOrgRequest>) -> Reply<pb::GetOrgResponse> {
        let o = self.store.get_org(&req.into_inner().org_ref)?;
        Ok(Response::new(pb::GetOrgResponse {
            org: Some(convert::org_to_pb(&o)),
        }))
    }

    async fn list_orgs(&self, req: Request<pb::ListOrgsRequest>) -> Reply<pb::ListOrgsResponse> {
        let req = req.into_inner();
        let orgs = self.store.list_orgs(&req.start, req.limit, req.asc)?;
        Ok(Response::new(pb::ListOrgsResponse {
            orgs: orgs.iter().map(convert::org_to_pb).collect(),
        }))
    }

    async fn create_org(&self, req: Request<pb::CreateOrgRequest>) -> Reply<pb::CreateOrgResponse> {
        let req = req.into_inner();
        let new = crate::orgs::NewOrg {
            name: req.name,
            visibility: convert::visibility_from_pb(req.visibility, "visibility")?.ok_or_else(
                || crate::Error::InvalidArgument("visibility is required".to_owned()),
            )?,
            creator: req.creator_user_id,
        };
        let o = self.store.create_org(new).await?;
        Ok(Response::new(pb::CreateOrgResponse {
            org: Some(convert::org_to_pb(&o)),
        }))
    }

    async fn delete_org(&self, req: Request<pb::DeleteOrgRequest>) -> Reply<pb::DeleteOrgResponse> {
        self.store.delete_org(&req.into_inner().org_ref).await?;
        Ok(Response::new(pb::DeleteOrgResponse {}))
    }

    async fn list_org_members(
        &self,
        req: Request<pb::ListOrgMembersRequest>,
    ) -> Reply<pb::ListOrgMembersResponse> {
        let members = self.store.list_org_members(&req.into_inner().org_ref)?;
        Ok(Response::new(pb::ListOrgMembersResponse {
            members: members.iter().map(convert::org_member_user_to_pb).collect(),
        }))
    }

    async fn add_org_member(
        &self,
        req: Request<pb::AddOrgMemberRequest>,
    ) -> Reply<pb::AddOrgMemberResponse> {
        let req = req.into_inner();
        let role = convert::member_role_from_pb(req.role, "role")?;
        let (member, created) = self
            .store
            .add_org_member(&req.org_ref, &req.user_ref, role)
            .await?;
        Ok(Response::new(pb::AddOrgMemberResponse {
            org_member: Some(convert::org_member_to_pb(&member)),
            created,
        }))
    }

    async fn remove_org_member(
        &self,
        req: Request<pb::RemoveOrgMemberRequest>,
    ) -> Reply<pb::RemoveOrgMemberResponse> {
        let req = req.into_inner();
        self.store
            .remove_org_member(&req.org_ref, &req.user_ref)
            .await?;
        Ok(Response::new(pb::RemoveOrgMemberResponse {}))
    }

    // --- remote sources ----------------------------------------------------------------------

    async fn get_remote_source(
        &self,
        req: Request<pb::GetRemoteSourceRequest>,
    ) -> Reply<pb::GetRemoteSourceResponse> {
        let rs = self
            .store
            .get_remote_source(&req.into_inner().remote_source_ref)?;
        Ok(Response::new(pb::GetRemoteSourceResponse {
            remote_source: Some(convert::remote_source_to_pb(&rs)),
        }))
    }

    async fn list_remote_sources(
        &self,
        req: Request<pb::ListRemoteSourcesRequest>,
    ) -> Reply<pb::ListRemoteSourcesResponse> {
        let req = req.into_inner();
        let list = self
            .store
            .list_remote_sources(&req.start, req.limit, req.asc)?;
        Ok(Response::new(pb::ListRemoteSourcesResponse {
            remote_sources: list.iter().map(convert::remote_source_to_pb).collect(),
        }))
    }

    async fn create_remote_source(
        &self,
        req: Request<pb::CreateRemoteSourceRequest>,
    ) -> Reply<pb::CreateRemoteSourceResponse> {
        let req = req.into_inner();
        let input =
            convert::remote_source_input(required(req.remote_source.as_ref(), "remote_source")?)?;
        let rs = self.store.create_remote_source(input).await?;
        Ok(Response::new(pb::CreateRemoteSourceResponse {
            remote_source: Some(convert::remote_source_to_pb(&rs)),
        }))
    }

    async fn update_remote_source(
        &self,
        req: Request<pb::UpdateRemoteSourceRequest>,
    ) -> Reply<pb::UpdateRemoteSourceResponse> {
        let req = req.into_inner();
        let input =
            convert::remote_source_input(required(req.remote_source.as_ref(), "remote_source")?)?;
        let rs = self
            .store
            .update_remote_source(&req.remote_source_ref, input)
            .await?;
        Ok(Response::new(pb::UpdateRemoteSourceResponse {
            remote_source: Some(convert::remote_source_to_pb(&rs)),
        }))
    }

    async fn delete_remote_source(
        &self,
        req: Request<pb::DeleteRemoteSourceRequest>,
    ) -> Reply<pb::DeleteRemoteSourceResponse> {
        self.store
            .delete_remote_source(&req.into_inner().remote_source_ref)
            .await?;
        Ok(Response::new(pb::DeleteRemoteSourceResponse {}))
    }
}
