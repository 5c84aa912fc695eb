//! Interlock's label contract on a real swarm, label by label, through the deployed stack's
//! agent: the default backend (a service labelled only `default_backend` and `port`) answers
//! every host no other service claims, and a second one is refused with an error naming both;
//! `redirects` answer 302 with the path and query kept; `ssl_only` answers 301 to the HTTPS
//! listener's port (18443 in the test stack); a bad `redirects` value is one error naming the
//! label, and harms no other service.
use std::time::Duration;

use anyhow::Result;
use interlock_tests::docker::{ensure_backend_image, unique, Network, Service};
use interlock_tests::stack::{get, header, routed_page, send_full, Stack, HTTPS_PORT};
use interlock_tests::{report, require_root, wait_until};

/// `GET path` for `host` through the stack: status, `Location` (if any), body.
fn ask(host: &str, path: &str) -> Result<(u16, Option<String>, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (status, head, body) = send_full(&request)?;
    Ok((status, header(&head, "location").map(str::to_string), body))
}

/// Waits until `host`+`path` answers 200 with `text`; the seconds it took.
fn wait_page(host: &str, path: &str, text: &str) -> Result<f64> {
    wait_until(
        &format!("{host}{path} answering {text:?}"),
        Duration::from_secs(60),
        || Ok(matches!(get(host, path)?, (200, body) if body.trim() == text)),
    )
}

#[test]
fn default_backend_redirects_and_ssl_only_as_interlock_documents_them() {
    require_root();
    ensure_backend_image().unwrap();
    // Declared before the stack so it is removed after the agent has left it.
    let net = Network::new().unwrap();
    let stack = Stack::deploy("").unwrap();
    let on_net = ["--network", net.name.as_str()];
    let default_labels = [
        &on_net[..],
        &[
            "--label",
            "com.docker.lb.default_backend=true",
            "--label",
            "com.docker.lb.port=80",
        ],
    ]
    .concat();
    // Interlock's documented default-backend service: no hosts.
    let fallback = Service::page(&default_labels, "fallback").unwrap();
    let host = format!("{}.example", unique("web"));
    let web = routed_page(&net, &host, &[], "web").unwrap();
    let old = format!("{}.example", unique("old"));
    let redirects = format!("com.docker.lb.redirects=http://{old},http://{host}");
    let mover = routed_page(
        &net,
        &format!("{}.example", unique("mover")),
        &["--label", &redirects],
        "mover",
    )
    .unwrap();
    let secure = format!("{}.example", unique("secure"));
    let ssl_only = routed_page(&net, &secure, &["--label", "com.docker.lb.ssl_only=true"], "secure").unwrap();
    let typo_host = format!("{}.example", unique("typo"));
    let typo = routed_page(
        &net,
        &typo_host,
        &["--label", "com.docker.lb.redirects=http://nowhere"],
        "typo",
    )
    .unwrap();

    let unknown = format!("{}.invalid", unique("nobody"));
    let fallback_s = wait_page(&unknown, "/", "fallback").unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
    let web_s = wait_page(&host, "/", "web").unwrap();
    assert_eq!(
        get(&host, "/").unwrap().1.trim(),
        "web",
        "a claimed host is its service's"
    );
    let redirected = wait_until("the redirect in place", Duration::from_secs(60), || {
        Ok(ask(&old, "/")?.0 == 302)
    });
    redirected.unwrap_or_else(|e| panic!("{e:#}: {:?}\n{}", ask(&old, "/"), stack.logs()));

    // Redirects: 302, the normalised path and the query kept.
    let (status, location, _) = ask(&old, "/x/./y/../z?q=1&r").unwrap();
    assert_eq!(
        (status, location.as_deref()),
        (302, Some(format!("http://{host}/x/z?q=1&r").as_str()))
    );
    let (status, location, _) = ask(&old, "/").unwrap();
    assert_eq!(
        (status, location.as_deref()),
        (302, Some(format!("http://{host}/").as_str()))
    );
    // ssl_only: 301 to the same host, path and query on the HTTPS listener's port.
    wait_until("the ssl_only route in place", Duration::from_secs(60), || {
        Ok(ask(&secure, "/")?.0 == 301)
    })
    .unwrap();
    let (status, location, _) = ask(&secure, "/a?b=c").unwrap();
    assert_eq!(
        (status, location.as_deref()),
        (301, Some(format!("https://{secure}:{HTTPS_PORT}/a?b=c").as_str()))
    );

    // A bad redirects value: that service alone is left out (its host goes to the default
    // backend), with one error naming the label, the value and the reason.
    let typo_error = format!(
        "service {}: label com.docker.lb.redirects=\"http://nowhere\": \"http://nowhere\": expected `<source>,<target>` \
         (service not routed)",
        typo.name
    );
    let logged = wait_until("the bad redirects value reported", Duration::from_secs(30), || {
        Ok(stack.logs().contains(&typo_error))
    });
    logged.unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
    assert_eq!(get(&typo_host, "/").unwrap().1.trim(), "fallback");
    assert_eq!(get(&host, "/").unwrap().1.trim(), "web");

    // A second default backend: the older one keeps answering; the newer is named in an error
    // beside it.
    let second = Service::page(&default_labels, "second").unwrap();
    let conflict = wait_until("the second default backend reported", Duration::from_secs(30), || {
        let logs = stack.logs();
        Ok(logs.lines().any(|l| {
            l.contains(&format!(
                "service {}: label com.docker.lb.default_backend=\"true\"",
                second.name
            )) && l.contains(&format!("older service {}", fallback.name))
        }))
    });
    conflict.unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
    for _ in 0..20 {
        assert_eq!(
            get(&unknown, "/").unwrap().1.trim(),
            "fallback",
            "the older default backend answers"
        );
    }
    // The first one gone, the second takes over.
    drop(fallback);
    let takeover_s = wait_page(&unknown, "/", "second").unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
    assert_eq!(
        get(&host, "/").unwrap().1.trim(),
        "web",
        "a claimed host stays its service's"
    );
    report(&format!(
        "swarm_labels_routing: default backend (labels default_backend+port only) answered an unknown host \
         after {fallback_s:.1} s, a hosted service after {web_s:.1} s; redirects 302 with path and query kept; \
         ssl_only 301 to :{HTTPS_PORT}; a bad redirects value reported and only its service left out; a \
         second default backend refused naming both, taking over {takeover_s:.1} s after the first was removed"
    ));
    drop((second, typo, ssl_only, mover, web));
}
