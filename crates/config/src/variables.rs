//! Variable resolution along the project-group tree (spec 60 §9).
//!
//! The inputs are the project's variables and secrets listed with `tree` (the project's own plus
//! those of every ancestor group), each tagged with the path of the object it belongs to, e.g.
//! `org/acme/backend/api` for the project and `org/acme` for its root group. Deeper paths are
//! closer to the project.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::context::{RefContext, RefType};
use crate::when::{When, when_matches};

/// A variable definition at one level of the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    /// Path of the project or group the variable belongs to.
    pub parent_path: String,
    /// Candidate values; the first whose `when` matches wins.
    pub values: Vec<VariableValue>,
}

/// One candidate value: `data[secret_var]` of the secret `secret_name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableValue {
    pub secret_name: String,
    pub secret_var: String,
    /// None = always matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
}

/// A secret at one level of the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    pub parent_path: String,
    pub data: BTreeMap<String, String>,
}

/// Number of path components: the depth of an object in the tree.
fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

/// Whether `path` is `ancestor` itself or lies below it (component-wise, so `org/a` is not
/// below `org/ab`).
fn is_same_or_below(path: &str, ancestor: &str) -> bool {
    let p: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let a: Vec<&str> = ancestor.split('/').filter(|c| !c.is_empty()).collect();
    p.len() >= a.len() && p[..a.len()] == a[..]
}

/// Resolves variables: per name the definition closest to the project wins; its first value
/// whose `when` matches the ref is taken from the closest secret of that name at the
/// variable's level or below it. No matching value or secret (or key) → the variable is absent.
pub fn resolve_variables(
    variables: &[Variable],
    secrets: &[Secret],
    ctx: &RefContext,
) -> BTreeMap<String, String> {
    let mut closest: HashMap<&str, &Variable> = HashMap::new();
    for v in variables {
        match closest.get(v.name.as_str()) {
            Some(cur) if depth(&cur.parent_path) >= depth(&v.parent_path) => {}
            _ => {
                closest.insert(&v.name, v);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (name, var) in closest {
        let Some(value) = var
            .values
            .iter()
            .find(|val| when_matches(val.when.as_ref(), ctx))
        else {
            continue;
        };
        let secret = secrets
            .iter()
            .filter(|s| {
                s.name == value.secret_name && is_same_or_below(&s.parent_path, &var.parent_path)
            })
            .max_by_key(|s| depth(&s.parent_path));
        if let Some(v) = secret.and_then(|s| s.data.get(&value.secret_var)) {
            out.insert(name.to_owned(), v.clone());
        }
    }
    out
}

/// Whether a project run gets variables: always, except for pull requests from forks unless
/// the project sets `pass_vars_to_forked_pr` (a fork could otherwise exfiltrate secrets).
pub fn variables_allowed(ctx: &RefContext, from_fork: bool, pass_vars_to_forked_pr: bool) -> bool {
    !(ctx.ref_type == RefType::PullRequest && from_fork && !pass_vars_to_forked_pr)
}

/// [`resolve_variables`] behind the fork rule of [`variables_allowed`].
pub fn resolve_project_variables(
    variables: &[Variable],
    secrets: &[Secret],
    ctx: &RefContext,
    from_fork: bool,
    pass_vars_to_forked_pr: bool,
) -> BTreeMap<String, String> {
    if variables_allowed(ctx, from_fork, pass_vars_to_forked_pr) {
        resolve_variables(variables, secrets, ctx)
    } else {
        BTreeMap::new()
    }
}
