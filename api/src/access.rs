//! Who may call what: the one access policy of the API. Every HTTP route declares its [`Access`] in the
//! route table (`http::route_table`), every gRPC method in [`GRPC_ACCESS`]; whoever authenticates callers
//! (the gateway) looks a request up here ([`HttpPolicy`], [`grpc_access`]) and applies [`Access::decide`]
//! before it hands the API an [`Actor`]. The handlers then only check ownership (`auth::authorize`): that a
//! user touches their own basket, payments and notifications.

use axum::http::Method;

use crate::auth::Actor;

/// What a route or RPC needs from its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone, with or without a token.
    Public,
    /// A verified user; per-user data is further limited to its owner by the handler.
    User,
    /// A verified administrator.
    Admin,
}

/// The outcome of [`Access::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// 401 / UNAUTHENTICATED: a token is needed.
    Unauthenticated,
    /// 403 / PERMISSION_DENIED: the token's role is not enough.
    Forbidden,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::User => "user",
            Access::Admin => "admin",
        }
    }

    /// The rule, for a caller whose identity was checked. Auth being off is not this function's
    /// business: then no one asks it, and the API sees no `Actor`.
    pub fn decide(self, caller: Caller) -> Verdict {
        match (self, caller) {
            (Access::Public, _) => Verdict::Allowed,
            (_, Caller::Anonymous) => Verdict::Unauthenticated,
            (Access::Admin, Caller::User) => Verdict::Forbidden,
            (_, Caller::User | Caller::Admin) => Verdict::Allowed,
        }
    }
}

/// Who calls, as far as the policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No valid token.
    Anonymous,
    User,
    Admin,
}

impl Caller {
    pub fn of(actor: Option<&Actor>) -> Caller {
        match actor {
            None => Caller::Anonymous,
            Some(a) if a.admin => Caller::Admin,
            Some(_) => Caller::User,
        }
    }
}

/// What a request that matches no declared route needs: an administrator (deny by default, so that a
/// route someone forgot to declare is never open to users).
pub const UNDECLARED: Access = Access::Admin;

/// Matches concrete request paths to declared routes with the router's own matcher (matchit, as axum
/// uses it), so that the policy and the router agree on which route a path is — `/products/top-5` is
/// the static route, not `/products/{id}`.
pub struct HttpPolicy {
    routes: matchit::Router<Vec<(Method, Access)>>,
    count: usize,
}

impl HttpPolicy {
    /// A policy over these routes (axum path syntax). The same method and path declared twice with
    /// different access is an error.
    pub fn new<P: AsRef<str>>(routes: impl IntoIterator<Item = (Method, P, Access)>) -> Result<HttpPolicy, String> {
        let mut by_path: Vec<(String, Vec<(Method, Access)>)> = Vec::new();
        let mut count = 0;
        for (method, path, access) in routes {
            let path = path.as_ref();
            let entry = match by_path.iter_mut().find(|(p, _)| p == path) {
                Some((_, entry)) => entry,
                None => {
                    by_path.push((path.to_string(), Vec::new()));
                    &mut by_path.last_mut().expect("just pushed").1
                }
            };
            match entry.iter().find(|(m, _)| *m == method) {
                Some((_, existing)) if *existing != access => {
                    return Err(format!("{method} {path} is declared both {} and {}", existing.as_str(), access.as_str()));
                }
                Some(_) => {}
                None => {
                    entry.push((method, access));
                    count += 1;
                }
            }
        }
        let mut router = matchit::Router::new();
        for (path, entry) in by_path {
            router.insert(path.clone(), entry).map_err(|e| format!("{path}: {e}"))?;
        }
        Ok(HttpPolicy { routes: router, count })
    }

    /// The API's own routes (every service route and its gateway alias).
    pub fn api() -> HttpPolicy {
        HttpPolicy::new(http_routes()).expect("the route table declares each route once")
    }

    /// The declared access of a request, `None` if no declared route matches its method and path.
    /// `HEAD` is the `GET` route (the router answers it so).
    pub fn lookup(&self, method: &Method, path: &str) -> Option<Access> {
        let entry = self.routes.at(path).ok()?.value;
        let method = if method == Method::HEAD { &Method::GET } else { method };
        entry.iter().find(|(m, _)| m == method).map(|(_, a)| *a)
    }

    /// Number of declared (method, path) pairs.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// (method, path, access) of every route the API's router serves, aliases included.
pub fn http_routes() -> Vec<(Method, String, Access)> {
    crate::http::all_routes().into_iter().map(|(method, path, r)| (method, path, r.access)).collect()
}

/// Every gRPC method and who may call it, as (`package.Service`, method, access); `*` stands for every
/// method of a service that is not ours (health, reflection).
pub const GRPC_ACCESS: &[(&str, &str, Access)] = &[
    ("product.ProductService", "GetProduct", Access::Public),
    ("product.ProductService", "ListProducts", Access::Public),
    ("product.ProductService", "GetTopMostExpensiveProducts", Access::Public),
    ("product.ProductService", "GetLowStockProducts", Access::Public),
    ("product.ProductService", "GetProductsByCategory", Access::Public),
    ("product.ProductService", "CreateProduct", Access::Admin),
    ("product.ProductService", "UpdateProduct", Access::Admin),
    ("product.ProductService", "DeleteProduct", Access::Admin),
    ("basket.BasketService", "GetBasket", Access::User),
    ("basket.BasketService", "CreateBasket", Access::User),
    ("basket.BasketService", "DeleteBasket", Access::User),
    ("basket.BasketService", "AddItem", Access::User),
    ("basket.BasketService", "UpdateItem", Access::User),
    ("basket.BasketService", "RemoveItem", Access::User),
    ("basket.BasketService", "ClearBasket", Access::User),
    ("basket.BasketService", "HealthCheck", Access::Public),
    ("payment.PaymentService", "CreatePayment", Access::User),
    ("payment.PaymentService", "GetPayment", Access::User),
    ("payment.PaymentService", "ProcessPayment", Access::User),
    ("payment.PaymentService", "GetPaymentsByUser", Access::User),
    ("payment.PaymentService", "GetPaymentStats", Access::User),
    // Administrative status changes and refunds, as on HTTP (`PUT /payments/{id}`, `.../refund`).
    ("payment.PaymentService", "UpdatePayment", Access::Admin),
    ("payment.PaymentService", "RefundPayment", Access::Admin),
    ("payment.PaymentService", "HealthCheck", Access::Public),
    ("grpc.health.v1.Health", "*", Access::Public),
    ("grpc.reflection.v1.ServerReflection", "*", Access::Public),
    ("grpc.reflection.v1alpha.ServerReflection", "*", Access::Public),
];

/// The declared access of a gRPC request path `/package.Service/Method`, `None` if undeclared.
pub fn grpc_access(path: &str) -> Option<Access> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if method.is_empty() || method.contains('/') {
        return None;
    }
    GRPC_ACCESS.iter().find(|(s, m, _)| *s == service && (*m == method || *m == "*")).map(|(_, _, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let user = Actor { subject: "u".into(), admin: false };
        let admin = Actor { subject: "a".into(), admin: true };
        let table = [
            (Access::Public, [Verdict::Allowed, Verdict::Allowed, Verdict::Allowed]),
            (Access::User, [Verdict::Unauthenticated, Verdict::Allowed, Verdict::Allowed]),
            (Access::Admin, [Verdict::Unauthenticated, Verdict::Forbidden, Verdict::Allowed]),
        ];
        for (access, [none, as_user, as_admin]) in table {
            assert_eq!(access.decide(Caller::of(None)), none, "{access:?}");
            assert_eq!(access.decide(Caller::of(Some(&user))), as_user, "{access:?}");
            assert_eq!(access.decide(Caller::of(Some(&admin))), as_admin, "{access:?}");
        }
    }

    #[test]
    fn paths_match_routes_as_the_router_does() {
        let p = HttpPolicy::api();
        assert_eq!(p.lookup(&Method::GET, "/products/7"), Some(Access::Public));
        assert_eq!(p.lookup(&Method::HEAD, "/products/7"), Some(Access::Public));
        assert_eq!(p.lookup(&Method::DELETE, "/api/products/7"), Some(Access::Admin));
        assert_eq!(p.lookup(&Method::GET, "/products/top-5"), Some(Access::Public));
        assert_eq!(p.lookup(&Method::DELETE, "/products/top-5"), None, "the static route wins, as in the router");
        assert_eq!(p.lookup(&Method::GET, "/payments/user/u1"), Some(Access::User));
        assert_eq!(p.lookup(&Method::GET, "/payments/status/pending"), Some(Access::Admin));
        assert_eq!(p.lookup(&Method::GET, "/payments/p1"), Some(Access::User));
        assert_eq!(p.lookup(&Method::GET, "/api/notifications/stats"), Some(Access::User));
        assert_eq!(p.lookup(&Method::POST, "/api/notifications/cleanup"), Some(Access::Admin));
        assert_eq!(p.lookup(&Method::GET, "/products/"), None);
        assert_eq!(p.lookup(&Method::GET, "/productsX"), None);
        assert_eq!(p.lookup(&Method::PATCH, "/products/1"), None);
        assert_eq!(p.len(), http_routes().len());
    }

    #[test]
    fn conflicting_declarations_are_refused() {
        let twice = [(Method::GET, "/a", Access::Public), (Method::GET, "/a", Access::Admin)];
        assert!(HttpPolicy::new(twice).is_err());
        let same = [(Method::GET, "/a", Access::Public), (Method::GET, "/a", Access::Public), (Method::POST, "/a", Access::User)];
        assert_eq!(HttpPolicy::new(same).unwrap().len(), 2);
    }

    #[test]
    fn every_rpc_of_our_services_is_declared_and_every_declaration_exists() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).expect("descriptor set");
        let mut rpcs = Vec::new();
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                for m in &service.method {
                    rpcs.push((full.clone(), m.name().to_string()));
                }
            }
        }
        assert_eq!(rpcs.len(), 24, "the three services' methods: {rpcs:?}");
        for (service, method) in &rpcs {
            let explicit = GRPC_ACCESS.iter().filter(|(s, m, _)| s == service && m == method).count();
            assert_eq!(explicit, 1, "/{service}/{method} is declared exactly once, by name");
            assert!(grpc_access(&format!("/{service}/{method}")).is_some());
        }
        for (service, method, _) in GRPC_ACCESS.iter().filter(|(_, m, _)| *m != "*") {
            assert!(rpcs.iter().any(|(s, m)| s == service && m == method), "/{service}/{method} is declared but not served");
        }
        // Reads of the catalog and health checks are public, catalog writes and payment administration
        // need an administrator, the rest a user.
        for (service, method) in &rpcs {
            let access = grpc_access(&format!("/{service}/{method}")).unwrap();
            let expected = match (service.as_str(), method.as_str()) {
                (_, "HealthCheck") => Access::Public,
                ("product.ProductService", m) if m.starts_with("Get") || m.starts_with("List") => Access::Public,
                ("product.ProductService", _) | ("payment.PaymentService", "UpdatePayment" | "RefundPayment") => Access::Admin,
                _ => Access::User,
            };
            assert_eq!(access, expected, "/{service}/{method}");
        }
    }

    #[test]
    fn grpc_paths() {
        assert_eq!(grpc_access("/product.ProductService/GetProduct"), Some(Access::Public));
        assert_eq!(grpc_access("/product.ProductService/DeleteProduct"), Some(Access::Admin));
        assert_eq!(grpc_access("/grpc.health.v1.Health/Watch"), Some(Access::Public));
        assert_eq!(grpc_access("/product.ProductService/Nope"), None);
        assert_eq!(grpc_access("/product.ProductService/"), None);
        assert_eq!(grpc_access("product.ProductService/GetProduct"), None);
    }
}
