//! Who is calling, and the one rule for whose data they may touch. Which routes need a user or an
//! administrator is declared once, in `access`, and enforced by whoever inserts the [`Actor`].

use axum::http::StatusCode;

use crate::error::ApiError;

/// The authenticated caller, inserted as a request extension by the gateway's auth layer after it applied
/// the access policy (`access`): an `Actor` on a request means the route's declared access is met.
/// Absent when auth is off: then every call is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub admin: bool,
}

/// What a call needs.
#[derive(Clone, Copy, Debug)]
pub enum Need<'a> {
    /// Administrative. HTTP routes do not ask for it: their table declares it (`access::Access::Admin`).
    Admin,
    /// Data owned by this user (basket, payments, notifications).
    Owner(&'a str),
}

/// The single authorization rule: no actor = allowed; admins may do anything; users only their own data.
pub fn authorize(actor: Option<&Actor>, need: Need<'_>) -> Result<(), Forbidden> {
    let Some(actor) = actor else { return Ok(()) };
    if actor.admin {
        return Ok(());
    }
    match need {
        Need::Admin => Err(Forbidden("this operation needs an administrator".into())),
        Need::Owner(user) if user == actor.subject => Ok(()),
        Need::Owner(_) => Err(Forbidden("this resource belongs to another user".into())),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("forbidden: {0}")]
pub struct Forbidden(pub String);

impl From<Forbidden> for ApiError {
    fn from(f: Forbidden) -> ApiError {
        ApiError::status(StatusCode::FORBIDDEN, f.0)
    }
}

impl From<Forbidden> for tonic::Status {
    fn from(f: Forbidden) -> tonic::Status {
        tonic::Status::permission_denied(f.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let user = Actor { subject: "u1".into(), admin: false };
        let admin = Actor { subject: "root".into(), admin: true };
        assert!(authorize(None, Need::Admin).is_ok());
        assert!(authorize(Some(&admin), Need::Owner("u1")).is_ok());
        assert!(authorize(Some(&user), Need::Owner("u1")).is_ok());
        assert!(authorize(Some(&user), Need::Owner("u2")).is_err());
        assert!(authorize(Some(&user), Need::Admin).is_err());
    }
}
