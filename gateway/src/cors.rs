//! CORS, with every header value computed once at start-up. Preflights (OPTIONS carrying
//! `Access-Control-Request-Method`) are answered here, before authentication and rate limiting.

use axum::response::{IntoResponse, Response};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::GatewayError;
use crate::config::CorsConfig;

pub struct Cors {
    enabled: bool,
    any_origin: bool,
    origins: Vec<HeaderValue>,
    credentials: bool,
    methods: HeaderValue,
    headers: HeaderValue,
    exposed: Option<HeaderValue>,
    max_age: HeaderValue,
}

fn joined(items: &[String], what: &str, valid: impl Fn(&str) -> bool) -> Result<HeaderValue, GatewayError> {
    if let Some(bad) = items.iter().find(|s| !valid(s)) {
        return Err(GatewayError::Config(format!("cors: bad {what} {bad:?}")));
    }
    HeaderValue::from_str(&items.join(",")).map_err(|_| GatewayError::Config(format!("cors: bad {what} list")))
}

impl Cors {
    pub fn new(cfg: &CorsConfig) -> Result<Cors, GatewayError> {
        let any_origin = cfg.allowed_origins.iter().any(|o| o == "*");
        if any_origin && cfg.allow_credentials {
            return Err(GatewayError::Config("cors: \"*\" cannot be combined with credentials".into()));
        }
        let origins = cfg
            .allowed_origins
            .iter()
            .filter(|o| *o != "*")
            .map(|o| HeaderValue::from_str(o).map_err(|_| GatewayError::Config(format!("cors: bad origin {o:?}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let header_name = |s: &str| HeaderName::from_bytes(s.as_bytes()).is_ok();
        Ok(Cors {
            enabled: !cfg.allowed_origins.is_empty(),
            any_origin,
            origins,
            credentials: cfg.allow_credentials,
            methods: joined(&cfg.allowed_methods, "method", |s| Method::from_bytes(s.as_bytes()).is_ok())?,
            headers: joined(&cfg.allowed_headers, "header", header_name)?,
            exposed: if cfg.exposed_headers.is_empty() { None } else { Some(joined(&cfg.exposed_headers, "header", header_name)?) },
            max_age: HeaderValue::from(cfg.max_age_secs),
        })
    }

    /// The `Access-Control-Allow-Origin` value for a request, if its origin is allowed.
    pub fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        if !self.enabled {
            return None;
        }
        let origin = headers.get(ORIGIN)?;
        if self.origins.iter().any(|o| o == origin) {
            Some(origin.clone())
        } else if self.any_origin {
            Some(HeaderValue::from_static("*"))
        } else {
            None
        }
    }

    pub fn is_preflight(&self, method: &Method, headers: &HeaderMap) -> bool {
        self.enabled && method == Method::OPTIONS && headers.contains_key(ORIGIN) && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to a preflight: 204, with the grant only for an allowed origin.
    pub fn preflight(&self, headers: &HeaderMap) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(VARY, HeaderValue::from_static("origin, access-control-request-method, access-control-request-headers"));
        if let Some(origin) = self.allowed_origin(headers) {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
            h.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
            if self.credentials {
                h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            }
        }
        response
    }

    /// Grants an actual (non-preflight) response to an allowed origin.
    pub fn decorate(&self, origin: Option<HeaderValue>, response: &mut Response) {
        if !self.enabled {
            return;
        }
        let h = response.headers_mut();
        h.append(VARY, HeaderValue::from_static("origin"));
        let Some(origin) = origin else { return };
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        if let Some(exposed) = &self.exposed {
            h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn listed_origins_with_credentials() {
        let cfg = CorsConfig { allowed_origins: vec!["https://shop.example".into()], allow_credentials: true, ..CorsConfig::default() };
        let cors = Cors::new(&cfg).unwrap();
        let ok = headers(&[("origin", "https://shop.example"), ("access-control-request-method", "POST")]);
        assert!(cors.is_preflight(&Method::OPTIONS, &ok));
        let r = cors.preflight(&ok);
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert!(r.headers()[ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap().contains("DELETE"));
        let evil = headers(&[("origin", "https://evil.example"), ("access-control-request-method", "POST")]);
        assert!(!cors.preflight(&evil).headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        assert!(cors.allowed_origin(&evil).is_none());
        assert!(!cors.is_preflight(&Method::OPTIONS, &headers(&[("origin", "https://shop.example")])));
    }

    #[test]
    fn wildcard_never_with_credentials() {
        let cfg = CorsConfig { allow_credentials: true, ..CorsConfig::default() };
        assert!(Cors::new(&cfg).is_err());
        let cors = Cors::new(&CorsConfig::default()).unwrap();
        let mut r = StatusCode::OK.into_response();
        cors.decorate(cors.allowed_origin(&headers(&[("origin", "https://any.example")])), &mut r);
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!r.headers().contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS));
        assert!(r.headers()[ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap().contains("retry-after"));
    }

    #[test]
    fn no_origins_means_no_cors() {
        let cors = Cors::new(&CorsConfig { allowed_origins: vec![], ..CorsConfig::default() }).unwrap();
        let h = headers(&[("origin", "https://shop.example"), ("access-control-request-method", "POST")]);
        assert!(!cors.is_preflight(&Method::OPTIONS, &h));
        let mut r = StatusCode::OK.into_response();
        cors.decorate(cors.allowed_origin(&h), &mut r);
        assert!(r.headers().is_empty());
    }
}
