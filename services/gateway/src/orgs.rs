//! Orgs and their members: public orgs are readable by anyone, private ones by members and
//! admins (others get 404); the creator becomes the first owner; owners administer.

use agola_common::ApiError;
use agola_proto::common::v1::{MemberRole, Visibility};
use agola_proto::configstore::v1 as cs;
use agola_proto::gateway::v1 as pb;

use crate::auth::{Access, Caller, Owner, access};
use crate::backends::Backends;
use crate::views;

/// The org and the caller's access to it.
async fn load(b: &Backends, caller: &Caller, org_ref: &str) -> Result<(cs::Org, Access), ApiError> {
    let org = b
        .cs()?
        .get_org(cs::GetOrgRequest {
            org_ref: org_ref.to_owned(),
        })
        .await?
        .into_inner()
        .org
        .ok_or_else(|| ApiError::internal("configstore answered no org"))?;
    let level = access(b, caller, &Owner::Org(org.name.clone()), org.visibility()).await?;
    Ok((org, level))
}

fn what(org_ref: &str) -> String {
    format!("org {org_ref:?}")
}

/// `GET /orgs`: the orgs the caller may see.
pub async fn list(
    b: &Backends,
    caller: &Caller,
    start: String,
    limit: u32,
    asc: bool,
) -> Result<Vec<pb::Org>, ApiError> {
    let orgs = b
        .cs()?
        .list_orgs(cs::ListOrgsRequest { start, limit, asc })
        .await?
        .into_inner()
        .orgs;
    let mine: Vec<String> = match caller.user() {
        Some(u) if !caller.is_admin() => b
            .cs()?
            .list_user_orgs(cs::ListUserOrgsRequest {
                user_ref: u.id.clone(),
            })
            .await?
            .into_inner()
            .orgs
            .into_iter()
            .filter_map(|uo| uo.org.map(|o| o.id))
            .collect(),
        _ => Vec::new(),
    };
    Ok(orgs
        .iter()
        .filter(|o| {
            caller.is_admin() || o.visibility() == Visibility::Public || mine.contains(&o.id)
        })
        .map(views::org)
        .collect())
}

/// `GET /orgs/{ref}`.
pub async fn get(b: &Backends, caller: &Caller, org_ref: &str) -> Result<pb::Org, ApiError> {
    let (org, level) = load(b, caller, org_ref).await?;
    level.require_read(&what(org_ref))?;
    Ok(views::org(&org))
}

/// `GET /orgs/{ref}/members`.
pub async fn members(
    b: &Backends,
    caller: &Caller,
    org_ref: &str,
) -> Result<Vec<pb::OrgMember>, ApiError> {
    let (org, level) = load(b, caller, org_ref).await?;
    level.require_read(&what(org_ref))?;
    let members = b
        .cs()?
        .list_org_members(cs::ListOrgMembersRequest { org_ref: org.id })
        .await?
        .into_inner()
        .members;
    Ok(members
        .into_iter()
        .filter_map(|m| {
            let role = m.role;
            m.user.map(|u| pb::OrgMember {
                user_id: u.id,
                user_name: u.name,
                role,
            })
        })
        .collect())
}

/// `POST /orgs`: the calling user becomes the first owner (no owner for the admin token).
pub async fn create(
    b: &Backends,
    caller: &Caller,
    name: String,
    visibility: Visibility,
) -> Result<pb::Org, ApiError> {
    caller.require_auth()?;
    let visibility = match visibility {
        Visibility::Unspecified => Visibility::Public,
        v => v,
    };
    let org = b
        .cs()?
        .create_org(cs::CreateOrgRequest {
            name,
            visibility: visibility.into(),
            creator_user_id: caller.user().map(|u| u.id.clone()).unwrap_or_default(),
        })
        .await?
        .into_inner()
        .org
        .ok_or_else(|| ApiError::internal("configstore answered no org"))?;
    Ok(views::org(&org))
}

/// `DELETE /orgs/{ref}` (owners).
pub async fn delete(b: &Backends, caller: &Caller, org_ref: &str) -> Result<(), ApiError> {
    caller.require_auth()?;
    let (org, level) = load(b, caller, org_ref).await?;
    level.require(Access::Owner, &what(org_ref))?;
    b.cs()?
        .delete_org(cs::DeleteOrgRequest { org_ref: org.id })
        .await?;
    Ok(())
}

/// `PUT /orgs/{ref}/members/{userref}` (owners): the member and whether it was added.
pub async fn add_member(
    b: &Backends,
    caller: &Caller,
    org_ref: &str,
    user_ref: &str,
    role: MemberRole,
) -> Result<(pb::OrgMember, bool), ApiError> {
    caller.require_auth()?;
    if role == MemberRole::Unspecified {
        return Err(ApiError::bad_request("role must be owner or member"));
    }
    let (org, level) = load(b, caller, org_ref).await?;
    level.require(Access::Owner, &what(org_ref))?;
    let user = b
        .cs()?
        .get_user(cs::GetUserRequest {
            user_ref: user_ref.to_owned(),
        })
        .await?
        .into_inner()
        .user
        .ok_or_else(|| ApiError::internal("configstore answered no user"))?;
    let res = b
        .cs()?
        .add_org_member(cs::AddOrgMemberRequest {
            org_ref: org.id,
            user_ref: user.id.clone(),
            role: role.into(),
        })
        .await?
        .into_inner();
    Ok((
        pb::OrgMember {
            user_id: user.id,
            user_name: user.name,
            role: res.org_member.map_or(role.into(), |m| m.member_role),
        },
        res.created,
    ))
}

/// `DELETE /orgs/{ref}/members/{userref}` (owners).
pub async fn remove_member(
    b: &Backends,
    caller: &Caller,
    org_ref: &str,
    user_ref: &str,
) -> Result<(), ApiError> {
    caller.require_auth()?;
    let (org, level) = load(b, caller, org_ref).await?;
    level.require(Access::Owner, &what(org_ref))?;
    b.cs()?
        .remove_org_member(cs::RemoveOrgMemberRequest {
            org_ref: org.id,
            user_ref: user_ref.to_owned(),
        })
        .await?;
    Ok(())
}
