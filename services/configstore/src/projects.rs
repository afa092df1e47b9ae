//! Project groups and projects: the tree under each user's and org's root group.
//!
//! Groups and projects share one namespace per parent group (one path is one object). Moves
//! and renames keep the tree a tree: a group never goes under itself or a descendant, root
//! groups never move, rename or get deleted on their own. Deletes cascade in one WAL to every
//! subgroup, project, secret and variable below.

use agola_datamanager::Action;

use crate::error::{Error, Result};
use crate::guards::{self, pair};
use crate::names::{require, validate_entity_name};
use crate::readmodel::State;
use crate::refs::{GroupView, ParentRef, ProjectView};
use crate::store::{Guard, Plan, Store, delete, new_id, put};
use crate::types::*;

/// A group to create.
#[derive(Debug, Clone)]
pub struct NewProjectGroup {
    pub name: String,
    pub parent: ParentRef,
    pub visibility: Visibility,
}

/// An update of a group: `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ProjectGroupChanges {
    pub name: Option<String>,
    pub parent: Option<ParentRef>,
    pub visibility: Option<Visibility>,
}

/// Every field of a project as a request gives it. On update, `name`, `parent`, `visibility`
/// and `config_type` keep the current value when absent; the other fields are replaced.
#[derive(Debug, Clone, Default)]
pub struct ProjectInput {
    pub name: String,
    pub parent: Option<ParentRef>,
    pub visibility: Option<Visibility>,
    pub config_type: Option<RemoteRepositoryConfigType>,
    /// Ref (id or name) of the remote source.
    pub remote_source: String,
    pub linked_account_id: String,
    pub repository_id: String,
    pub repository_path: String,
    pub ssh_private_key: String,
    pub webhook_secret: String,
    pub skip_ssh_host_key_check: bool,
    pub pass_vars_to_forked_pr: bool,
    pub repository_url: String,
    pub ssh_host_key: String,
}

/// The delete actions of everything below (and including) group `group_id`.
pub(crate) fn subtree_deletes(s: &State, group_id: &str) -> Vec<Action> {
    let (groups, projects) = s.subtree(group_id);
    let mut actions = Vec::new();
    for id in groups.iter().chain(&projects) {
        actions.extend(s.secrets_of(id).map(|x| delete(data_type::SECRET, &x.id)));
        actions.extend(
            s.variables_of(id)
                .map(|x| delete(data_type::VARIABLE, &x.id)),
        );
    }
    actions.extend(projects.iter().map(|id| delete(data_type::PROJECT, id)));
    actions.extend(groups.iter().map(|id| delete(data_type::PROJECT_GROUP, id)));
    actions
}

fn name_taken(s: &State, group_id: &str, name: &str) -> Result<()> {
    if let Some(what) = s.child_named(group_id, name) {
        return Err(Error::AlreadyExists(format!(
            "{what} {:?} already exists (a project group or project path names one object)",
            format!("{}/{name}", s.group_path(group_id)?)
        )));
    }
    Ok(())
}

/// Fills and checks the repository fields of `p` from `input` (shared by create and update).
fn apply_repository(
    s: &State,
    guard: &mut Guard,
    p: &mut Project,
    input: &ProjectInput,
) -> Result<()> {
    p.ssh_private_key.clone_from(&input.ssh_private_key);
    p.webhook_secret.clone_from(&input.webhook_secret);
    p.skip_ssh_host_key_check = input.skip_ssh_host_key_check;
    p.pass_vars_to_forked_pr = input.pass_vars_to_forked_pr;
    match p.remote_repository_config_type {
        RemoteRepositoryConfigType::Manual => {
            require("project.repository_url", &input.repository_url)?;
            p.repository_url.clone_from(&input.repository_url);
            p.ssh_host_key.clone_from(&input.ssh_host_key);
            p.remote_source_id.clear();
            p.linked_account_id.clear();
            p.repository_id.clear();
            p.repository_path.clear();
        }
        RemoteRepositoryConfigType::RemoteSource => {
            require("project.remote_source_id", &input.remote_source)?;
            require("project.linked_account_id", &input.linked_account_id)?;
            require("project.repository_id", &input.repository_id)?;
            require("project.repository_path", &input.repository_path)?;
            let rs = s.remote_source_by_ref(&input.remote_source)?;
            let owner = s
                .linked_account_users
                .get(&input.linked_account_id)
                .and_then(|u| s.users.get(u))
                .ok_or_else(|| Error::not_found("linked account", &input.linked_account_id))?;
            let la_source = owner
                .linked_accounts
                .get(&input.linked_account_id)
                .map(|la| la.remote_source_id.as_str());
            if la_source != Some(rs.id.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "project.linked_account_id {:?} is not an account of remote source {:?}",
                    input.linked_account_id, rs.name
                )));
            }
            guard
                .shared(guards::REMOTE_SOURCE_ID, &rs.id)
                .touch(guards::REMOTE_SOURCE_CONTENT, &rs.id)
                .shared(guards::USER_ID, &owner.id);
            p.remote_source_id.clone_from(&rs.id);
            p.linked_account_id.clone_from(&input.linked_account_id);
            p.repository_id.clone_from(&input.repository_id);
            p.repository_path.clone_from(&input.repository_path);
            p.repository_url.clear();
            p.ssh_host_key.clear();
        }
    }
    Ok(())
}

impl Store {
    pub fn get_project_group(&self, r: &str) -> Result<GroupView> {
        self.read(|s| s.group_view(s.group_by_ref(r)?))
    }

    /// Direct subgroups, by name.
    pub fn project_group_subgroups(&self, r: &str) -> Result<Vec<GroupView>> {
        self.read(|s| {
            let g = s.group_by_ref(r)?;
            s.subgroups
                .get(&g.id)
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|id| s.groups.get(id))
                .map(|c| s.group_view(c))
                .collect()
        })
    }

    /// Projects directly under a group, by name.
    pub fn project_group_projects(&self, r: &str) -> Result<Vec<ProjectView>> {
        self.read(|s| {
            let g = s.group_by_ref(r)?;
            s.group_projects
                .get(&g.id)
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|id| s.projects.get(id))
                .map(|p| s.project_view(p))
                .collect()
        })
    }

    pub async fn create_project_group(&self, req: NewProjectGroup) -> Result<GroupView> {
        validate_entity_name("project_group.name", &req.name)?;
        self.update(|s| {
            let parent = s.parent_group(&req.parent)?;
            name_taken(s, &parent.id, &req.name)?;
            let group = ProjectGroup {
                id: new_id(),
                name: req.name.clone(),
                parent: Parent {
                    kind: ParentType::ProjectGroup,
                    id: parent.id.clone(),
                },
                visibility: req.visibility,
            };
            let mut guard = Guard::new();
            guard.exclusive(guards::PROJECT_NAME, &pair(&parent.id, &req.name));
            guard.inside_group(s, &parent.id)?;
            let parent_path = s.group_path(&parent.id)?;
            Ok(Plan {
                guard,
                actions: vec![put(data_type::PROJECT_GROUP, &group.id, &group)?],
                output: GroupView {
                    path: format!("{parent_path}/{}", group.name),
                    parent_path,
                    group,
                },
            })
        })
        .await
    }

    pub async fn update_project_group(
        &self,
        r: &str,
        changes: ProjectGroupChanges,
    ) -> Result<GroupView> {
        if let Some(name) = &changes.name {
            validate_entity_name("project_group.name", name)?;
        }
        self.update(|s| {
            let cur = s.group_by_ref(r)?;
            let mut group = cur.clone();
            let mut guard = Guard::new();
            guard.exclusive(guards::GROUP_ID, &cur.id);
            if let Some(v) = changes.visibility {
                group.visibility = v;
            }
            if cur.is_root() {
                if changes.name.as_ref().is_some_and(|n| *n != cur.name) {
                    return Err(Error::InvalidArgument(
                        "a root project group cannot be renamed".to_owned(),
                    ));
                }
                if let Some(parent) = &changes.parent {
                    let same_owner = match parent.kind {
                        Some(ParentType::User) => s
                            .user_by_ref(&parent.reference)
                            .is_ok_and(|u| u.id == cur.parent.id),
                        Some(ParentType::Org) => s
                            .org_by_ref(&parent.reference)
                            .is_ok_and(|o| o.id == cur.parent.id),
                        _ => false,
                    };
                    if !same_owner {
                        return Err(Error::InvalidArgument(
                            "a root project group cannot be moved".to_owned(),
                        ));
                    }
                }
                return Ok(Plan {
                    guard,
                    actions: vec![put(data_type::PROJECT_GROUP, &group.id, &group)?],
                    output: s.group_view(&group)?,
                });
            }
            if let Some(name) = &changes.name {
                group.name.clone_from(name);
            }
            let new_parent = match &changes.parent {
                Some(p) => s.parent_group(p)?,
                None => s.group_by_ref(&cur.parent.id)?,
            };
            let chain = s.group_chain(&new_parent.id)?;
            if chain.iter().any(|g| g.id == cur.id) {
                return Err(Error::InvalidArgument(format!(
                    "cannot move project group {:?} under itself or one of its descendants ({:?})",
                    s.group_path(&cur.id)?,
                    s.group_path(&new_parent.id)?
                )));
            }
            group.parent.id.clone_from(&new_parent.id);
            let moved = new_parent.id != cur.parent.id;
            if moved || group.name != cur.name {
                name_taken(s, &new_parent.id, &group.name)?;
                guard
                    .exclusive(guards::PROJECT_NAME, &pair(&cur.parent.id, &cur.name))
                    .exclusive(guards::PROJECT_NAME, &pair(&new_parent.id, &group.name));
            }
            guard.within_group(s, &new_parent.id)?;
            if moved {
                guard
                    .touch_below_group(s, &cur.parent.id)?
                    .touch_below_group(s, &new_parent.id)?;
            }
            let parent_path = s.group_path(&new_parent.id)?;
            Ok(Plan {
                guard,
                actions: vec![put(data_type::PROJECT_GROUP, &group.id, &group)?],
                output: GroupView {
                    path: format!("{parent_path}/{}", group.name),
                    parent_path,
                    group,
                },
            })
        })
        .await
    }

    pub async fn delete_project_group(&self, r: &str) -> Result<()> {
        self.update(|s| {
            let g = s.group_by_ref(r)?;
            if g.is_root() {
                return Err(Error::InvalidArgument(format!(
                    "the root project group {:?} cannot be deleted on its own: delete its user or org",
                    s.group_path(&g.id)?
                )));
            }
            let mut guard = Guard::new();
            guard
                .exclusive(guards::GROUP_ID, &g.id)
                .exclusive(guards::GROUP_CONTENT, &g.id)
                .exclusive(guards::PROJECT_NAME, &pair(&g.parent.id, &g.name));
            Ok(Plan {
                guard,
                actions: subtree_deletes(s, &g.id),
                output: (),
            })
        })
        .await
    }

    pub fn get_project(&self, r: &str) -> Result<ProjectView> {
        self.read(|s| s.project_view(s.project_by_ref(r)?))
    }

    pub async fn create_project(&self, input: ProjectInput) -> Result<ProjectView> {
        validate_entity_name("project.name", &input.name)?;
        let parent_ref = input
            .parent
            .clone()
            .filter(|p| !p.reference.is_empty())
            .ok_or_else(|| Error::InvalidArgument("project.parent is required".to_owned()))?;
        let visibility = input
            .visibility
            .ok_or_else(|| Error::InvalidArgument("project.visibility is required".to_owned()))?;
        let config_type = input.config_type.ok_or_else(|| {
            Error::InvalidArgument("project.remote_repository_config_type is required".to_owned())
        })?;
        self.update(|s| {
            let parent = s.parent_group(&parent_ref)?;
            name_taken(s, &parent.id, &input.name)?;
            let mut project = Project {
                id: new_id(),
                name: input.name.clone(),
                parent: Parent {
                    kind: ParentType::ProjectGroup,
                    id: parent.id.clone(),
                },
                visibility,
                remote_repository_config_type: config_type,
                remote_source_id: String::new(),
                linked_account_id: String::new(),
                repository_id: String::new(),
                repository_path: String::new(),
                ssh_private_key: String::new(),
                webhook_secret: String::new(),
                skip_ssh_host_key_check: false,
                pass_vars_to_forked_pr: false,
                repository_url: String::new(),
                ssh_host_key: String::new(),
            };
            let mut guard = Guard::new();
            guard.exclusive(guards::PROJECT_NAME, &pair(&parent.id, &input.name));
            guard.inside_group(s, &parent.id)?;
            apply_repository(s, &mut guard, &mut project, &input)?;
            let parent_path = s.group_path(&parent.id)?;
            Ok(Plan {
                guard,
                actions: vec![put(data_type::PROJECT, &project.id, &project)?],
                output: ProjectView {
                    path: format!("{parent_path}/{}", project.name),
                    parent_path,
                    project,
                },
            })
        })
        .await
    }

    pub async fn update_project(&self, r: &str, input: ProjectInput) -> Result<ProjectView> {
        if !input.name.is_empty() {
            validate_entity_name("project.name", &input.name)?;
        }
        self.update(|s| {
            let cur = s.project_by_ref(r)?;
            let mut project = cur.clone();
            if !input.name.is_empty() {
                project.name.clone_from(&input.name);
            }
            if let Some(v) = input.visibility {
                project.visibility = v;
            }
            if let Some(t) = input.config_type {
                project.remote_repository_config_type = t;
            }
            let new_parent = match input.parent.as_ref().filter(|p| !p.reference.is_empty()) {
                Some(p) => s.parent_group(p)?,
                None => s.group_by_ref(&cur.parent.id)?,
            };
            project.parent.id.clone_from(&new_parent.id);
            let mut guard = Guard::new();
            guard.exclusive(guards::PROJECT_ID, &cur.id);
            let moved = new_parent.id != cur.parent.id;
            if moved || project.name != cur.name {
                name_taken(s, &new_parent.id, &project.name)?;
                guard
                    .exclusive(guards::PROJECT_NAME, &pair(&cur.parent.id, &cur.name))
                    .exclusive(guards::PROJECT_NAME, &pair(&new_parent.id, &project.name));
            }
            guard.within_group(s, &new_parent.id)?;
            if moved {
                guard
                    .touch_below_group(s, &cur.parent.id)?
                    .touch_below_group(s, &new_parent.id)?;
            }
            apply_repository(s, &mut guard, &mut project, &input)?;
            let parent_path = s.group_path(&new_parent.id)?;
            Ok(Plan {
                guard,
                actions: vec![put(data_type::PROJECT, &project.id, &project)?],
                output: ProjectView {
                    path: format!("{parent_path}/{}", project.name),
                    parent_path,
                    project,
                },
            })
        })
        .await
    }

    pub async fn delete_project(&self, r: &str) -> Result<()> {
        self.update(|s| {
            let p = s.project_by_ref(r)?;
            let mut guard = Guard::new();
            guard
                .exclusive(guards::PROJECT_ID, &p.id)
                .exclusive(guards::PROJECT_CONTENT, &p.id)
                .exclusive(guards::PROJECT_NAME, &pair(&p.parent.id, &p.name));
            let mut actions: Vec<Action> = s
                .secrets_of(&p.id)
                .map(|x| delete(data_type::SECRET, &x.id))
                .collect();
            actions.extend(
                s.variables_of(&p.id)
                    .map(|x| delete(data_type::VARIABLE, &x.id)),
            );
            actions.push(delete(data_type::PROJECT, &p.id));
            Ok(Plan {
                guard,
                actions,
                output: (),
            })
        })
        .await
    }
}
