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

/// The single ownership rule, for data owned by `owner` (a basket, payments, notifications): no actor
/// (auth off) = allowed; administrators may touch anyone's; users only their own. Whether a caller may
/// call the route at all is the access policy's business (`access`), decided before the handler runs.
pub fn authorize(actor: Option<&Actor>, owner: &str) -> Result<(), Forbidden> {
    match actor {
        Some(actor) if !actor.admin && actor.subject != owner => Err(Forbidden("this resource belongs to another user".into())),
        _ => Ok(()),
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
        assert!(authorize(None, "u1").is_ok());
        assert!(authorize(Some(&admin), "u1").is_ok());
        assert!(authorize(Some(&user), "u1").is_ok());
        assert!(authorize(Some(&user), "u2").is_err());
    }
}
