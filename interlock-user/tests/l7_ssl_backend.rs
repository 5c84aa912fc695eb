//! TLS from the proxy to the backends (`com.docker.lb.ssl_backend`,
//! `ssl_backend_tls_verify`, `ssl_backend_ca`), on loopback: rustls backends with rcgen
//! certificates reached through the proxy, the routes made from the labels by the
//! assembler (task address 127.0.0.1, the backend's port as `com.docker.lb.port`).
//!
//! Why loopback and not the swarm: the swarm tests' tasks are busybox, whose httpd has no
//! TLS; everything between the labels and the bytes on the backend's socket is the code the
//! agent runs.
mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use interlock::model::assemble::{Assembler, ClusterState, NetworkInfo, Options, ServiceInfo, TaskInfo};
use interlock::model::{BackendTls, BackendVerify, Snapshot};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::HandshakeKind;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A CA, and certificates it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// (certificate PEM, key PEM) for `host`, signed by this CA.
    fn issue(&self, host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA certificate as the Docker secret `name` in `dir`.
    fn write_secret(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(name), self.cert.pem()).unwrap();
    }
}

/// A self-signed certificate for `host`: (certificate PEM, key PEM).
fn self_signed(host: &str) -> (String, String) {
    let c = tls::make_cert(host);
    (c.cert_pem, c.key_pem)
}

/// An HTTPS backend answering `name=<name> sni=<sni> path=<path> host=<host>` (POST: the
/// body), `Connection: close` on `/close`; it records every handshake and request.
struct TlsBackend {
    addr: SocketAddr,
    /// Connections accepted (TCP).
    accepted: Arc<AtomicUsize>,
    /// Completed handshakes: the SNI the proxy sent and whether the session was resumed.
    handshakes: Arc<Mutex<Vec<(Option<String>, HandshakeKind)>>>,
    /// Paths of the requests that reached it.
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsBackend {
    async fn start(name: &str, (cert_pem, key_pem): (String, String)) -> TlsBackend {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, h, s, name) = (accepted.clone(), handshakes.clone(), seen.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let (acceptor, h, s, name) = (acceptor.clone(), h.clone(), s.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let conn = tls.get_ref().1;
                    let sni = conn.server_name().map(str::to_string);
                    h.lock().unwrap().push((sni.clone(), conn.handshake_kind().unwrap()));
                    let service = hyper::service::service_fn(move |req| {
                        tls_answer(req, name.clone(), sni.clone().unwrap_or("-".into()), s.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsBackend {
            addr,
            accepted,
            handshakes,
            seen,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn tls_answer(
    req: Request<Incoming>,
    name: String,
    sni: String,
    seen: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    seen.lock().unwrap().push(path.clone());
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let close = path == "/close";
    let body = if req.method() == hyper::Method::POST {
        req.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default()
    } else {
        Bytes::from(format!("name={name} sni={sni} path={path} host={host}"))
    };
    let mut resp = Response::new(Full::new(body));
    if close {
        resp.headers_mut().insert("connection", "close".parse().unwrap());
    }
    Ok(resp)
}

/// The snapshot the control plane makes of services with these labels, each with one task
/// at 127.0.0.1 (the port is the label's); secrets are files in `secrets_dir`.
fn snapshot_of(services: &[(&str, Vec<(&str, String)>)], secrets_dir: &Path) -> Snapshot {
    let network = NetworkInfo {
        id: "n1".into(),
        name: "appnet".into(),
    };
    let state = ClusterState {
        services: services
            .iter()
            .enumerate()
            .map(|(i, (name, labels))| ServiceInfo {
                id: name.to_string(),
                name: name.to_string(),
                created_at: format!("2026-12-0{}", i + 1),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect::<BTreeMap<_, _>>(),
                networks: vec!["n1".into()],
                vips: vec![],
            })
            .collect(),
        tasks: services
            .iter()
            .map(|(name, _)| TaskInfo {
                id: format!("{name}.1"),
                service_id: name.to_string(),
                running: true,
                draining: false,
                addresses: vec![("n1".into(), Ipv4Addr::LOCALHOST)],
            })
            .collect(),
        networks: vec![network],
        secrets: std::fs::read_dir(secrets_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
    };
    let mut assembler = Assembler::new(Options {
        service_cluster: None,
        secrets_dir: secrets_dir.to_path_buf(),
    });
    let out = assembler.assemble(&state);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    snapshot(1, out.http)
}

fn labels(hosts: &str, port: u16, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut l = vec![
        ("com.docker.lb.hosts", hosts.to_string()),
        ("com.docker.lb.port", port.to_string()),
    ];
    l.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    l
}

const SSL_BACKEND: &str = "com.docker.lb.ssl_backend";
const VERIFY: &str = "com.docker.lb.ssl_backend_tls_verify";
const CA: &str = "com.docker.lb.ssl_backend_ca";

#[tokio::test]
async fn without_verification_a_self_signed_backend_is_reached_over_tls_with_the_first_host_as_sni() {
    let secrets = tempfile::tempdir().unwrap();
    let backend = TlsBackend::start("secure", self_signed("whatever.invalid")).await;
    let plain = TestBackend::start("plain").await;
    let snap = snapshot_of(
        &[
            (
                "secure",
                labels(
                    "tls.example,alias.example",
                    backend.addr.port(),
                    &[(SSL_BACKEND, "true")],
                ),
            ),
            ("plain", labels("plain.example", plain.addr.port(), &[])),
        ],
        secrets.path(),
    );
    assert_eq!(
        snap.http
            .iter()
            .find(|r| r.service.name == "secure")
            .unwrap()
            .backend_tls,
        Some(BackendTls {
            server_name: "tls.example".into(),
            verify: BackendVerify::None
        })
    );
    let proxy = TestProxy::start(&snap).await;
    let c = client();

    let (status, _, body) = get(&c, proxy.http, "tls.example", "/a").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(field(&body, "name"), "secure");
    assert_eq!(field(&body, "sni"), "tls.example", "SNI is the service's first host");
    assert_eq!(field(&body, "host"), "tls.example");
    // Another of the service's hosts: the same name goes by SNI, the Host header is the client's.
    let (status, _, body) = get(&c, proxy.http, "alias.example", "/b").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(field(&body, "sni"), "tls.example");
    assert_eq!(field(&body, "host"), "alias.example");
    // A body (hyper's streaming path) goes over TLS too.
    let req = Request::post(format!("http://{}/echo", proxy.http))
        .header("host", "tls.example")
        .body(Full::new(Bytes::from_static(b"over tls")))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"over tls");

    // The plaintext route beside it stays plaintext (its backend speaks no TLS).
    let (status, _, body) = get(&c, proxy.http, "plain.example", "/p").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(field(&body, "name"), "plain");
    assert_eq!(plain.seen.lock().unwrap().as_slice(), ["/p"]);
    assert_eq!(backend.requests(), 3);
    assert!(
        backend
            .handshakes
            .lock()
            .unwrap()
            .iter()
            .all(|(sni, _)| sni.as_deref() == Some("tls.example")),
        "every handshake carried the SNI"
    );
}

#[tokio::test]
async fn with_verification_the_right_ca_passes_a_wrong_ca_or_name_is_502_and_nothing_reaches_the_task() {
    let secrets = tempfile::tempdir().unwrap();
    let (ca, other_ca) = (Ca::new("right"), Ca::new("other"));
    ca.write_secret(secrets.path(), "app-ca");
    other_ca.write_secret(secrets.path(), "other-ca");
    let good = TlsBackend::start("good", ca.issue("tls.example")).await;
    let wrong_issuer = TlsBackend::start("wrong-issuer", other_ca.issue("bad.example")).await;
    let wrong_name = TlsBackend::start("wrong-name", ca.issue("someone-else.example")).await;
    let self_signed_task = TlsBackend::start("self-signed", self_signed("nosys.example")).await;
    let verified = [(SSL_BACKEND, "true"), (VERIFY, "required"), (CA, "app-ca")];
    let snap = snapshot_of(
        &[
            ("good", labels("tls.example", good.addr.port(), &verified)),
            (
                "wrong-issuer",
                labels("bad.example", wrong_issuer.addr.port(), &verified),
            ),
            ("wrong-name", labels("name.example", wrong_name.addr.port(), &verified)),
            (
                "system-roots",
                labels(
                    "nosys.example",
                    self_signed_task.addr.port(),
                    &[(SSL_BACKEND, "true"), (VERIFY, "required")],
                ),
            ),
        ],
        secrets.path(),
    );
    let proxy = TestProxy::start(&snap).await;
    let c = client();

    let (status, _, body) = get(&c, proxy.http, "tls.example", "/ok").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(field(&body, "sni"), "tls.example");

    for (host, task) in [("bad.example", &wrong_issuer), ("name.example", &wrong_name)] {
        let (status, _, body) = get(&c, proxy.http, host, "/never").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{host}: {body}");
        assert!(
            task.accepted.load(Ordering::SeqCst) >= 1,
            "{host}: the handshake was tried"
        );
        assert_eq!(task.requests(), 0, "{host}: no request reached the task");
    }
    // Without a CA secret the system's roots are used: a self-signed task is refused.
    let (status, _, _) = get(&c, proxy.http, "nosys.example", "/never").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(self_signed_task.requests(), 0);
}

#[tokio::test]
async fn a_task_failing_verification_is_a_connect_failure_another_task_takes_the_request() {
    let secrets = tempfile::tempdir().unwrap();
    let ca = Ca::new("right");
    ca.write_secret(secrets.path(), "app-ca");
    let good = TlsBackend::start("good", ca.issue("tls.example")).await;
    let impostor = TlsBackend::start("impostor", self_signed("tls.example")).await;
    let mut route = route("svc", &["tls.example"], "/", &[]);
    route.backend_tls = Some(BackendTls {
        server_name: "tls.example".into(),
        verify: BackendVerify::Required {
            ca: Some(secrets.path().join("app-ca")),
        },
    });
    for (addr, id) in [(good.addr, "good"), (impostor.addr, "impostor")] {
        route.backends.push(interlock::model::Backend {
            addr,
            weight: 1,
            id: id.into(),
        });
    }
    let proxy = TestProxy::start(&snapshot(1, vec![route])).await;
    let c = client();
    // Two tasks picked at random: in 30 requests the impostor is tried (odds 2^-30 not).
    for i in 0..30 {
        let (status, _, body) = get(&c, proxy.http, "tls.example", &format!("/{i}")).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        assert_eq!(field(&body, "name"), "good");
    }
    assert!(impostor.accepted.load(Ordering::SeqCst) >= 1, "the impostor was tried");
    assert_eq!(impostor.requests(), 0);
}

#[tokio::test]
async fn connections_are_pooled_and_a_new_one_resumes_the_tls_session() {
    let secrets = tempfile::tempdir().unwrap();
    let backend = TlsBackend::start("secure", self_signed("tls.example")).await;
    let snap = snapshot_of(
        &[(
            "secure",
            labels("tls.example", backend.addr.port(), &[(SSL_BACKEND, "true")]),
        )],
        secrets.path(),
    );
    let proxy = TestProxy::start(&snap).await;
    let c = client();
    for i in 0..5 {
        let (status, _, body) = get(&c, proxy.http, "tls.example", &format!("/{i}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst),
        1,
        "one pooled TLS connection served all five"
    );
    // The backend closes its connection: the next one resumes the session.
    let (status, _, _) = get(&c, proxy.http, "tls.example", "/close").await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, _, _) = get(&c, proxy.http, "tls.example", "/after").await;
    assert_eq!(status, StatusCode::OK);
    let handshakes = backend.handshakes.lock().unwrap().clone();
    assert_eq!(handshakes.len(), 2, "{handshakes:?}");
    assert_eq!(handshakes[0].1, HandshakeKind::Full);
    assert_eq!(handshakes[1].1, HandshakeKind::Resumed, "session resumption");

    // A new snapshot with the same setting keeps the session cache: still resumed.
    proxy.apply(&Snapshot {
        version: 2,
        ..snap.clone()
    });
    let (status, _, _) = get(&c, proxy.http, "tls.example", "/close").await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, _, _) = get(&c, proxy.http, "tls.example", "/again").await;
    assert_eq!(status, StatusCode::OK);
    let handshakes = backend.handshakes.lock().unwrap().clone();
    assert_eq!(handshakes.last().unwrap().1, HandshakeKind::Resumed, "{handshakes:?}");

    // Another setting for the same task (a new first host): the pooled connection, made for
    // the old name, is not taken; a new one carries the new SNI.
    let before = backend.accepted.load(Ordering::SeqCst);
    let renamed = snapshot_of(
        &[(
            "secure",
            labels("new.example,tls.example", backend.addr.port(), &[(SSL_BACKEND, "true")]),
        )],
        secrets.path(),
    );
    proxy.apply(&Snapshot { version: 3, ..renamed });
    let (status, _, body) = get(&c, proxy.http, "tls.example", "/renamed").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(field(&body, "sni"), "new.example");
    assert_eq!(backend.accepted.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn a_plaintext_task_behind_ssl_backend_is_502_and_so_is_a_missing_ca_file() {
    let plain = TestBackend::start("plain").await;
    let mut r = route("svc", &["tls.example"], "/", &[&plain]);
    r.backend_tls = Some(BackendTls {
        server_name: "tls.example".into(),
        verify: BackendVerify::None,
    });
    let mut missing = route("missing", &["ca.example"], "/", &[&plain]);
    missing.backend_tls = Some(BackendTls {
        server_name: "ca.example".into(),
        verify: BackendVerify::Required {
            ca: Some("/nonexistent/ca.pem".into()),
        },
    });
    let proxy = TestProxy::start(&snapshot(1, vec![r, missing])).await;
    let c = client();
    let (status, _, _) = get(&c, proxy.http, "tls.example", "/x").await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "a task speaking no TLS fails the handshake"
    );
    let (status, _, _) = get(&c, proxy.http, "ca.example", "/x").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(plain.seen.lock().unwrap().is_empty(), "nothing was sent in plain text");
}

#[tokio::test]
async fn a_failed_verification_is_a_typed_retry_safe_error_naming_the_reason() {
    use interlock::l7::error::ProxyError;
    use interlock::l7::upstream::{Outgoing, Upstream};
    let secrets = tempfile::tempdir().unwrap();
    let (ca, other_ca) = (Ca::new("right"), Ca::new("other"));
    ca.write_secret(secrets.path(), "app-ca");
    let wrong_issuer = TlsBackend::start("wrong-issuer", other_ca.issue("tls.example")).await;
    let wrong_name = TlsBackend::start("wrong-name", ca.issue("other.example")).await;
    let upstream = Upstream::new(std::time::Duration::from_secs(1), std::time::Duration::from_secs(5));
    let spec = BackendTls {
        server_name: "tls.example".into(),
        verify: BackendVerify::Required {
            ca: Some(secrets.path().join("app-ca")),
        },
    };
    let target = upstream.tls_target(&spec).unwrap();
    assert!(
        Arc::ptr_eq(&target, &upstream.tls_target(&spec).unwrap()),
        "one target (one session cache) per setting"
    );
    for (backend, reason) in [
        (&wrong_issuer, "UnknownIssuer"),
        (&wrong_name, "certificate not valid for name \"tls.example\""),
    ] {
        let req = Request::get("/x")
            .header("host", "tls.example")
            .body(interlock::l7::empty_body())
            .unwrap();
        let Err((error, unsent)) = upstream
            .send(backend.addr, Outgoing::streamed_tls(req, target.clone()))
            .await
        else {
            panic!("verification must fail")
        };
        assert!(matches!(error, ProxyError::BackendTls { .. }), "{error:?}");
        assert!(error.to_string().contains(reason), "{error}");
        assert!(
            error.retry_safe() && unsent.is_some(),
            "the request comes back for another task"
        );
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    }
    let missing = BackendTls {
        server_name: "tls.example".into(),
        verify: BackendVerify::Required {
            ca: Some(secrets.path().join("absent")),
        },
    };
    let reason = upstream.tls_target(&missing).unwrap_err();
    assert!(reason.contains("absent"), "{reason}");
}
