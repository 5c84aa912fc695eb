//! Property tests over the parsers that read untrusted input: arbitrary labels, hosts,
//! paths and ClientHello bytes never panic, and their answers keep their invariants.
use std::collections::BTreeMap;

use interlock::l7::front::sni::{self, Hello};
use interlock::l7::route::table::{normalize_host, prefix_matches, rewrite_path, Lookup, RouteTable};
use interlock::model::labels;
use interlock::model::{Backend, HttpRoute, Redirect, ServiceRef, Snapshot};
use proptest::prelude::*;

fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(labels::HOSTS.to_string()),
        Just(labels::PORT.to_string()),
        Just(labels::CONTEXT_ROOT.to_string()),
        Just(labels::REDIRECTS.to_string()),
        Just(labels::STICKY_COOKIE.to_string()),
        Just(labels::IP_HASH.to_string()),
        Just(labels::SSL_CERT.to_string()),
        Just(labels::L4_PORT.to_string()),
        Just(labels::L4_VIP.to_string()),
        "com\\.docker\\.lb\\.[a-z_.]{0,12}",
    ]
}

proptest! {
    // `cargo xtask fuzz --cases N` sets PROPTEST_CASES for deeper runs.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn label_parsing_never_panics_and_names_real_labels(pairs in proptest::collection::vec((label_key(), ".{0,40}"), 0..8)) {
        let map: BTreeMap<String, String> = pairs.into_iter().collect();
        let (parsed, warnings) = labels::parse(&map);
        if let Err(errors) = parsed {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(map.contains_key(&e.label) || e.label == labels::PORT || e.label == labels::SSL_CERT || e.label == labels::SSL_KEY);
                prop_assert!(!e.reason.is_empty());
            }
        }
        for w in warnings {
            prop_assert!(map.contains_key(&w.label));
        }
    }

    #[test]
    fn route_lookup_never_panics_and_matches_whole_segments(host in "[a-zA-Z0-9.:\\-\\[\\]]{0,30}", path in "/[a-z/?=]{0,20}") {
        let mut route = HttpRoute::plain(
            ServiceRef { id: "s".into(), name: "s".into() },
            vec!["a.example".into(), "*.w.example".into()],
            "/app",
            vec![Backend { addr: "127.0.0.1:1".parse().unwrap(), weight: 1, id: "b".into() }],
        );
        route.strip_prefix = true;
        let table = RouteTable::compile(&Snapshot { version: 1, http: vec![route], ..Snapshot::default() });
        match table.lookup("http", &host, &path, None) {
            Lookup::Route(r) => {
                prop_assert!(prefix_matches(&r.path_prefix, &path));
                let h = normalize_host(&host);
                prop_assert!(h == "a.example" || h.ends_with(".w.example"));
                let forwarded = rewrite_path(&r.path_prefix, r.strip_prefix, &path);
                prop_assert!(forwarded.starts_with('/'));
            }
            Lookup::NotFound => {}
            Lookup::Redirect(_) => prop_assert!(false, "no redirects configured"),
        }
    }

    #[test]
    fn redirects_keep_the_rest_of_the_path_and_the_query(path in "/[a-z/.]{0,20}", query in proptest::option::of("[a-z=&]{0,8}")) {
        let mut route = HttpRoute::plain(ServiceRef { id: "s".into(), name: "s".into() }, vec!["n.example".into()], "/", vec![]);
        route.redirects = vec![Redirect { source: "http://o.example/app".into(), target: "http://n.example/v2".into() }];
        let table = RouteTable::compile(&Snapshot { version: 1, http: vec![route], ..Snapshot::default() });
        match table.lookup("http", "o.example", &path, query.as_deref()) {
            Lookup::Redirect(location) => {
                prop_assert!(prefix_matches("/app", &path));
                prop_assert_eq!(location, format!("http://n.example/v2{}{}", &path[4..], query.map(|q| format!("?{q}")).unwrap_or_default()));
            }
            Lookup::NotFound => prop_assert!(!prefix_matches("/app", &path)),
            Lookup::Route(_) => prop_assert!(false, "o.example is routed nowhere"),
        }
    }

    #[test]
    fn client_hello_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = sni::parse(&bytes);
    }

    #[test]
    fn client_hello_parser_survives_corrupted_records(flip in 0usize..300, value in any::<u8>()) {
        // A syntactically plausible record header in front of random corruption.
        let mut bytes = vec![22u8, 3, 1, 1, 0, 1, 0, 0, 252, 3, 3];
        bytes.extend(std::iter::repeat_n(0u8, 300));
        let at = flip % bytes.len();
        bytes[at] = value;
        if let Hello::Complete(Some(name)) = sni::parse(&bytes) {
            prop_assert_eq!(name.clone(), name.to_ascii_lowercase(), "SNI names come out lower-cased");
        }
    }
}
