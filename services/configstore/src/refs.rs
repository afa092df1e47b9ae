//! Lookups on the read model: refs (id or path, id or name), paths, the group tree.
//!
//! Paths are computed, never stored: a group's path is its owner's (`user/<user>`,
//! `org/<org>`) followed by the names down the tree, so renaming a user, org or group renames
//! every path below it at once.

use crate::error::{Error, Result};
use crate::readmodel::State;
use crate::types::*;

/// A group with its computed paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub group: ProjectGroup,
    pub path: String,
    /// Empty for root groups.
    pub parent_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectView {
    pub project: Project,
    pub path: String,
    pub parent_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretView {
    pub secret: Secret,
    pub parent_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableView {
    pub variable: Variable,
    pub parent_path: String,
}

/// The owner of secrets and variables.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    Group(&'a ProjectGroup),
    Project(&'a Project),
}

impl Node<'_> {
    pub fn id(&self) -> &str {
        match self {
            Node::Group(g) => &g.id,
            Node::Project(p) => &p.id,
        }
    }

    pub fn parent(&self) -> Parent {
        match self {
            Node::Group(g) => Parent {
                kind: ParentType::ProjectGroup,
                id: g.id.clone(),
            },
            Node::Project(p) => Parent {
                kind: ParentType::Project,
                id: p.id.clone(),
            },
        }
    }
}

/// A request's parent: a kind (absent = a group) and a ref of that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRef {
    pub kind: Option<ParentType>,
    pub reference: String,
}

impl State {
    pub fn user_by_ref(&self, r: &str) -> Result<&User> {
        self.users
            .get(r)
            .or_else(|| self.user_names.get(r).and_then(|id| self.users.get(id)))
            .ok_or_else(|| Error::not_found("user", r))
    }

    pub fn org_by_ref(&self, r: &str) -> Result<&Org> {
        self.orgs
            .get(r)
            .or_else(|| self.org_names.get(r).and_then(|id| self.orgs.get(id)))
            .ok_or_else(|| Error::not_found("org", r))
    }

    pub fn remote_source_by_ref(&self, r: &str) -> Result<&RemoteSource> {
        self.remote_sources
            .get(r)
            .or_else(|| {
                self.remote_source_names
                    .get(r)
                    .and_then(|id| self.remote_sources.get(id))
            })
            .ok_or_else(|| Error::not_found("remote source", r))
    }

    /// The root group of a user or org.
    pub fn root_group_of(&self, owner_id: &str) -> Result<&ProjectGroup> {
        self.root_groups
            .get(owner_id)
            .and_then(|id| self.groups.get(id))
            .ok_or_else(|| Error::Internal(format!("{owner_id} has no root project group")))
    }

    /// The group and its ancestors, from `id` up to the root group.
    pub fn group_chain(&self, id: &str) -> Result<Vec<&ProjectGroup>> {
        let mut chain = Vec::new();
        let mut cur = id;
        loop {
            let g = self
                .groups
                .get(cur)
                .ok_or_else(|| Error::Internal(format!("project group {cur} is missing")))?;
            chain.push(g);
            if g.is_root() {
                return Ok(chain);
            }
            // Guards against a cycle in corrupted data.
            if chain.len() > self.groups.len() {
                return Err(Error::Internal(format!(
                    "project group {id} has a cycle in its parents"
                )));
            }
            cur = &g.parent.id;
        }
    }

    fn owner_path(&self, parent: &Parent) -> Result<String> {
        match parent.kind {
            ParentType::User => self
                .users
                .get(&parent.id)
                .map(|u| format!("user/{}", u.name))
                .ok_or_else(|| Error::Internal(format!("user {} is missing", parent.id))),
            ParentType::Org => self
                .orgs
                .get(&parent.id)
                .map(|o| format!("org/{}", o.name))
                .ok_or_else(|| Error::Internal(format!("org {} is missing", parent.id))),
            ParentType::ProjectGroup | ParentType::Project => {
                Err(Error::Internal(format!("{} is not an owner", parent.id)))
            }
        }
    }

    pub fn group_path(&self, id: &str) -> Result<String> {
        let chain = self.group_chain(id)?;
        let Some(root) = chain.last() else {
            return Err(Error::Internal(format!("project group {id} has no root")));
        };
        let mut path = self.owner_path(&root.parent)?;
        for g in chain.iter().rev().skip(1) {
            path.push('/');
            path.push_str(&g.name);
        }
        Ok(path)
    }

    pub fn group_view(&self, g: &ProjectGroup) -> Result<GroupView> {
        let path = self.group_path(&g.id)?;
        let parent_path = if g.is_root() {
            String::new()
        } else {
            self.group_path(&g.parent.id)?
        };
        Ok(GroupView {
            group: g.clone(),
            path,
            parent_path,
        })
    }

    pub fn project_view(&self, p: &Project) -> Result<ProjectView> {
        let parent_path = self.group_path(&p.parent.id)?;
        Ok(ProjectView {
            project: p.clone(),
            path: format!("{parent_path}/{}", p.name),
            parent_path,
        })
    }

    /// `user/<user>[/<group>...]` or `org/<org>[/<group>...]`.
    fn group_by_path(&self, path: &str) -> Result<&ProjectGroup> {
        let mut segs = path.split('/');
        let owner_id = match (segs.next(), segs.next()) {
            (Some("user"), Some(name)) => &self.user_by_ref(name)?.id,
            (Some("org"), Some(name)) => &self.org_by_ref(name)?.id,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "invalid project group path {path:?}: it starts with user/<user> or org/<org>"
                )));
            }
        };
        let mut cur = self.root_group_of(owner_id)?;
        for name in segs {
            cur = self
                .subgroups
                .get(&cur.id)
                .and_then(|m| m.get(name))
                .and_then(|id| self.groups.get(id))
                .ok_or_else(|| Error::not_found("project group", path))?;
        }
        Ok(cur)
    }

    /// A group by id or path.
    pub fn group_by_ref(&self, r: &str) -> Result<&ProjectGroup> {
        if r.contains('/') {
            return self.group_by_path(r);
        }
        self.groups
            .get(r)
            .ok_or_else(|| Error::not_found("project group", r))
    }

    /// A project by id or path (parent group path + `/<name>`).
    pub fn project_by_ref(&self, r: &str) -> Result<&Project> {
        if let Some((parent, name)) = r.rsplit_once('/') {
            let group = match self.group_by_path(parent) {
                Ok(g) => g,
                Err(Error::InvalidArgument(_)) => {
                    return Err(Error::InvalidArgument(format!(
                        "invalid project path {r:?}: it is a project group path + /<name>"
                    )));
                }
                Err(_) => return Err(Error::not_found("project", r)),
            };
            return self
                .group_projects
                .get(&group.id)
                .and_then(|m| m.get(name))
                .and_then(|id| self.projects.get(id))
                .ok_or_else(|| Error::not_found("project", r));
        }
        self.projects
            .get(r)
            .ok_or_else(|| Error::not_found("project", r))
    }

    /// The group a request's parent names: a group ref, or a user/org ref for its root group.
    pub fn parent_group(&self, parent: &ParentRef) -> Result<&ProjectGroup> {
        match parent.kind {
            None | Some(ParentType::ProjectGroup) => self.group_by_ref(&parent.reference),
            Some(ParentType::User) => {
                let u = self.user_by_ref(&parent.reference)?;
                self.root_group_of(&u.id)
            }
            Some(ParentType::Org) => {
                let o = self.org_by_ref(&parent.reference)?;
                self.root_group_of(&o.id)
            }
            Some(ParentType::Project) => Err(Error::InvalidArgument(
                "parent.type must be a project group (or a user or org for its root group)"
                    .to_owned(),
            )),
        }
    }

    /// The owner of secrets/variables named by `kind` (project group or project) and a ref.
    pub fn node_by_ref(&self, kind: ParentType, r: &str) -> Result<Node<'_>> {
        match kind {
            ParentType::ProjectGroup => self.group_by_ref(r).map(Node::Group),
            ParentType::Project => self.project_by_ref(r).map(Node::Project),
            ParentType::User | ParentType::Org => Err(Error::InvalidArgument(
                "parent_type must be PROJECTGROUP or PROJECT".to_owned(),
            )),
        }
    }

    pub fn node_path(&self, node: Node<'_>) -> Result<String> {
        match node {
            Node::Group(g) => self.group_path(&g.id),
            Node::Project(p) => Ok(self.project_view(p)?.path),
        }
    }

    /// What already holds `name` directly under group `group_id` (groups and projects share
    /// one namespace: one path is one object).
    pub fn child_named(&self, group_id: &str, name: &str) -> Option<&'static str> {
        if self
            .subgroups
            .get(group_id)
            .is_some_and(|m| m.contains_key(name))
        {
            return Some("project group");
        }
        if self
            .group_projects
            .get(group_id)
            .is_some_and(|m| m.contains_key(name))
        {
            return Some("project");
        }
        None
    }

    /// Every group (`group_id` first) and project of a subtree.
    pub fn subtree(&self, group_id: &str) -> (Vec<String>, Vec<String>) {
        let mut groups = vec![group_id.to_owned()];
        let mut projects = Vec::new();
        let mut i = 0;
        while let Some(g) = groups.get(i).cloned() {
            if let Some(children) = self.subgroups.get(&g) {
                groups.extend(children.values().cloned());
            }
            if let Some(ps) = self.group_projects.get(&g) {
                projects.extend(ps.values().cloned());
            }
            i += 1;
        }
        (groups, projects)
    }

    pub fn secrets_of(&self, parent_id: &str) -> impl Iterator<Item = &Secret> {
        self.parent_secrets
            .get(parent_id)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|id| self.secrets.get(id))
    }

    pub fn variables_of(&self, parent_id: &str) -> impl Iterator<Item = &Variable> {
        self.parent_variables
            .get(parent_id)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|id| self.variables.get(id))
    }
}

/// One page of a name index: names after `start` (exclusive) in the given order.
pub fn page<'a>(
    index: &'a std::collections::BTreeMap<String, String>,
    start: &str,
    limit: usize,
    asc: bool,
) -> Vec<&'a String> {
    use std::ops::Bound::{Excluded, Unbounded};
    if asc {
        let lower = if start.is_empty() {
            Unbounded
        } else {
            Excluded(start.to_owned())
        };
        index
            .range((lower, Unbounded))
            .take(limit)
            .map(|(_, id)| id)
            .collect()
    } else {
        let upper = if start.is_empty() {
            Unbounded
        } else {
            Excluded(start.to_owned())
        };
        index
            .range((Unbounded, upper))
            .rev()
            .take(limit)
            .map(|(_, id)| id)
            .collect()
    }
}
