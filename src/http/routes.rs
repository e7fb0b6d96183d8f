//! The one table of the server's routes. The router is built from it and
//! the OpenAPI document is checked against it, so a route cannot be added
//! without the test noticing that the document lacks it.

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};

use super::{AppState, customers, healthz, openapi, readyz};

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListCustomers,
    CreateCustomer,
    ShowCustomer,
    UpdateCustomer,
    DeleteCustomer,
    OpenApi,
    Healthz,
    Readyz,
    /// The HTML index page for people, the only route the document leaves out.
    Index,
}

impl Endpoint {
    /// Whether the OpenAPI document must describe this route.
    pub fn documented(self) -> bool {
        self != Endpoint::Index
    }

    /// Whether the route acts for a merchant account and so needs a key.
    pub fn needs_key(self) -> bool {
        matches!(
            self,
            ListCustomers | CreateCustomer | ShowCustomer | UpdateCustomer | DeleteCustomer
        )
    }
}

/// One method on one path, spelt as axum and the OpenAPI document both
/// spell it. A customer's `.json` suffix is part of its `{id}`, which the
/// handlers strip, since axum cannot match a parameter and a suffix within
/// one segment.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub endpoint: Endpoint,
}

const fn route(method: Method, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

use Endpoint::*;

/// Every route the server answers, apart from the docs page's own files.
pub const ROUTES: &[Route] = &[
    route(Method::GET, "/api/v1/customers", ListCustomers),
    route(Method::POST, "/api/v1/customers", CreateCustomer),
    route(Method::GET, "/api/v1/customers.json", ListCustomers),
    route(Method::POST, "/api/v1/customers.json", CreateCustomer),
    route(Method::GET, "/api/v1/customers/{id}", ShowCustomer),
    route(Method::PUT, "/api/v1/customers/{id}", UpdateCustomer),
    route(Method::PATCH, "/api/v1/customers/{id}", UpdateCustomer),
    route(Method::DELETE, "/api/v1/customers/{id}", DeleteCustomer),
    route(Method::GET, "/api/v1/openapi.json", OpenApi),
    route(Method::GET, "/healthz", Healthz),
    route(Method::GET, "/readyz", Readyz),
    route(Method::GET, "/", Index),
];

fn add(methods: MethodRouter<AppState>, route: &Route) -> MethodRouter<AppState> {
    let filter = MethodFilter::try_from(route.method.clone())
        .unwrap_or_else(|_| panic!("axum cannot route the method {}", route.method));
    match route.endpoint {
        ListCustomers => methods.on(filter, customers::list),
        CreateCustomer => methods.on(filter, customers::create),
        ShowCustomer => methods.on(filter, customers::show),
        UpdateCustomer => methods.on(filter, customers::update),
        DeleteCustomer => methods.on(filter, customers::delete),
        OpenApi => methods.on(filter, openapi::document_json),
        Healthz => methods.on(filter, healthz),
        Readyz => methods.on(filter, readyz),
        Index => methods.on(filter, openapi::index_page),
    }
}

/// The routes of [`ROUTES`] that act for an account, so that a layer
/// checking the key can go on them alone.
pub fn api_router() -> Router<AppState> {
    table_router(|e| e.needs_key())
}

/// The routes of [`ROUTES`] that need no key.
pub fn open_router() -> Router<AppState> {
    table_router(|e| !e.needs_key())
}

fn table_router(wanted: fn(Endpoint) -> bool) -> Router<AppState> {
    let routes: Vec<&Route> = ROUTES.iter().filter(|r| wanted(r.endpoint)).collect();
    let mut paths: Vec<&str> = Vec::new();
    for route in &routes {
        if !paths.contains(&route.path) {
            paths.push(route.path);
        }
    }
    paths.into_iter().fold(Router::new(), |router, path| {
        let methods = routes
            .iter()
            .filter(|r| r.path == path)
            .fold(MethodRouter::new(), |methods, route| add(methods, route));
        router.route(path, methods)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_either_for_an_account_or_open_never_both() {
        for a in ROUTES {
            for b in ROUTES.iter().filter(|b| b.path == a.path) {
                assert_eq!(a.endpoint.needs_key(), b.endpoint.needs_key(), "{}", a.path);
            }
        }
    }

    #[test]
    fn no_method_and_path_is_listed_twice() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} is listed twice",
                    a.method,
                    a.path
                );
            }
        }
    }
}
