//! Spin's HTTP routing: which trigger a request path goes to, and the `spin-*` headers
//! that tell the component how it matched.
//!
//! Route syntax: `/exact/path`, `:name` for one segment, and a trailing `/...` for any rest
//! (including none). When several routes match, the most specific wins: exact routes beat
//! trailing wildcards, then more segments beat fewer, then literal segments beat `:name`.

use anyhow::{Result, bail};
use std::net::SocketAddr;

/// The routes of every HTTP trigger, most specific first. Built once at start-up.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
}

#[derive(Debug)]
struct Route {
    /// As written in the manifest, e.g. `/users/:id/...`.
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
    /// Index of the component (in the order the caller gave) that serves the route.
    component: usize,
}

#[derive(Debug, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A request path matched to a route.
#[derive(Debug, PartialEq)]
pub struct RouteMatch<'r, 'p> {
    pub component: usize,
    pub raw_route: &'r str,
    /// The request path after the route's matched prefix (Spin's `spin-path-info`).
    pub path_info: &'p str,
    /// `:name` segments and the values they matched.
    pub params: Vec<(&'r str, &'p str)>,
}

/// Checks a manifest route's syntax.
pub fn check_route(route: &str) -> Result<()> {
    parse(route).map(|_| ())
}

fn parse(route: &str) -> Result<(Vec<Segment>, bool)> {
    let Some(rest) = route.strip_prefix('/') else {
        bail!("route {route:?} must start with `/`");
    };
    let mut parts: Vec<&str> = if rest.is_empty() {
        vec![]
    } else {
        rest.split('/').collect()
    };
    let wildcard = parts.last() == Some(&"...");
    if wildcard {
        parts.pop();
    }
    let mut segments = Vec::with_capacity(parts.len());
    for part in parts {
        if part.is_empty() {
            bail!("route {route:?} has an empty segment");
        }
        if part == "..." {
            bail!("route {route:?}: `...` may only end a route");
        }
        segments.push(match part.strip_prefix(':') {
            Some("") => bail!("route {route:?}: `:` needs a name"),
            Some(name) => Segment::Param(name.to_string()),
            None => Segment::Literal(part.to_string()),
        });
    }
    Ok((segments, wildcard))
}

impl Router {
    /// `routes` pairs each route with the index of its component. Two triggers on the same
    /// route would make one unreachable, so that is a start-up error.
    pub fn build<'a>(routes: impl IntoIterator<Item = (&'a str, usize)>) -> Result<Router> {
        let mut built: Vec<Route> = Vec::new();
        for (raw, component) in routes {
            if built.iter().any(|r| r.raw == raw) {
                bail!("route {raw:?} is declared by more than one [[trigger.http]]");
            }
            let (segments, wildcard) = parse(raw)?;
            built.push(Route {
                raw: raw.to_string(),
                segments,
                wildcard,
                component,
            });
        }
        // Stable sort: among equally specific routes the manifest's order decides.
        built.sort_by_key(|route| {
            let literals = route
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)));
            (
                route.wildcard,
                usize::MAX - route.segments.len(),
                usize::MAX - literals.count(),
            )
        });
        Ok(Router { routes: built })
    }

    pub fn routes(&self) -> impl Iterator<Item = (&str, usize, bool)> {
        self.routes
            .iter()
            .map(|r| (r.raw.as_str(), r.component, r.wildcard))
    }

    pub fn find<'r, 'p>(&'r self, path: &'p str) -> Option<RouteMatch<'r, 'p>> {
        self.routes.iter().find_map(|route| route.matches(path))
    }
}

impl Route {
    fn matches<'r, 'p>(&'r self, path: &'p str) -> Option<RouteMatch<'r, 'p>> {
        // Invariant: `rest` is the unmatched tail of the path, empty or starting with `/`.
        let mut rest = path;
        let mut params = Vec::new();
        for segment in &self.segments {
            let after_slash = rest.strip_prefix('/')?;
            let end = after_slash.find('/').unwrap_or(after_slash.len());
            let head = &after_slash[..end];
            match segment {
                _ if head.is_empty() => return None,
                Segment::Literal(literal) if literal != head => return None,
                Segment::Literal(_) => {}
                Segment::Param(name) => params.push((name.as_str(), head)),
            }
            rest = &after_slash[end..];
        }
        let path_info = if self.wildcard {
            rest
        } else if rest.is_empty() || (self.segments.is_empty() && rest == "/") {
            ""
        } else {
            return None;
        };
        Some(RouteMatch {
            component: self.component,
            raw_route: &self.raw,
            path_info,
            params,
        })
    }
}

/// The headers Spin adds to every request it hands a component. Any copy sent by the
/// client is replaced, so a component can trust them.
pub fn spin_headers(
    matched: &RouteMatch<'_, '_>,
    full_url: &str,
    client: SocketAddr,
) -> Vec<(String, String)> {
    let component_route = matched
        .raw_route
        .strip_suffix("/...")
        .unwrap_or(matched.raw_route);
    let mut headers = vec![
        ("spin-full-url".to_string(), full_url.to_string()),
        ("spin-path-info".to_string(), matched.path_info.to_string()),
        (
            "spin-matched-route".to_string(),
            matched.raw_route.to_string(),
        ),
        (
            "spin-raw-component-route".to_string(),
            matched.raw_route.to_string(),
        ),
        (
            "spin-component-route".to_string(),
            component_route.to_string(),
        ),
        ("spin-base-path".to_string(), "/".to_string()),
        ("spin-client-addr".to_string(), client.to_string()),
    ];
    for (name, value) in &matched.params {
        headers.push((format!("spin-path-match-{name}"), value.to_string()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router {
        Router::build(routes.iter().enumerate().map(|(i, r)| (*r, i))).unwrap()
    }

    fn find<'a>(router: &'a Router, path: &'a str) -> Option<(usize, &'a str)> {
        router.find(path).map(|m| (m.component, m.path_info))
    }

    #[test]
    fn the_catch_all_matches_everything_with_the_whole_path_as_info() {
        let r = router(&["/..."]);
        assert_eq!(find(&r, "/"), Some((0, "/")));
        assert_eq!(find(&r, "/api/greetings"), Some((0, "/api/greetings")));
    }

    #[test]
    fn exact_routes_beat_wildcards_and_longer_prefixes_win() {
        let r = router(&["/...", "/api/...", "/api/health"]);
        assert_eq!(find(&r, "/api/health"), Some((2, "")));
        assert_eq!(find(&r, "/api/mirror"), Some((1, "/mirror")));
        assert_eq!(find(&r, "/api"), Some((1, "")));
        assert_eq!(find(&r, "/apix"), Some((0, "/apix")));
        assert_eq!(find(&r, "/"), Some((0, "/")));
    }

    #[test]
    fn exact_routes_match_only_themselves() {
        let r = router(&["/", "/hello"]);
        assert_eq!(find(&r, "/"), Some((0, "")));
        assert_eq!(find(&r, "/hello"), Some((1, "")));
        assert_eq!(find(&r, "/hello/there"), None);
        assert_eq!(find(&r, "/other"), None);
    }

    #[test]
    fn parameters_capture_one_segment() {
        let r = router(&["/users/:id/...", "/users/me/..."]);
        let m = r.find("/users/42/cart/items").unwrap();
        assert_eq!((m.component, m.path_info), (0, "/cart/items"));
        assert_eq!(m.params, [("id", "42")]);
        assert_eq!(
            r.find("/users/me/x").unwrap().component,
            1,
            "literals beat parameters"
        );
        assert!(r.find("/users").is_none());
    }

    #[test]
    fn headers_follow_spin() {
        let r = router(&["/users/:userid/cart/..."]);
        let m = r.find("/users/1/cart/items/3/edit").unwrap();
        let client: SocketAddr = "127.0.0.1:53152".parse().unwrap();
        let headers = spin_headers(
            &m,
            "http://example.com:8080/users/1/cart/items/3/edit?x=1",
            client,
        );
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("spin-path-info"), Some("/items/3/edit"));
        assert_eq!(get("spin-matched-route"), Some("/users/:userid/cart/..."));
        assert_eq!(get("spin-component-route"), Some("/users/:userid/cart"));
        assert_eq!(get("spin-path-match-userid"), Some("1"));
        assert_eq!(get("spin-client-addr"), Some("127.0.0.1:53152"));
    }

    #[test]
    fn invalid_routes_and_duplicates_are_refused() {
        for bad in ["api", "/a//b", "/.../x", "/:"] {
            assert!(check_route(bad).is_err(), "{bad}");
        }
        assert!(Router::build([("/a", 0), ("/a", 1)]).is_err());
    }
}
