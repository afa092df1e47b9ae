//! Thin tonic handlers of the public gRPC API.

use agola_common::ApiError;
use agola_proto::gateway::v1 as pb;
use agola_proto::gateway::v1::org_service_server::OrgService;
use agola_proto::gateway::v1::version_service_server::VersionService;
use agola_proto::gateway::v1::{GetVersionRequest, GetVersionResponse};
use tonic::{Request, Response, Status};

use crate::auth::{Caller, authenticate};
use crate::backends::Backends;
use crate::orgs;

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
