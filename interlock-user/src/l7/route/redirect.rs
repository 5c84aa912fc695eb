//! Redirects (`com.docker.lb.redirects`) compiled for lookup. Pure: no I/O.
//!
//! As Interlock does them (its nginx `return 302 <target>$request_uri`): a request matching a
//! source is sent to the target with the rest of its path and its query kept,
//! `http://old.local,http://new.local` answers `GET /x?y` on old.local with
//! `http://new.local/x?y`. A source is
//! - a URL, `http(s)://host[:port][/prefix]`: requests by that scheme for that host (the port is
//!   not compared: the Host header's is the proxy's own), under the segment-aligned prefix;
//! - a path, `/prefix`: requests under the prefix for the hosts of the service carrying the
//!   label (a hostless default backend: the hosts no route claims), so one service's label
//!   cannot redirect another's hosts.
//!
//! The target gets what follows the prefix and the query; a target with a query of its own is
//! answered as it is. Lookups allocate only when they answer a redirect.
use crate::model::Redirect;

use super::table::prefix_matches;

/// One compiled `<source>,<target>` pair.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    /// `http` or `https` for a URL source; `None` for a path source (either scheme).
    scheme: Option<String>,
    /// Segment-aligned, no trailing `/` (`/` for none).
    prefix: String,
    /// Without a trailing `/`; may be empty (the target `/`).
    target: String,
    /// The target names a path (`http://new.local/v2`, `/app`): an empty rest adds no `/`.
    target_has_path: bool,
    /// The target carries a query or fragment: answered as it is.
    verbatim: bool,
}

impl Rule {
    fn matches(&self, scheme: &str, path: &str) -> bool {
        self.scheme.as_deref().is_none_or(|s| s == scheme) && prefix_matches(&self.prefix, path)
    }

    /// The Location for a request `path` (normalised, under `prefix`) and `query`.
    fn location(&self, path: &str, query: Option<&str>) -> String {
        if self.verbatim {
            return self.target.clone();
        }
        let rest = if self.prefix == "/" {
            path
        } else {
            &path[self.prefix.len()..]
        };
        let query_len = query.map_or(0, |q| q.len() + 1);
        let mut out = String::with_capacity(self.target.len() + rest.len() + query_len + 1);
        out.push_str(&self.target);
        if rest.is_empty() {
            if !self.target_has_path {
                out.push('/');
            }
        } else {
            out.push_str(rest);
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// A source split: scheme (URL sources), lower-cased host without port (URL sources), prefix.
fn split_source(source: &str) -> (Option<&'static str>, Option<String>, String) {
    let (scheme, rest) = match (source.strip_prefix("http://"), source.strip_prefix("https://")) {
        (Some(rest), _) => (Some("http"), rest),
        (_, Some(rest)) => (Some("https"), rest),
        _ => (None, source),
    };
    let (host, path) = match scheme {
        Some(_) => {
            let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
            (Some(super::table::normalize_host(authority).into_owned()), path)
        }
        None => (None, rest),
    };
    let prefix = path.trim_end_matches('/');
    (scheme, host, if prefix.is_empty() { "/".into() } else { prefix.into() })
}

fn rule_of(r: &Redirect, scheme: Option<&str>, prefix: String) -> Rule {
    let target = r.target.trim_end_matches('/').to_string();
    let after_authority = ["http://", "https://"]
        .iter()
        .find_map(|s| target.strip_prefix(s))
        .map(|rest| rest.find('/').map_or("", |i| &rest[i..]));
    let target_has_path = match after_authority {
        Some(path) => !path.is_empty(),
        None => !target.is_empty(),
    };
    Rule {
        scheme: scheme.map(str::to_string),
        prefix,
        verbatim: target.contains(['?', '#']),
        target: if target.contains(['?', '#']) {
            r.target.clone()
        } else {
            target
        },
        target_has_path,
    }
}

/// Every redirect of a snapshot, by the host it applies to.
#[derive(Debug, Default)]
pub struct Redirects {
    /// Exact hosts; each host's rules longest prefix first, then in snapshot order (oldest
    /// service first).
    by_host: foldhash::HashMap<String, Vec<Rule>>,
    /// Path sources of services with wildcard hosts: (suffix with the dot, rules), longest first.
    by_suffix: Vec<(String, Vec<Rule>)>,
    /// Path sources of hostless default backends: for requests that reach the default.
    fallback: Vec<Rule>,
}

impl Redirects {
    /// Compiles `(redirect, hosts of the service carrying it)` pairs.
    pub fn compile<'a>(pairs: impl IntoIterator<Item = (&'a Redirect, &'a [String])>) -> Redirects {
        let mut out = Redirects::default();
        for (r, service_hosts) in pairs {
            let (scheme, host, prefix) = split_source(&r.source);
            let rule = rule_of(r, scheme, prefix);
            match host {
                Some(host) => out.by_host.entry(host).or_default().push(rule),
                None if service_hosts.is_empty() => out.fallback.push(rule),
                None => {
                    for h in service_hosts {
                        match h.strip_prefix('*') {
                            Some(suffix) => match out.by_suffix.iter_mut().find(|(s, _)| s == suffix) {
                                Some((_, rules)) => rules.push(rule.clone()),
                                None => out.by_suffix.push((suffix.to_string(), vec![rule.clone()])),
                            },
                            None => out.by_host.entry(h.clone()).or_default().push(rule.clone()),
                        }
                    }
                }
            }
        }
        let by_length = |a: &Rule, b: &Rule| b.prefix.len().cmp(&a.prefix.len());
        for rules in out.by_host.values_mut().chain(out.by_suffix.iter_mut().map(|(_, r)| r)) {
            rules.sort_by(by_length);
        }
        out.fallback.sort_by(by_length);
        out.by_suffix
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        out
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty() && self.by_suffix.is_empty() && self.fallback.is_empty()
    }

    /// The Location for a request to `host` (normalised: lower case, no port), if a rule
    /// for that host matches.
    pub fn find(&self, scheme: &str, host: &str, path: &str, query: Option<&str>) -> Option<String> {
        let rule = self
            .by_host
            .get(host)
            .and_then(|rules| first_match(rules, scheme, path))
            .or_else(|| {
                self.by_suffix
                    .iter()
                    .filter(|(suffix, _)| host.ends_with(suffix.as_str()))
                    .find_map(|(_, rules)| first_match(rules, scheme, path))
            })?;
        Some(rule.location(path, query))
    }

    /// The Location for a request that reached the default backend, if one of its rules matches.
    pub fn find_fallback(&self, scheme: &str, path: &str, query: Option<&str>) -> Option<String> {
        first_match(&self.fallback, scheme, path).map(|r| r.location(path, query))
    }
}

fn first_match<'r>(rules: &'r [Rule], scheme: &str, path: &str) -> Option<&'r Rule> {
    rules.iter().find(|r| r.matches(scheme, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirects(pairs: &[(&str, &str, &[&str])]) -> Redirects {
        let owned: Vec<(Redirect, Vec<String>)> = pairs
            .iter()
            .map(|(s, t, hosts)| {
                (
                    Redirect {
                        source: s.to_string(),
                        target: t.to_string(),
                    },
                    hosts.iter().map(|h| h.to_string()).collect(),
                )
            })
            .collect();
        Redirects::compile(owned.iter().map(|(r, h)| (r, h.as_slice())))
    }

    #[test]
    fn a_url_source_keeps_the_path_and_query() {
        let r = redirects(&[("http://old.local", "http://new.local", &["new.local"])]);
        let find = |path, query| r.find("http", "old.local", path, query);
        assert_eq!(find("/x", Some("y")).as_deref(), Some("http://new.local/x?y"));
        assert_eq!(find("/", None).as_deref(), Some("http://new.local/"));
        assert_eq!(
            find("/a/b", Some("q=1&r")).as_deref(),
            Some("http://new.local/a/b?q=1&r")
        );
        assert_eq!(
            r.find("https", "old.local", "/", None),
            None,
            "the source's scheme only"
        );
        assert_eq!(
            r.find("http", "new.local", "/", None),
            None,
            "another host is not redirected"
        );
    }

    #[test]
    fn a_url_source_with_a_path_is_a_segment_aligned_prefix() {
        let r = redirects(&[
            ("http://old.local/app/", "https://new.local/v2", &[]),
            ("http://old.local", "http://www.local/", &[]),
        ]);
        let find = |path| r.find("http", "old.local", path, None);
        assert_eq!(find("/app/x").as_deref(), Some("https://new.local/v2/x"));
        assert_eq!(find("/app").as_deref(), Some("https://new.local/v2"));
        assert_eq!(
            find("/apple").as_deref(),
            Some("http://www.local/apple"),
            "not under /app"
        );
    }

    #[test]
    fn source_host_case_and_port_are_not_compared() {
        let r = redirects(&[("http://Old.Local:8080", "http://new.local", &[])]);
        assert_eq!(
            r.find("http", "old.local", "/", None).as_deref(),
            Some("http://new.local/")
        );
    }

    #[test]
    fn a_path_source_applies_to_its_services_hosts_only() {
        let r = redirects(&[("/legacy", "/app", &["a.example", "*.w.example"])]);
        assert_eq!(
            r.find("http", "a.example", "/legacy/x", Some("q")).as_deref(),
            Some("/app/x?q")
        );
        assert_eq!(r.find("https", "a.example", "/legacy", None).as_deref(), Some("/app"));
        assert_eq!(r.find("http", "x.w.example", "/legacy", None).as_deref(), Some("/app"));
        assert_eq!(
            r.find("http", "b.example", "/legacy", None),
            None,
            "another service's host"
        );
        assert_eq!(r.find("http", "a.example", "/legacyx", None), None);
        assert_eq!(r.find_fallback("http", "/legacy", None), None);
    }

    #[test]
    fn a_hostless_default_backends_path_source_is_a_fallback() {
        let r = redirects(&[("/old", "/", &[])]);
        assert_eq!(r.find("http", "any.example", "/old", None), None);
        assert_eq!(r.find_fallback("http", "/old/x", None).as_deref(), Some("/x"));
        assert_eq!(r.find_fallback("http", "/old", None).as_deref(), Some("/"));
    }

    #[test]
    fn a_target_with_a_query_is_answered_as_it_is() {
        let r = redirects(&[("http://old.local", "http://new.local/?from=old", &[])]);
        assert_eq!(
            r.find("http", "old.local", "/x", Some("y")).as_deref(),
            Some("http://new.local/?from=old")
        );
    }

    #[test]
    fn the_longest_prefix_then_the_oldest_service_wins() {
        let r = redirects(&[
            ("http://o.local", "http://first.local", &[]),
            ("http://o.local", "http://second.local", &[]),
            ("http://o.local/deep", "http://deep.local", &[]),
        ]);
        assert_eq!(
            r.find("http", "o.local", "/", None).as_deref(),
            Some("http://first.local/")
        );
        assert_eq!(
            r.find("http", "o.local", "/deep/x", None).as_deref(),
            Some("http://deep.local/x")
        );
    }
}
