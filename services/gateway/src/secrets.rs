//! Secrets and variables of project groups and projects. Members list them, owners create and
//! delete them; secret values are write-only (listings give name, parent path and type).

use agola_common::ApiError;
use agola_proto::common::v1::{ParentType, SecretType, VariableValue};
use agola_proto::configstore::v1 as cs;
use agola_proto::gateway::v1 as pb;

use crate::auth::{Access, Caller};
use crate::backends::Backends;
use crate::projects::{group_with, project_with};
use crate::views;

/// Checks the caller's rights on the parent; returns its id.
async fn parent_id(
    b: &Backends,
    caller: &Caller,
    parent_type: ParentType,
    parent_ref: &str,
    needed: Access,
) -> Result<String, ApiError> {
    match parent_type {
        ParentType::Projectgroup => Ok(group_with(b, caller, parent_ref, needed).await?.id),
        ParentType::Project => Ok(project_with(b, caller, parent_ref, needed).await?.id),
        _ => Err(ApiError::bad_request(
            "parent type must be a project group or a project",
        )),
    }
}

/// With `tree` and `remove_overridden`, keeps per name only the entry closest to the object
/// (the deepest parent path).
fn drop_overridden<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    path: impl Fn(&T) -> &str,
) -> Vec<T> {
    let mut best: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for item in &items {
        let depth = path(item).split('/').count();
        let e = best.entry(name(item).to_owned()).or_insert(depth);
        *e = (*e).max(depth);
    }
    items
        .into_iter()
        .filter(|i| best.get(name(i)) == Some(&path(i).split('/').count()))
        .collect()
}

/// `GET /{projectgroups|projects}/{ref}/secrets` (members).
pub async fn list_secrets(
    b: &Backends,
    caller: &Caller,
    req: pb::ListSecretsRequest,
) -> Result<Vec<pb::Secret>, ApiError> {
    let id = parent_id(
        b,
        caller,
        req.parent_type(),
        &req.parent_ref,
        Access::Member,
    )
    .await?;
    let secrets = b
        .cs()?
        .list_secrets(cs::ListSecretsRequest {
            parent_type: req.parent_type,
            parent_ref: id,
            tree: req.tree,
        })
        .await?
        .into_inner()
        .secrets;
    let mut out: Vec<pb::Secret> = secrets.iter().map(views::secret).collect();
    if req.tree && req.remove_overridden {
        out = drop_overridden(out, |s| &s.name, |s| &s.parent_path);
    }
    Ok(out)
}

/// `POST /{projectgroups|projects}/{ref}/secrets` (owners).
pub async fn create_secret(
    b: &Backends,
    caller: &Caller,
    req: pb::CreateSecretRequest,
) -> Result<pb::Secret, ApiError> {
    let id = parent_id(b, caller, req.parent_type(), &req.parent_ref, Access::Owner).await?;
    let r#type = match req.r#type() {
        SecretType::Unspecified => SecretType::Internal,
        t => t,
    };
    let s = b
        .cs()?
        .create_secret(cs::CreateSecretRequest {
            parent_type: req.parent_type,
            parent_ref: id,
            secret: Some(cs::Secret {
                name: req.name,
                r#type: r#type.into(),
                data: req.data,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .secret
        .ok_or_else(|| ApiError::internal("configstore answered no secret"))?;
    Ok(views::secret(&s))
}

/// `DELETE /{projectgroups|projects}/{ref}/secrets/{name}` (owners).
pub async fn delete_secret(
    b: &Backends,
    caller: &Caller,
    parent_type: ParentType,
    parent_ref: &str,
    name: &str,
) -> Result<(), ApiError> {
    let id = parent_id(b, caller, parent_type, parent_ref, Access::Owner).await?;
    b.cs()?
        .delete_secret(cs::DeleteSecretRequest {
            parent_type: parent_type.into(),
            parent_ref: id,
            secret_name: name.to_owned(),
        })
        .await?;
    Ok(())
}

/// `GET /{projectgroups|projects}/{ref}/variables` (members).
pub async fn list_variables(
    b: &Backends,
    caller: &Caller,
    req: pb::ListVariablesRequest,
) -> Result<Vec<pb::Variable>, ApiError> {
    let id = parent_id(
        b,
        caller,
        req.parent_type(),
        &req.parent_ref,
        Access::Member,
    )
    .await?;
    let vars = b
        .cs()?
        .list_variables(cs::ListVariablesRequest {
            parent_type: req.parent_type,
            parent_ref: id,
            tree: req.tree,
        })
        .await?
        .into_inner()
        .variables;
    let mut out: Vec<pb::Variable> = vars.iter().map(views::variable).collect();
    if req.tree && req.remove_overridden {
        out = drop_overridden(out, |v| &v.name, |v| &v.parent_path);
    }
    Ok(out)
}

/// `POST /{projectgroups|projects}/{ref}/variables` (owners).
pub async fn create_variable(
    b: &Backends,
    caller: &Caller,
    parent_type: ParentType,
    parent_ref: &str,
    name: String,
    values: Vec<VariableValue>,
) -> Result<pb::Variable, ApiError> {
    let id = parent_id(b, caller, parent_type, parent_ref, Access::Owner).await?;
    let v = b
        .cs()?
        .create_variable(cs::CreateVariableRequest {
            parent_type: parent_type.into(),
            parent_ref: id,
            variable: Some(cs::Variable {
                name,
                values,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .variable
        .ok_or_else(|| ApiError::internal("configstore answered no variable"))?;
    Ok(views::variable(&v))
}

/// `DELETE /{projectgroups|projects}/{ref}/variables/{name}` (owners).
pub async fn delete_variable(
    b: &Backends,
    caller: &Caller,
    parent_type: ParentType,
    parent_ref: &str,
    name: &str,
) -> Result<(), ApiError> {
    let id = parent_id(b, caller, parent_type, parent_ref, Access::Owner).await?;
    b.cs()?
        .delete_variable(cs::DeleteVariableRequest {
            parent_type: parent_type.into(),
            parent_ref: id,
            variable_name: name.to_owned(),
        })
        .await?;
    Ok(())
}

/// `PUT /{projectgroups|projects}/{ref}/secrets/{name}` (owners): new name, type and data.
pub async fn update_secret(
    b: &Backends,
    caller: &Caller,
    req: pb::UpdateSecretRequest,
) -> Result<pb::Secret, ApiError> {
    let id = parent_id(b, caller, req.parent_type(), &req.parent_ref, Access::Owner).await?;
    let r#type = match req.r#type() {
        SecretType::Unspecified => SecretType::Internal,
        t => t,
    };
    let s = b
        .cs()?
        .update_secret(cs::UpdateSecretRequest {
            parent_type: req.parent_type,
            parent_ref: id,
            secret_name: req.secret_name,
            secret: Some(cs::Secret {
                name: req.name,
                r#type: r#type.into(),
                data: req.data,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .secret
        .ok_or_else(|| ApiError::internal("configstore answered no secret"))?;
    Ok(views::secret(&s))
}

/// `PUT /{projectgroups|projects}/{ref}/variables/{name}` (owners): new name and values.
pub async fn update_variable(
    b: &Backends,
    caller: &Caller,
    req: pb::UpdateVariableRequest,
) -> Result<pb::Variable, ApiError> {
    let id = parent_id(b, caller, req.parent_type(), &req.parent_ref, Access::Owner).await?;
    let v = b
        .cs()?
        .update_variable(cs::UpdateVariableRequest {
            parent_type: req.parent_type,
            parent_ref: id,
            variable_name: req.variable_name,
            variable: Some(cs::Variable {
                name: req.name,
                values: req.values,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .variable
        .ok_or_else(|| ApiError::internal("configstore answered no variable"))?;
    Ok(views::variable(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_definition_wins() {
        let s = |name: &str, path: &str| pb::Secret {
            name: name.into(),
            parent_path: path.into(),
            ..Default::default()
        };
        let kept = drop_overridden(
            vec![
                s("a", "org/acme"),
                s("a", "org/acme/team/app"),
                s("b", "org/acme"),
                s("a", "org/acme/team"),
            ],
            |s| &s.name,
            |s| &s.parent_path,
        );
        let got: Vec<(&str, &str)> = kept
            .iter()
            .map(|s| (s.name.as_str(), s.parent_path.as_str()))
            .collect();
        assert_eq!(got, [("a", "org/acme/team/app"), ("b", "org/acme")]);
    }
}
