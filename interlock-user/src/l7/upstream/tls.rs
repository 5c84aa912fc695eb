//! TLS to the backends (`com.docker.lb.ssl_backend`): one rustls client configuration per
//! route setting (`BackendTls`), kept across snapshots so its session cache lives on and
//! reconnects to a task resume their TLS session instead of a full handshake.
//!
//! `ssl_backend_tls_verify=none` (Interlock's default) takes any certificate (handshake
//! signatures are still checked: the connection is encrypted to whoever holds the key, not
//! authenticated). `required` checks the chain and the name against the CA secret's
//! certificates (`ssl_backend_ca`), or the system's roots without one.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::model::{BackendTls, BackendVerify};

/// What connecting to one route's backends over TLS takes.
pub struct TlsTarget {
    /// Tells pooled connections apart: one made for this target serves only it.
    pub(super) id: u64,
    pub(super) server_name: ServerName<'static>,
    pub(super) connector: TlsConnector,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("id", &self.id)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsTarget {
    /// The name sent by SNI (and verified).
    pub fn server_name(&self) -> String {
        self.server_name.to_str().into_owned()
    }
}

/// The targets built so far, by setting.
#[derive(Default)]
pub(super) struct TlsTargets {
    by_spec: Mutex<HashMap<BackendTls, Arc<TlsTarget>>>,
}

impl TlsTargets {
    /// The target for `spec`, built on first use (reading its CA file). A failure is not
    /// kept: the next request tries again (a secret mounted late, a file fixed).
    pub(super) fn get(&self, spec: &BackendTls) -> Result<Arc<TlsTarget>, String> {
        if let Some(t) = self.by_spec.lock().unwrap_or_else(|e| e.into_inner()).get(spec) {
            return Ok(t.clone());
        }
        let target = Arc::new(build(spec)?);
        Ok(self
            .by_spec
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(spec.clone())
            .or_insert(target)
            .clone())
    }

    /// Forgets the settings no route has any more; returns the ids of the targets kept.
    pub(super) fn retain(&self, live: impl Fn(&BackendTls) -> bool) -> Vec<u64> {
        let mut by_spec = self.by_spec.lock().unwrap_or_else(|e| e.into_inner());
        by_spec.retain(|spec, _| live(spec));
        by_spec.values().map(|t| t.id).collect()
    }
}

fn build(spec: &BackendTls) -> Result<TlsTarget, String> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let server_name = ServerName::try_from(spec.server_name.clone())
        .map_err(|e| format!("{:?} cannot be sent by SNI: {e}", spec.server_name))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match &spec.verify {
        BackendVerify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.signature_verification_algorithms)))
            .with_no_client_auth(),
        BackendVerify::Required { ca } => {
            let mut roots = RootCertStore::empty();
            match ca {
                Some(path) => {
                    for cert in crate::pem::read_certs(path).map_err(|e| format!("{e:#}"))? {
                        roots
                            .add(cert)
                            .map_err(|e| format!("a CA certificate in {}: {e}", path.display()))?;
                    }
                }
                None => {
                    let (added, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                    if added == 0 {
                        return Err("no system CA certificates found to verify the backends against (set \
                                    SSL_CERT_FILE in the agent, or name a CA secret with \
                                    com.docker.lb.ssl_backend_ca)"
                            .into());
                    }
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    // No ALPN: the backends are spoken to in HTTP/1.1, as nginx's `proxy_pass https://`.
    Ok(TlsTarget {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        server_name,
        connector: TlsConnector::from(Arc::new(config)),
    })
}

/// `ssl_backend_tls_verify=none`: every certificate is taken; the handshake's signatures are
/// still checked with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
