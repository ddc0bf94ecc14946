//! Spin's HTTP routing, on `routefinder` as Spin's own router is: which trigger a request path
//! goes to, and the `spin-*` headers that tell the component how it matched.
//!
//! Rules, as in Spin 3.x (`spin-http-routes`): a route is made absolute and loses one trailing
//! `/`; `/...` (or `/*`) at the end matches any rest, including none; `:name` matches one
//! segment. routefinder picks the most specific match (`/hello` > `/:param` > `/*`, segment by
//! segment). Two triggers on the same route: the last one wins and the others are reported
//! as duplicates that will never be used. Paths under `/.well-known/spin/` are the runtime's.

use anyhow::{Result, anyhow, bail};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

/// The prefix of the paths the runtime answers itself (`health`, `info`).
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// The routes of every HTTP trigger. Built once at start-up.
#[derive(Debug)]
pub struct Router {
    inner: routefinder::Router<Handler>,
}

#[derive(Debug)]
struct Handler {
    /// Index of the component (in the order the caller gave) that serves the route.
    component: usize,
    /// As written in the manifest, e.g. `/users/:id/...`; also the metrics' route label.
    raw_route: Arc<str>,
    /// Absolute, one trailing `/` removed: Spin's `spin-matched-route`.
    based_route: String,
}

/// A route declared by more than one trigger: only `effective` serves it.
#[derive(Debug, PartialEq)]
pub struct DuplicateRoute {
    pub route: String,
    pub replaced: String,
    pub effective: String,
}

/// A request path matched to a route.
pub struct RouteMatch<'r, 'p> {
    handler: &'r Handler,
    captures: routefinder::Captures<'r, 'p>,
    path: &'p str,
}

impl Router {
    /// `routes` gives each trigger's route, the index of its component and the component's id
    /// (for messages). Returns the router and the routes that were declared more than once.
    pub fn build<'a>(
        routes: impl IntoIterator<Item = (&'a str, usize, &'a str)>,
    ) -> Result<(Router, Vec<DuplicateRoute>)> {
        // (raw route, component, id), in first-seen order; a later duplicate replaces the value.
        let mut unique: Vec<(&str, usize, &str)> = Vec::new();
        let mut duplicates = Vec::new();
        for (raw, component, id) in routes {
            match unique.iter_mut().find(|(r, _, _)| *r == raw) {
                Some(entry) => {
                    duplicates.push(DuplicateRoute {
                        route: if raw.is_empty() {
                            "/".into()
                        } else {
                            raw.into()
                        },
                        replaced: entry.2.to_string(),
                        effective: id.to_string(),
                    });
                    *entry = (raw, component, id);
                }
                None => unique.push((raw, component, id)),
            }
        }
        let mut inner = routefinder::Router::new();
        for (raw, component, id) in unique {
            let based_route = based(raw);
            let spec = match based_route.strip_suffix("/...") {
                Some(prefix) => format!("{prefix}/*"),
                None => based_route.clone(),
            };
            // routefinder takes a `*` anywhere (it splits at `/` and `.`) but panics when one
            // that is not last is matched; Spin would too, on every request it routes.
            if spec
                .split(['/', '.'])
                .rev()
                .skip(1)
                .any(|section| section == "*")
            {
                bail!(
                    "Error parsing route {based_route} associated with component {id}: a wildcard (`/...` or `*`) may only end a route"
                );
            }
            let handler = Handler {
                component,
                raw_route: Arc::from(raw),
                based_route: based_route.clone(),
            };
            inner.add(spec, handler).map_err(|e| {
                anyhow!("Error parsing route {based_route} associated with component {id}: {e}")
            })?;
        }
        Ok((Router { inner }, duplicates))
    }

    /// Each route as `spin up` lists it (`/api (wildcard)`), with its component, in
    /// routefinder's order of precedence.
    pub fn routes(&self) -> impl Iterator<Item = (String, usize)> {
        self.inner.iter().map(|(_, handler)| {
            let based = &handler.based_route;
            let shown = match based
                .strip_suffix("/...")
                .or_else(|| based.strip_suffix("/*"))
            {
                Some(prefix) => format!("{prefix} (wildcard)"),
                None => based.clone(),
            };
            (shown, handler.component)
        })
    }

    /// Whether a route lies under [`WELL_KNOWN_PREFIX`], where it can never be reached.
    pub fn contains_reserved_route(&self) -> bool {
        self.inner
            .iter()
            .any(|(_, handler)| handler.based_route.starts_with(WELL_KNOWN_PREFIX))
    }

    pub fn find<'r, 'p>(&'r self, path: &'p str) -> Option<RouteMatch<'r, 'p>> {
        let best = self.inner.best_match(path)?;
        Some(RouteMatch {
            handler: best.handler(),
            captures: best.captures(),
            path,
        })
    }
}

/// Spin's `sanitize_with_base` for the base `/`: absolute, one trailing `/` removed.
fn based(raw: &str) -> String {
    let absolute = if raw.starts_with('/') {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(format!("/{raw}"))
    };
    absolute.strip_suffix('/').unwrap_or(&absolute).to_string()
}

impl RouteMatch<'_, '_> {
    pub fn component(&self) -> usize {
        self.handler.component
    }

    /// The route as written in the manifest, shared for labels.
    pub fn raw_route(&self) -> &Arc<str> {
        &self.handler.raw_route
    }

    /// The part of the path the trailing wildcard matched (`spin-path-info`). Spin keeps a
    /// trailing slash, which routefinder drops.
    pub fn path_info(&self) -> Cow<'_, str> {
        let Some(rest) = self.captures.wildcard() else {
            return Cow::Borrowed("");
        };
        match (rest.is_empty(), self.path.ends_with('/')) {
            (true, false) => Cow::Borrowed(""),
            (true, true) => Cow::Borrowed("/"),
            (false, false) => Cow::Owned(format!("/{rest}")),
            (false, true) => Cow::Owned(format!("/{rest}/")),
        }
    }
}

/// The headers Spin adds to every request it hands a component. Any copy sent by the
/// client is replaced, so a component can trust them.
pub fn spin_headers(
    matched: &RouteMatch<'_, '_>,
    full_url: String,
    client: SocketAddr,
) -> Vec<(String, String)> {
    let raw = &*matched.handler.raw_route;
    let mut headers = vec![
        (
            "spin-path-info".to_string(),
            matched.path_info().into_owned(),
        ),
        ("spin-full-url".to_string(), full_url),
        (
            "spin-matched-route".to_string(),
            matched.handler.based_route.clone(),
        ),
        ("spin-base-path".to_string(), "/".to_string()),
        ("spin-raw-component-route".to_string(), raw.to_string()),
        (
            "spin-component-route".to_string(),
            raw.strip_suffix("/...").unwrap_or(raw).to_string(),
        ),
        ("spin-client-addr".to_string(), client.to_string()),
    ];
    for (name, value) in matched.captures.iter() {
        // Spin names it SPIN_PATH_MATCH_<NAME>, then turns `_` into `-` and lowercases.
        let header = format!(
            "spin-path-match-{}",
            name.to_ascii_lowercase().replace('_', "-")
        );
        headers.push((header, value.to_string()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router {
        let ids: Vec<String> = (0..routes.len()).map(|i| format!("c{i}")).collect();
        let (router, duplicates) = Router::build(
            routes
                .iter()
                .enumerate()
                .map(|(i, r)| (*r, i, ids[i].as_str())),
        )
        .unwrap();
        assert!(duplicates.is_empty());
        router
    }

    fn find(router: &Router, path: &str) -> Option<(usize, String)> {
        router
            .find(path)
            .map(|m| (m.component(), m.path_info().into_owned()))
    }

    fn info(path_info: &str) -> String {
        path_info.to_string()
    }

    #[test]
    fn the_catch_all_matches_everything_with_the_whole_path_as_info() {
        let r = router(&["/..."]);
        assert_eq!(find(&r, "/"), Some((0, info("/"))));
        assert_eq!(
            find(&r, "/api/greetings"),
            Some((0, info("/api/greetings")))
        );
        assert_eq!(find(&r, "/abc/"), Some((0, info("/abc/"))));
    }

    #[test]
    fn exact_routes_beat_wildcards_and_longer_prefixes_win() {
        let r = router(&["/...", "/api/...", "/api/health"]);
        assert_eq!(find(&r, "/api/health"), Some((2, info(""))));
        assert_eq!(find(&r, "/api/mirror"), Some((1, info("/mirror"))));
        assert_eq!(find(&r, "/api"), Some((1, info(""))));
        assert_eq!(find(&r, "/apix"), Some((0, info("/apix"))));
        assert_eq!(find(&r, "/"), Some((0, info("/"))));
    }

    #[test]
    fn trailing_slashes_follow_spin() {
        let r = router(&["/test/..."]);
        assert_eq!(find(&r, "/test"), Some((0, info(""))));
        assert_eq!(find(&r, "/test/"), Some((0, info("/"))));
        assert_eq!(find(&r, "/test/hello"), Some((0, info("/hello"))));
        assert_eq!(find(&r, "/test/hello/"), Some((0, info("/hello/"))));
        // A route loses one trailing slash; routefinder matches with or without one.
        let r = router(&["/hello/"]);
        assert_eq!(find(&r, "/hello"), Some((0, info(""))));
        assert_eq!(find(&r, "/hello/"), Some((0, info(""))));
    }

    #[test]
    fn exact_routes_match_only_themselves() {
        let r = router(&["/", "/hello"]);
        assert_eq!(find(&r, "/").map(|m| m.0), Some(0));
        assert_eq!(find(&r, "/hello").map(|m| m.0), Some(1));
        assert_eq!(find(&r, "/hello/there"), None);
        assert_eq!(find(&r, "/other"), None);
    }

    #[test]
    fn parameters_capture_one_segment_and_literals_beat_them() {
        let r = router(&["/users/:id/...", "/users/me/..."]);
        let m = r.find("/users/42/cart/items").unwrap();
        assert_eq!((m.component(), m.path_info().as_ref()), (0, "/cart/items"));
        assert_eq!(r.find("/users/me/x").unwrap().component(), 1);
        assert!(r.find("/users").is_none());
    }

    #[test]
    fn headers_follow_spin() {
        let r = router(&["/users/:user_id/cart/..."]);
        let m = r.find("/users/1/cart/items/3/edit").unwrap();
        let client: SocketAddr = "127.0.0.1:53152".parse().unwrap();
        let url = "http://example.com:8080/users/1/cart/items/3/edit?x=1".to_string();
        let headers = spin_headers(&m, url.clone(), client);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("spin-path-info"), Some("/items/3/edit"));
        assert_eq!(get("spin-full-url"), Some(url.as_str()));
        assert_eq!(get("spin-matched-route"), Some("/users/:user_id/cart/..."));
        assert_eq!(
            get("spin-raw-component-route"),
            Some("/users/:user_id/cart/...")
        );
        assert_eq!(get("spin-component-route"), Some("/users/:user_id/cart"));
        assert_eq!(get("spin-base-path"), Some("/"));
        assert_eq!(get("spin-path-match-user-id"), Some("1"));
        assert_eq!(get("spin-client-addr"), Some("127.0.0.1:53152"));
    }

    #[test]
    fn the_root_route_is_matched_as_spin_names_it() {
        let r = router(&["/"]);
        let m = r.find("/").unwrap();
        let headers = spin_headers(&m, "http://h/".into(), "127.0.0.1:1".parse().unwrap());
        assert!(headers.contains(&("spin-matched-route".into(), String::new())));
        assert!(headers.contains(&("spin-raw-component-route".into(), "/".into())));
    }

    #[test]
    fn duplicate_routes_are_reported_and_the_last_one_wins() {
        let (r, duplicates) = Router::build([
            ("/", 0, "first"),
            ("/foo", 0, "first"),
            ("/foo", 1, "second"),
        ])
        .unwrap();
        assert_eq!(
            duplicates,
            [DuplicateRoute {
                route: "/foo".into(),
                replaced: "first".into(),
                effective: "second".into()
            }]
        );
        assert_eq!(r.find("/foo").unwrap().component(), 1);
        assert_eq!(r.routes().count(), 2);
    }

    #[test]
    fn a_wildcard_that_does_not_end_its_route_is_refused_at_start() {
        for route in ["/a/*/b", "/files/*.txt"] {
            let error = Router::build([(route, 0, "web")]).unwrap_err().to_string();
            assert!(error.contains("may only end a route"), "{route}: {error}");
        }
        for route in ["/a/*", "/a/...", "/...", "/a.b/*"] {
            let r = Router::build([(route, 0, "web")]).unwrap().0;
            assert!(r.find("/a/x").is_some() || route == "/a.b/*", "{route}");
        }
    }

    #[test]
    fn reserved_routes_are_detected() {
        assert!(router(&["/.well-known/spin/..."]).contains_reserved_route());
        assert!(router(&["/.well-known/spin/fie"]).contains_reserved_route());
        assert!(!router(&["/.well-known/spindle/..."]).contains_reserved_route());
        assert!(!router(&["/.well-known/spin"]).contains_reserved_route());
    }
}
