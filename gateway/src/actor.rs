//! Hands the API the verified caller as `kassa_api::Actor` (the API enforces ownership with it); the
//! gateway's `Principal` stays in the extensions for the gateway's own handlers.

use axum::extract::Request;

use crate::auth::Principal;

pub fn attach(req: &mut Request, principal: &Principal) {
    req.extensions_mut().insert(kassa_api::Actor { subject: principal.subject.clone(), admin: principal.is_admin() });
}
