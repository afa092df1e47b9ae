//! Project groups and projects. Access follows the owner in the path (`org/<org>/...` or
//! `user/<user>/...`) and the object's own visibility; owners administer, members read private
//! objects, anyone reads public ones, and an invisible object is not found.

use agola_common::ApiError;
use agola_proto::common::v1::{ParentType, RemoteRepositoryConfigType, Visibility};
use agola_proto::configstore::v1 as cs;
use agola_proto::gateway::v1 as pb;

use crate::auth::{Access, Caller, Owner, access};
use crate::backends::Backends;
use crate::views;

fn group_what(r: &str) -> String {
    format!("project group {r:?}")
}

fn project_what(r: &str) -> String {
    format!("project {r:?}")
}

fn default_visibility(v: Visibility) -> Visibility {
    match v {
        Visibility::Unspecified => Visibility::Public,
        v => v,
    }
}

/// A project group and the caller's access to it.
pub async fn load_group(
    b: &Backends,
    caller: &Caller,
    group_ref: &str,
) -> Result<(cs::ProjectGroup, Access), ApiError> {
    let group = b
        .cs()?
        .get_project_group(cs::GetProjectGroupRequest {
            project_group_ref: group_ref.to_owned(),
        })
        .await?
        .into_inner()
        .project_group
        .ok_or_else(|| ApiError::internal("configstore answered no project group"))?;
    let level = access(
        b,
        caller,
        &Owner::from_path(&group.path)?,
        group.visibility(),
    )
    .await?;
    Ok((group, level))
}

/// A project and the caller's access to it.
pub async fn load_project(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
) -> Result<(cs::Project, Access), ApiError> {
    let project = b
        .cs()?
        .get_project(cs::GetProjectRequest {
            project_ref: project_ref.to_owned(),
        })
        .await?
        .into_inner()
        .project
        .ok_or_else(|| ApiError::internal("configstore answered no project"))?;
    let level = access(
        b,
        caller,
        &Owner::from_path(&project.path)?,
        project.visibility(),
    )
    .await?;
    Ok((project, level))
}

/// A readable project (404 otherwise) with the caller's access.
pub async fn readable_project(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
) -> Result<(cs::Project, Access), ApiError> {
    let (p, level) = load_project(b, caller, project_ref).await?;
    level.require_read(&project_what(project_ref))?;
    Ok((p, level))
}

/// A project the caller has at least `needed` rights on (404 if invisible, 403 if visible).
pub async fn project_with(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
    needed: Access,
) -> Result<cs::Project, ApiError> {
    caller.require_auth()?;
    let (p, level) = load_project(b, caller, project_ref).await?;
    level.require(needed, &project_what(project_ref))?;
    Ok(p)
}

/// A project group the caller has at least `needed` rights on.
pub async fn group_with(
    b: &Backends,
    caller: &Caller,
    group_ref: &str,
    needed: Access,
) -> Result<cs::ProjectGroup, ApiError> {
    caller.require_auth()?;
    let (g, level) = load_group(b, caller, group_ref).await?;
    level.require(needed, &group_what(group_ref))?;
    Ok(g)
}

/// `GET /projectgroups/{ref}`.
pub async fn get_group(
    b: &Backends,
    caller: &Caller,
    group_ref: &str,
) -> Result<pb::ProjectGroup, ApiError> {
    let (g, level) = load_group(b, caller, group_ref).await?;
    level.require_read(&group_what(group_ref))?;
    Ok(views::project_group(&g))
}

/// `GET /projectgroups/{ref}/subgroups`: the visible subgroups.
pub async fn subgroups(
    b: &Backends,
    caller: &Caller,
    group_ref: &str,
) -> Result<Vec<pb::ProjectGroup>, ApiError> {
    let (g, level) = load_group(b, caller, group_ref).await?;
    level.require_read(&group_what(group_ref))?;
    let groups = b
        .cs()?
        .get_project_group_subgroups(cs::GetProjectGroupSubgroupsRequest {
            project_group_ref: g.id,
        })
        .await?
        .into_inner()
        .project_groups;
    Ok(groups
        .iter()
        .filter(|s| level >= Access::Member || s.visibility() == Visibility::Public)
        .map(views::project_group)
        .collect())
}

/// `GET /projectgroups/{ref}/projects`: the visible projects.
pub async fn group_projects(
    b: &Backends,
    caller: &Caller,
    group_ref: &str,
) -> Result<Vec<pb::Project>, ApiError> {
    let (g, level) = load_group(b, caller, group_ref).await?;
    level.require_read(&group_what(group_ref))?;
    let projects = b
        .cs()?
        .get_project_group_projects(cs::GetProjectGroupProjectsRequest {
            project_group_ref: g.id,
        })
        .await?
        .into_inner()
        .projects;
    Ok(projects
        .iter()
        .filter(|p| level >= Access::Member || p.visibility() == Visibility::Public)
        .map(views::project)
        .collect())
}

fn parent(id: String) -> Option<cs::Parent> {
    Some(cs::Parent {
        r#type: ParentType::Projectgroup.into(),
        id,
    })
}

/// `POST /projectgroups` (owners of the parent).
pub async fn create_group(
    b: &Backends,
    caller: &Caller,
    name: String,
    parent_ref: &str,
    visibility: Visibility,
) -> Result<pb::ProjectGroup, ApiError> {
    let parent_group = group_with(b, caller, parent_ref, Access::Owner).await?;
    let g = b
        .cs()?
        .create_project_group(cs::CreateProjectGroupRequest {
            project_group: Some(cs::ProjectGroup {
                name,
                parent: parent(parent_group.id),
                visibility: default_visibility(visibility).into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .project_group
        .ok_or_else(|| ApiError::internal("configstore answered no project group"))?;
    Ok(views::project_group(&g))
}

/// `PUT /projectgroups/{ref}` (owners; moving needs owner rights on the new parent too).
pub async fn update_group(
    b: &Backends,
    caller: &Caller,
    req: pb::UpdateProjectGroupRequest,
) -> Result<pb::ProjectGroup, ApiError> {
    let mut g = group_with(b, caller, &req.project_group_ref, Access::Owner).await?;
    if let Some(parent_ref) = &req.parent_ref {
        let new_parent = group_with(b, caller, parent_ref, Access::Owner).await?;
        g.parent = parent(new_parent.id);
    }
    if let Some(name) = req.name {
        g.name = name;
    }
    if let Some(v) = req.visibility {
        g.visibility = v;
    }
    let id = g.id.clone();
    let g = b
        .cs()?
        .update_project_group(cs::UpdateProjectGroupRequest {
            project_group_ref: id,
            project_group: Some(g),
        })
        .await?
        .into_inner()
        .project_group
        .ok_or_else(|| ApiError::internal("configstore answered no project group"))?;
    Ok(views::project_group(&g))
}

/// `DELETE /projectgroups/{ref}` (owners).
pub async fn delete_group(b: &Backends, caller: &Caller, group_ref: &str) -> Result<(), ApiError> {
    let g = group_with(b, caller, group_ref, Access::Owner).await?;
    b.cs()?
        .delete_project_group(cs::DeleteProjectGroupRequest {
            project_group_ref: g.id,
        })
        .await?;
    Ok(())
}

/// `GET /projects/{ref}`.
pub async fn get_project(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
) -> Result<pb::Project, ApiError> {
    Ok(views::project(
        &readable_project(b, caller, project_ref).await?.0,
    ))
}

/// `POST /projects` (owners of the parent). Only plain git repository projects
/// (`repository_url`) exist so far; remote-source projects answer 400.
pub async fn create_project(
    b: &Backends,
    caller: &Caller,
    req: pb::CreateProjectRequest,
) -> Result<pb::Project, ApiError> {
    caller.require_auth()?;
    if !req.remote_source_name.is_empty() || !req.repo_path.is_empty() {
        return Err(ApiError::bad_request(
            "remote-source projects are not supported yet; give repository_url",
        ));
    }
    if req.repository_url.is_empty() {
        return Err(ApiError::bad_request("missing field `repository_url`"));
    }
    let parent_group = group_with(b, caller, &req.parent_ref, Access::Owner).await?;
    let visibility = default_visibility(req.visibility());
    let p = b
        .cs()?
        .create_project(cs::CreateProjectRequest {
            project: Some(cs::Project {
                name: req.name,
                parent: parent(parent_group.id),
                visibility: visibility.into(),
                remote_repository_config_type: RemoteRepositoryConfigType::Manual.into(),
                repository_url: req.repository_url,
                ssh_private_key: req.ssh_private_key,
                ssh_host_key: req.ssh_host_key,
                skip_ssh_host_key_check: req.skip_ssh_host_key_check,
                pass_vars_to_forked_pr: req.pass_vars_to_forked_pr,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .project
        .ok_or_else(|| ApiError::internal("configstore answered no project"))?;
    Ok(views::project(&p))
}

/// `PUT /projects/{ref}` (owners).
pub async fn update_project(
    b: &Backends,
    caller: &Caller,
    req: pb::UpdateProjectRequest,
) -> Result<pb::Project, ApiError> {
    let mut p = project_with(b, caller, &req.project_ref, Access::Owner).await?;
    if let Some(parent_ref) = &req.parent_ref {
        let new_parent = group_with(b, caller, parent_ref, Access::Owner).await?;
        p.parent = parent(new_parent.id);
    }
    if let Some(v) = req.name {
        p.name = v;
    }
    if let Some(v) = req.visibility {
        p.visibility = v;
    }
    if let Some(v) = req.skip_ssh_host_key_check {
        p.skip_ssh_host_key_check = v;
    }
    if let Some(v) = req.pass_vars_to_forked_pr {
        p.pass_vars_to_forked_pr = v;
    }
    let manual = p.remote_repository_config_type() == RemoteRepositoryConfigType::Manual;
    for (field, value, target) in [
        ("repository_url", req.repository_url, &mut p.repository_url),
        (
            "ssh_private_key",
            req.ssh_private_key,
            &mut p.ssh_private_key,
        ),
        ("ssh_host_key", req.ssh_host_key, &mut p.ssh_host_key),
    ] {
        if let Some(v) = value {
            if !manual {
                return Err(ApiError::bad_request(format!(
                    "{field} can only be set on plain git repository projects"
                )));
            }
            *target = v;
        }
    }
    let id = p.id.clone();
    let p = b
        .cs()?
        .update_project(cs::UpdateProjectRequest {
            project_ref: id,
            project: Some(p),
        })
        .await?
        .into_inner()
        .project
        .ok_or_else(|| ApiError::internal("configstore answered no project"))?;
    Ok(views::project(&p))
}

/// `DELETE /projects/{ref}` (owners).
pub async fn delete_project(
    b: &Backends,
    caller: &Caller,
    project_ref: &str,
) -> Result<(), ApiError> {
    let p = project_with(b, caller, project_ref, Access::Owner).await?;
    b.cs()?
        .delete_project(cs::DeleteProjectRequest { project_ref: p.id })
        .await?;
    Ok(())
}

/// The answer of the remote-source actions (reconfig, update linked account): the caller's
/// rights are checked, then plain git repository projects have nothing to reconfigure and
/// remote sources are not supported yet.
pub async fn remote_source_only(b: &Backends, caller: &Caller, project_ref: &str) -> ApiError {
    match project_with(b, caller, project_ref, Access::Owner).await {
        Err(e) => e,
        Ok(p) if p.remote_repository_config_type() == RemoteRepositoryConfigType::Manual => {
            ApiError::bad_request(format!(
                "project {project_ref:?} is a plain git repository project: it has no remote source"
            ))
        }
        Ok(_) => ApiError::bad_request("remote sources are not supported yet"),
    }
}
