//! Secrets and variables of project groups and projects, and their tree listings: the
//! object's own plus those of every ancestor group up to the root, each tagged with the path
//! of its owner (what variable resolution walks, spec 60 §9).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::guards::{self, pair};
use crate::names::{require, validate_secret_name};
use crate::readmodel::State;
use crate::refs::{Node, SecretView, VariableView};
use crate::store::{Guard, Plan, Store, delete, new_id, put};
use crate::types::*;

/// A secret as a request gives it.
#[derive(Debug, Clone, Default)]
pub struct SecretInput {
    /// Empty on update keeps the current name.
    pub name: String,
    /// Absent is `internal`, the only type.
    pub kind: Option<SecretType>,
    pub data: BTreeMap<String, String>,
}

/// A variable as a request gives it.
#[derive(Debug, Clone, Default)]
pub struct VariableInput {
    /// Empty on update keeps the current name.
    pub name: String,
    pub values: Vec<VariableValue>,
}

/// The owners a listing covers with their paths: the node, then (with `tree`) every ancestor
/// group up to the root.
fn owners(s: &State, node: Node<'_>, tree: bool) -> Result<Vec<(String, String)>> {
    let mut out = vec![(node.id().to_owned(), s.node_path(node)?)];
    if tree {
        let first_group = match node {
            Node::Group(g) => (!g.is_root()).then(|| g.parent.id.clone()),
            Node::Project(p) => Some(p.parent.id.clone()),
        };
        if let Some(gid) = first_group {
            for g in s.group_chain(&gid)? {
                out.push((g.id.clone(), s.group_path(&g.id)?));
            }
        }
    }
    Ok(out)
}

fn check_secret(input: &SecretInput) -> Result<()> {
    if input.data.is_empty() {
        return Err(Error::InvalidArgument(
            "secret.data must not be empty".to_owned(),
        ));
    }
    if input.data.keys().any(|k| k.is_empty()) {
        return Err(Error::InvalidArgument(
            "secret.data keys must not be empty".to_owned(),
        ));
    }
    Ok(())
}

fn check_values(values: &[VariableValue]) -> Result<()> {
    if values.is_empty() {
        return Err(Error::InvalidArgument(
            "variable.values must not be empty".to_owned(),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        require(&format!("variable.values[{i}].secret_name"), &v.secret_name)?;
        require(&format!("variable.values[{i}].secret_var"), &v.secret_var)?;
    }
    Ok(())
}

fn secret_named<'a>(s: &'a State, parent_id: &str, name: &str) -> Option<&'a Secret> {
    s.parent_secrets
        .get(parent_id)
        .and_then(|m| m.get(name))
        .and_then(|id| s.secrets.get(id))
}

fn variable_named<'a>(s: &'a State, parent_id: &str, name: &str) -> Option<&'a Variable> {
    s.parent_variables
        .get(parent_id)
        .and_then(|m| m.get(name))
        .and_then(|id| s.variables.get(id))
}

impl Store {
    pub fn list_secrets(&self, kind: ParentType, r: &str, tree: bool) -> Result<Vec<SecretView>> {
        self.read(|s| {
            let node = s.node_by_ref(kind, r)?;
            let mut out = Vec::new();
            for (id, path) in owners(s, node, tree)? {
                out.extend(s.secrets_of(&id).map(|x| SecretView {
                    secret: x.clone(),
                    parent_path: path.clone(),
                }));
            }
            Ok(out)
        })
    }

    pub async fn create_secret(
        &self,
        kind: ParentType,
        r: &str,
        input: SecretInput,
    ) -> Result<SecretView> {
        validate_secret_name("secret.name", &input.name)?;
        check_secret(&input)?;
        self.update(|s| {
            let node = s.node_by_ref(kind, r)?;
            let path = s.node_path(node)?;
            if secret_named(s, node.id(), &input.name).is_some() {
                return Err(Error::AlreadyExists(format!(
                    "secret {:?} already exists in {path:?}",
                    input.name
                )));
            }
            let secret = Secret {
                id: new_id(),
                name: input.name.clone(),
                parent: node.parent(),
                kind: input.kind.unwrap_or(SecretType::Internal),
                data: input.data.clone(),
            };
            let mut guard = Guard::new();
            guard.exclusive(guards::SECRET_NAME, &pair(node.id(), &secret.name));
            guard.inside_node(s, node)?;
            Ok(Plan {
                guard,
                actions: vec![put(data_type::SECRET, &secret.id, &secret)?],
                output: SecretView {
                    secret,
                    parent_path: path,
                },
            })
        })
        .await
    }

    pub async fn update_secret(
        &self,
        kind: ParentType,
        r: &str,
        name: &str,
        input: SecretInput,
    ) -> Result<SecretView> {
        if !input.name.is_empty() {
            validate_secret_name("secret.name", &input.name)?;
        }
        check_secret(&input)?;
        self.update(|s| {
            let node = s.node_by_ref(kind, r)?;
            let path = s.node_path(node)?;
            let cur = secret_named(s, node.id(), name).ok_or_else(|| {
                Error::NotFound(format!("secret {name:?} does not exist in {path:?}"))
            })?;
            let mut secret = cur.clone();
            if !input.name.is_empty() {
                secret.name.clone_from(&input.name);
            }
            if let Some(k) = input.kind {
                secret.kind = k;
            }
            secret.data.clone_from(&input.data);
            let mut guard = Guard::new();
            guard.exclusive(guards::SECRET_NAME, &pair(node.id(), &cur.name));
            if secret.name != cur.name {
                if secret_named(s, node.id(), &secret.name).is_some() {
                    return Err(Error::AlreadyExists(format!(
                        "secret {:?} already exists in {path:?}",
                        secret.name
                    )));
                }
                guard.exclusive(guards::SECRET_NAME, &pair(node.id(), &secret.name));
            }
            guard.within_node(s, node)?;
            Ok(Plan {
                guard,
                actions: vec![put(data_type::SECRET, &secret.id, &secret)?],
                output: SecretView {
                    secret,
                    parent_path: path,
                },
            })
        })
        .await
    }

    pub async fn delete_secret(&self, kind: ParentType, r: &str, name: &str) -> Result<()> {
        self.update(|s| {
            let node = s.node_by_ref(kind, r)?;
            let cur = secret_named(s, node.id(), name).ok_or_else(|| {
                Error::NotFound(format!(
                    "secret {name:?} does not exist in {:?}",
                    s.node_path(node).unwrap_or_default()
                ))
            })?;
            let mut guard = Guard::new();
            guard.exclusive(guards::SECRET_NAME, &pair(node.id(), &cur.name));
            Ok(Plan {
                guard,
                actions: vec![delete(data_type::SECRET, &cur.id)],
                output: (),
            })
        })
        .await
    }

    pub fn list_variables(
        &self,
        kind: ParentType,
        r: &str,
        tree: bool,
    ) -> Result<Vec<VariableView>> {
        self.read(|s| {
            let node = s.node_by_ref(kind, r)?;
            let mut out = Vec::new();
            for (id, path) in owners(s, node, tree)? {
                out.extend(s.variables_of(&id).map(|x| VariableView {
                    variable: x.clone(),
                    parent_path: path.clone(),
                }));
            }
            Ok(out)
        })
    }

    pub async fn create_variable(
        &self,
        kind: ParentType,
        r: &str,
        input: VariableInput,
    ) -> Result<VariableView> {
        validate_secret_name("variable.name", &input.name)?;
        check_values(&input.values)?;
        self.update(|s| {
            let node = s.node_by_ref(kind, r)?;
            let path = s.node_path(node)?;
            if variable_named(s, node.id(), &input.name).is_some() {
                return Err(Error::AlreadyExists(format!(
                    "variable {:?} already exists in {path:?}",
                    input.name
                )));
            }
            let variable = Variable {
                id: new_id(),
                name: input.name.clone(),
                parent: node.parent(),
                values: input.values.clone(),
            };
            let mut guard = Guard::new();
            guard.exclusive(guards::VARIABLE_NAME, &pair(node.id(), &variable.name));
            guard.inside_node(s, node)?;
            Ok(Plan {
                guard,
                actions: vec![put(data_type::VARIABLE, &variable.id, &variable)?],
                output: VariableView {
                    variable,
                    parent_path: path,
                },
            })
        })
        .await
    }

    pub async fn update_variable(
        &self,
        kind: ParentType,
        r: &str,
        name: &str,
        input: VariableInput,
    ) -> Result<VariableView> {
        if !input.name.is_empty() {
            validate_secret_name("variable.name", &input.name)?;
        }
        check_values(&input.values)?;
        self.update(|s| {
            let node = s.node_by_ref(kind, r)?;
            let path = s.node_path(node)?;
            let cur = variable_named(s, node.id(), name).ok_or_else(|| {
                Error::NotFound(format!("variable {name:?} does not exist in {path:?}"))
            })?;
            let mut variable = cur.clone();
            if !input.name.is_empty() {
                variable.name.clone_from(&input.name);
            }
            variable.values.clone_from(&input.values);
            let mut guard = Guard::new();
            guard.exclusive(guards::VARIABLE_NAME, &pair(node.id(), &cur.name));
            if variable.name != cur.name {
                if variable_named(s, node.id(), &variable.name).is_some() {
                    return Err(Error::AlreadyExists(format!(
                        "variable {:?} already exists in {path:?}",
                        variable.name
                    )));
                }
                guard.exclusive(guards::VARIABLE_NAME, &pair(node.id(), &variable.name));
            }
            guard.within_node(s, node)?;
            Ok(Plan {
                guard,
                actions: vec![put(data_type::VARIABLE, &variable.id, &variable)?],
                output: VariableView {
                    variable,
                    parent_path: path,
                },
            })
        })
        .await
    }

    pub async fn delete_variable(&self, kind: ParentType, r: &str, name: &str) -> Result<()> {
        self.update(|s| {
            let node = s.node_by_ref(kind, r)?;
            let cur = variable_named(s, node.id(), name).ok_or_else(|| {
                Error::NotFound(format!(
                    "variable {name:?} does not exist in {:?}",
                    s.node_path(node).unwrap_or_default()
                ))
            })?;
            let mut guard = Guard::new();
            guard.exclusive(guards::VARIABLE_NAME, &pair(node.id(), &cur.name));
            Ok(Plan {
                guard,
                actions: vec![delete(data_type::VARIABLE, &cur.id)],
                output: (),
            })
        })
        .await
    }
}
