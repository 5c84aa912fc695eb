//! The HTTPS front: peek at the ClientHello's SNI; hand passthrough routes to the proxy's
//! splice (`Proxy::passthrough`); terminate the rest with rustls, choosing the certificate by SNI from the
//! routes' PEM files (Docker secrets), reloaded when the files change.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncReadExt;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::linger::ClientStream;
use super::rewind::Rewind;
use super::sni::{self, Hello};
use crate::l7::proxy::Proxy;
use crate::model::{Snapshot, TlsMode};
use crate::pem::{read_certs, read_key};

/// How long a client may take to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Certificates by host name (`*.example.com` entries for wildcards).
#[derive(Debug, Default)]
struct CertMap {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    /// The files each entry was loaded from, with their modification times.
    files: Vec<(PathBuf, Option<SystemTime>)>,
}

#[derive(Debug, Default)]
struct Resolver {
    certs: ArcSwap<CertMap>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        let certs = self.certs.load();
        if let Some(c) = certs.by_host.get(&name) {
            return Some(c.clone());
        }
        // Longest wildcard suffix first.
        let mut best: Option<(&String, &Arc<CertifiedKey>)> = None;
        for (host, cert) in &certs.by_host {
            if let Some(suffix) = host.strip_prefix('*') {
                if name.ends_with(suffix) && best.is_none_or(|(b, _)| b.len() < host.len()) {
                    best = Some((host, cert));
                }
            }
        }
        best.map(|(_, c)| c.clone())
    }
}

/// The lowest TLS version the HTTPS listener accepts (`--tls-min-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
pub enum TlsMinVersion {
    #[value(name = "1.2")]
    #[serde(rename = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    #[serde(rename = "1.3")]
    Tls13,
}

/// What the HTTPS listener negotiates: the lowest version, and the cipher suites (rustls
/// names; empty: rustls's defaults, all of the provider's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicy {
    pub min_version: TlsMinVersion,
    pub ciphers: Vec<String>,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        TlsPolicy {
            min_version: crate::config::defaults::TLS_MIN_VERSION,
            ciphers: Vec::new(),
        }
    }
}

/// A suite's rustls name (`TLS13_AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`).
fn suite_name(suite: &rustls::SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

/// The cipher suites named (case-insensitively), in the order given; an unknown name is an
/// error naming it and listing the known ones. Empty: all of them.
pub fn cipher_suites(names: &[String]) -> anyhow::Result<Vec<rustls::SupportedCipherSuite>> {
    let all = rustls::crypto::ring::default_provider().cipher_suites;
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|s| suite_name(s).eq_ignore_ascii_case(name.trim()))
                .copied()
                .ok_or_else(|| {
                    let known: Vec<String> = all.iter().map(suite_name).collect();
                    anyhow::anyhow!("{name:?} is not a cipher suite (known: {})", known.join(", "))
                })
        })
        .collect()
}

/// The names as rustls spells them (checked by `cipher_suites`).
pub fn canonical_cipher_names(names: &[String]) -> anyhow::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    Ok(cipher_suites(names)?.iter().map(suite_name).collect())
}

/// Checks the version and suites together: some suite must serve an allowed version.
pub fn check_policy(policy: &TlsPolicy) -> anyhow::Result<()> {
    let suites = cipher_suites(&policy.ciphers)?;
    if policy.min_version == TlsMinVersion::Tls13 && !suites.iter().any(|s| s.version() == &rustls::version::TLS13) {
        anyhow::bail!("with tls_min_version 1.3 at least one TLS13_* suite is needed");
    }
    Ok(())
}

pub struct TlsFront {
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
    /// (host, cert file, key file) of the current snapshot.
    wanted: ArcSwap<Vec<(String, PathBuf, PathBuf)>>,
}

impl TlsFront {
    pub fn new() -> anyhow::Result<TlsFront> {
        TlsFront::with_policy(&TlsPolicy::default())
    }

    /// A front negotiating as `policy` says.
    pub fn with_policy(policy: &TlsPolicy) -> anyhow::Result<TlsFront> {
        check_policy(policy)?;
        let resolver = Arc::new(Resolver::default());
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: cipher_suites(&policy.ciphers)?,
            ..rustls::crypto::ring::default_provider()
        });
        let versions: &[&'static rustls::SupportedProtocolVersion] = match policy.min_version {
            TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsFront {
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            wanted: ArcSwap::from_pointee(Vec::new()),
        })
    }

    /// Takes the certificates a new snapshot names, and loads them.
    pub fn apply(&self, snapshot: &Snapshot) {
        let mut wanted = Vec::new();
        for r in &snapshot.http {
            if let TlsMode::Terminate { cert, key } = &r.tls {
                wanted.extend(r.hosts.iter().map(|h| (h.clone(), cert.clone(), key.clone())));
            }
        }
        self.wanted.store(Arc::new(wanted));
        self.reload();
    }

    /// Reloads the certificates when a file changed (call periodically).
    pub fn reload_if_changed(&self) {
        let changed = self
            .resolver
            .certs
            .load()
            .files
            .iter()
            .any(|(path, mtime)| modified(path) != *mtime);
        if changed {
            tracing::info!("certificate files changed; reloading");
            self.reload();
        }
    }

    fn reload(&self) {
        let wanted = self.wanted.load();
        let mut map = CertMap::default();
        let mut loaded: HashMap<(PathBuf, PathBuf), Option<Arc<CertifiedKey>>> = HashMap::new();
        for (host, cert, key) in wanted.iter() {
            let entry = loaded
                .entry((cert.clone(), key.clone()))
                .or_insert_with(|| match load(cert, key) {
                    Ok(c) => Some(Arc::new(c)),
                    Err(e) => {
                        tracing::error!(host = %host, "TLS certificate not loaded: {e:#}");
                        None
                    }
                });
            if let Some(c) = entry {
                map.by_host.insert(host.clone(), c.clone());
            }
            for path in [cert, key] {
                map.files.push((path.clone(), modified(path)));
            }
        }
        self.resolver.certs.store(Arc::new(map));
    }

    /// Takes a new client connection: passthrough (handled here, returns `None`) or a
    /// terminated TLS stream for the HTTP server.
    pub async fn accept(
        &self,
        mut stream: ClientStream,
        peer: SocketAddr,
        proxy: &Arc<Proxy>,
    ) -> Option<TlsStream<Rewind<ClientStream>>> {
        let mut buf = Vec::with_capacity(2048);
        let sni = loop {
            match sni::parse(&buf) {
                Hello::Complete(sni) => break sni,
                Hello::Invalid(why) => {
                    tracing::debug!(%peer, "not a TLS ClientHello: {why}");
                    return None;
                }
                Hello::Incomplete => {}
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(HELLO_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        if let Some(name) = &sni {
            let live = proxy.table();
            if let Some(route) = live.table.passthrough_backends(name) {
                let backends = live.backends_of(&route);
                drop(live);
                proxy.passthrough(stream, buf, &backends, peer).await;
                return None;
            }
        }
        match self.acceptor.accept(Rewind::new(buf, stream)).await {
            Ok(tls) => Some(tls),
            Err(e) => {
                tracing::debug!(%peer, sni = sni.as_deref().unwrap_or("-"), "TLS handshake failed: {e}");
                None
            }
        }
    }
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    use anyhow::Context;
    let chain = read_certs(cert)?;
    let key = read_key(key)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).context("unsupported private key type")?;
    Ok(CertifiedKey::new(chain, signing))
}
