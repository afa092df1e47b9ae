//! Users and their API tokens: reads for any authenticated caller, create/delete/list for
//! admins, tokens for the user itself or an admin.

use agola_common::ApiError;
use agola_proto::configstore::v1 as cs;
use agola_proto::gateway::v1 as pb;

use crate::auth::Caller;
use crate::backends::Backends;
use crate::views;

async fn get_cs_user(b: &Backends, user_ref: &str) -> Result<cs::User, ApiError> {
    b.cs()?
        .get_user(cs::GetUserRequest {
            user_ref: user_ref.to_owned(),
        })
        .await?
        .into_inner()
        .user
        .ok_or_else(|| ApiError::internal("configstore answered no user"))
}

/// `GET /user`.
pub fn current(caller: &Caller) -> Result<pb::User, ApiError> {
    Ok(views::user(caller.require_user()?))
}

/// `GET /users/{ref}` (auth required).
pub async fn get(b: &Backends, caller: &Caller, user_ref: &str) -> Result<pb::User, ApiError> {
    caller.require_auth()?;
    Ok(views::user(&get_cs_user(b, user_ref).await?))
}

/// `GET /users` (admin).
pub async fn list(
    b: &Backends,
    caller: &Caller,
    start: String,
    limit: u32,
    asc: bool,
) -> Result<Vec<pb::User>, ApiError> {
    caller.require_admin()?;
    let users = b
        .cs()?
        .list_users(cs::ListUsersRequest { start, limit, asc })
        .await?
        .into_inner()
        .users;
    Ok(users.iter().map(views::user).collect())
}

/// `POST /users` (admin).
pub async fn create(b: &Backends, caller: &Caller, name: String) -> Result<pb::User, ApiError> {
    caller.require_admin()?;
    let user = b
        .cs()?
        .create_user(cs::CreateUserRequest {
            name,
            admin: false,
            linked_account: None,
        })
        .await?
        .into_inner()
        .user
        .ok_or_else(|| ApiError::internal("configstore answered no user"))?;
    Ok(views::user(&user))
}

/// `DELETE /users/{ref}` (admin).
pub async fn delete(b: &Backends, caller: &Caller, user_ref: &str) -> Result<(), ApiError> {
    caller.require_admin()?;
    b.cs()?
        .delete_user(cs::DeleteUserRequest {
            user_ref: user_ref.to_owned(),
        })
        .await?;
    Ok(())
}

/// The user `user_ref` when the caller is that user or an admin; 403 otherwise.
async fn own_user(b: &Backends, caller: &Caller, user_ref: &str) -> Result<cs::User, ApiError> {
    caller.require_auth()?;
    let user = get_cs_user(b, user_ref).await?;
    if caller.is_admin() || caller.user().is_some_and(|u| u.id == user.id) {
        Ok(user)
    } else {
        Err(ApiError::forbidden(
            "only the user itself or an admin may do this",
        ))
    }
}

/// `POST /users/{ref}/tokens`: returns the token value, only here.
pub async fn create_token(
    b: &Backends,
    caller: &Caller,
    user_ref: &str,
    token_name: String,
) -> Result<String, ApiError> {
    let user = own_user(b, caller, user_ref).await?;
    Ok(b.cs()?
        .create_user_token(cs::CreateUserTokenRequest {
            user_ref: user.id,
            token_name,
        })
        .await?
        .into_inner()
        .token)
}

/// `DELETE /users/{ref}/tokens/{name}`.
pub async fn delete_token(
    b: &Backends,
    caller: &Caller,
    user_ref: &str,
    token_name: &str,
) -> Result<(), ApiError> {
    let user = own_user(b, caller, user_ref).await?;
    b.cs()?
        .delete_user_token(cs::DeleteUserTokenRequest {
            user_ref: user.id,
            token_name: token_name.to_owned(),
        })
        .await?;
    Ok(())
}

/// `GET /user/orgs`: the calling user's orgs with its role in each.
pub async fn current_orgs(b: &Backends, caller: &Caller) -> Result<Vec<pb::UserOrg>, ApiError> {
    let user = caller.require_user()?;
    let orgs = b
        .cs()?
        .list_user_orgs(cs::ListUserOrgsRequest {
            user_ref: user.id.clone(),
        })
        .await?
        .into_inner()
        .orgs;
    Ok(orgs
        .into_iter()
        .map(|uo| pb::UserOrg {
            org: uo.org.as_ref().map(views::org),
            role: uo.role,
        })
        .collect())
}

/// `DELETE /users/{ref}/linkedaccounts/{laid}` (the user itself or an admin).
pub async fn delete_linked_account(
    b: &Backends,
    caller: &Caller,
    user_ref: &str,
    linked_account_id: &str,
) -> Result<(), ApiError> {
    let user = own_user(b, caller, user_ref).await?;
    b.cs()?
        .delete_user_linked_account(cs::DeleteUserLinkedAccountRequest {
            user_ref: user.id,
            linked_account_id: linked_account_id.to_owned(),
        })
        .await?;
    Ok(())
}
