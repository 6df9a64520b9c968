//! Request deadlines by path: the default gives `verify` (a full read-back of every mirror) far longer
//! than an API request, and a configured prefix still wins over it.

use std::time::Duration;

use kassa_gateway::config::TimeoutConfig;

#[test]
fn verify_gets_a_long_deadline_and_everything_else_the_request_deadline() {
    let t = TimeoutConfig::default();
    assert_eq!(t.for_path("/api/products/1"), Duration::from_secs(30));
    assert_eq!(t.for_path("/admin/adapters"), Duration::from_secs(30));
    assert_eq!(t.for_path("/admin/adapters/verify"), Duration::from_secs(900));
}

#[test]
fn a_configured_route_overrides_by_longest_prefix() {
    let mut t = TimeoutConfig::default();
    t.routes.insert("/admin".into(), 5_000);
    assert_eq!(t.for_path("/admin/adapters"), Duration::from_secs(5));
    assert_eq!(t.for_path("/admin/adapters/verify"), Duration::from_secs(900), "the longer prefix wins");
}
