//! Authentication (`authorization: token <admin token | user API token>`) and the access
//! levels of spec 60 §3: admins do everything, org owners (or the owning user) administer,
//! org members read private objects and act on runs, public objects are readable by anyone.
//! An object the caller may not see is reported as not found, never as forbidden.

use agola_common::ApiError;
use agola_proto::common::v1::{MemberRole, Visibility};
use agola_proto::configstore::v1 as cs;

use crate::backends::Backends;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// The admin token (no user behind it).
    AdminToken,
    /// A user authenticated by one of its API tokens.
    User(cs::User),
}

impl Caller {
    /// Admin token or an admin user.
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::Anonymous => false,
            Caller::AdminToken => true,
            Caller::User(u) => u.admin,
        }
    }

    /// The calling user, if a user is calling.
    pub fn user(&self) -> Option<&cs::User> {
        match self {
            Caller::User(u) => Some(u),
            _ => None,
        }
    }

    /// Fails with 401 for anonymous callers (auth-forced routes).
    pub fn require_auth(&self) -> Result<(), ApiError> {
        match self {
            Caller::Anonymous => Err(ApiError::unauthorized("authentication required")),
            _ => Ok(()),
        }
    }

    /// The calling user; 401 for anonymous callers, 400 for the admin token (it has no user).
    pub fn require_user(&self) -> Result<&cs::User, ApiError> {
        match self {
            Caller::Anonymous => Err(ApiError::unauthorized("authentication required")),
            Caller::AdminToken => Err(ApiError::bad_request(
                "this action needs a user; the admin token has none",
            )),
            Caller::User(u) => Ok(u),
        }
    }

    /// Fails unless the caller is an admin (401 anonymous, 403 otherwise).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require_auth()?;
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("admin rights required"))
        }
    }
}

/// Authenticates the value of an `authorization` header (or metadata entry).
pub async fn authenticate(backends: &Backends, header: Option<&str>) -> Result<Caller, ApiError> {
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(Caller::Anonymous);
    };
    let (scheme, value) = header
        .split_once(' ')
        .map(|(s, v)| (s, v.trim()))
        .unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("token") || value.is_empty() {
        return Err(ApiError::unauthorized(
            "unsupported authorization scheme: use \"token <value>\"",
        ));
    }
    if backends
        .admin_token()
        .is_some_and(|admin| constant_time_eq(admin.as_bytes(), value.as_bytes()))
    {
        return Ok(Caller::AdminToken);
    }
    let res = backends
        .cs()?
        .get_user_by_token(cs::GetUserByTokenRequest {
            token: value.to_owned(),
        })
        .await;
    match res {
        Ok(r) => r
            .into_inner()
            .user
            .map(Caller::User)
            .ok_or_else(|| ApiError::internal("configstore answered no user for a token")),
        Err(s) if s.code() == tonic::Code::NotFound => Err(ApiError::unauthorized("invalid token")),
        Err(s) => Err(s.into()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who owns an object of the project-group tree, from the first two segments of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// `org/<name>/...`.
    Org(String),
    /// `user/<name>/...`.
    User(String),
}

impl Owner {
    /// Parses `org/<name>[/...]` or `user/<name>[/...]`.
    pub fn from_path(path: &str) -> Result<Owner, ApiError> {
        let mut parts = path.split('/');
        match (parts.next(), parts.next()) {
            (Some("org"), Some(name)) if !name.is_empty() => Ok(Owner::Org(name.to_owned())),
            (Some("user"), Some(name)) if !name.is_empty() => Ok(Owner::User(name.to_owned())),
            _ => Err(ApiError::internal(format!(
                "object path {path:?} names no owner"
            ))),
        }
    }
}

/// What the caller may do with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Not even its existence.
    None,
    /// Read it (public object).
    Read,
    /// Read private objects, create runs, act on runs (org members).
    Member,
    /// Administer (org owners, the owning user, admins).
    Owner,
}

impl Access {
    /// 404 (`what` not found) unless the object is visible.
    pub fn require_read(self, what: &str) -> Result<(), ApiError> {
        if self >= Access::Read {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("{what} not found")))
        }
    }

    /// 404 if invisible, 403 if visible but below `needed`.
    pub fn require(self, needed: Access, what: &str) -> Result<(), ApiError> {
        self.require_read(what)?;
        if self >= needed {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "not allowed on {what}: {} rights required",
                if needed == Access::Owner {
                    "owner"
                } else {
                    "member"
                }
            )))
        }
    }
}

/// The caller's role in the org named `org` (id or name), if a member.
pub async fn org_role(
    backends: &Backends,
    caller: &Caller,
    org_id: &str,
    org_name: &str,
) -> Result<Option<MemberRole>, ApiError> {
    let Some(user) = caller.user() else {
        return Ok(None);
    };
    let orgs = backends
        .cs()?
        .list_user_orgs(cs::ListUserOrgsRequest {
            user_ref: user.id.clone(),
        })
        .await?
        .into_inner()
        .orgs;
    Ok(orgs.into_iter().find_map(|uo| {
        let role = uo.role();
        let org = uo.org?;
        (org.id == org_id || org.name == org_name).then_some(role)
    }))
}

/// Access level from an owner, a visibility and the caller.
pub async fn access(
    backends: &Backends,
    caller: &Caller,
    owner: &Owner,
    visibility: Visibility,
) -> Result<Access, ApiError> {
    let fallback = if visibility == Visibility::Public {
        Access::Read
    } else {
        Access::None
    };
    if caller.is_admin() {
        return Ok(Access::Owner);
    }
    let Some(user) = caller.user() else {
        return Ok(fallback);
    };
    Ok(match owner {
        Owner::User(name) if *name == user.name || *name == user.id => Access::Owner,
        Owner::User(_) => fallback,
        Owner::Org(name) => match org_role(backends, caller, name, name).await? {
            Some(MemberRole::Owner) => Access::Owner,
            Some(_) => Access::Member,
            None => fallback,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_from_path() {
        assert_eq!(
            Owner::from_path("org/acme/team/app").ok(),
            Some(Owner::Org("acme".into()))
        );
        assert_eq!(
            Owner::from_path("user/bob").ok(),
            Some(Owner::User("bob".into()))
        );
        for bad in ["", "org", "org/", "team/acme", "/org/acme"] {
            assert!(Owner::from_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invisible_is_not_found_and_visible_is_forbidden() {
        let kind = |r: Result<(), ApiError>| r.err().map(|e| e.kind);
        assert_eq!(
            kind(Access::None.require(Access::Owner, "x")),
            Some(agola_common::ErrorKind::NotFound)
        );
        assert_eq!(
            kind(Access::Read.require(Access::Member, "x")),
            Some(agola_common::ErrorKind::Forbidden)
        );
        assert_eq!(
            kind(Access::Member.require(Access::Owner, "x")),
            Some(agola_common::ErrorKind::Forbidden)
        );
        assert_eq!(kind(Access::Owner.require(Access::Owner, "x")), None);
        assert_eq!(kind(Access::Read.require_read("x")), None);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
