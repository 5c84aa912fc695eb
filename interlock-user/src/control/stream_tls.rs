//! Mutual TLS for the leader -> follower snapshot stream: only holders of a certificate from
//! the stream's own CA may serve or receive routes.
//!
//! Material: one directory (in the stack, Docker secrets under /run/secrets) holding
//! `interlock-ca.pem` (the CA), `interlock-cert.pem` and `interlock-key.pem` (a certificate for
//! the name `interlock`, valid for both server and client auth, shared by leaders and
//! followers). `generate` makes a fresh set (`interlock certs`).
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::pem::{read_certs, read_key};

pub const CA_FILE: &str = "interlock-ca.pem";
pub const CERT_FILE: &str = "interlock-cert.pem";
pub const KEY_FILE: &str = "interlock-key.pem";
/// The name in the certificate, checked by followers whatever address they dial.
pub const PEER_NAME: &str = "interlock";

/// Both ends' TLS configurations, built from one directory.
#[derive(Clone)]
pub struct StreamTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl StreamTls {
    pub fn load(dir: &Path) -> Result<StreamTls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&dir.join(CA_FILE))? {
            roots
                .add(ca)
                .with_context(|| format!("{} is not a usable CA", dir.join(CA_FILE).display()))?;
        }
        let roots = Arc::new(roots);
        let chain = read_certs(&dir.join(CERT_FILE))?;
        let key = read_key(&dir.join(KEY_FILE))?;

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .context("building the follower verifier")?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .context("the stream certificate and key do not match")?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("the stream certificate and key do not match")?;
        Ok(StreamTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    pub fn peer_name() -> ServerName<'static> {
        ServerName::try_from(PEER_NAME).expect("a valid DNS name")
    }
}

/// The three PEM files of a fresh CA and a certificate for `interlock` signed by it.
pub struct Generated {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub fn generate() -> Result<Generated> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "interlock snapshot stream CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).context("signing the CA")?;

    let key = KeyPair::generate().context("generating the stream key")?;
    let mut params = CertificateParams::new(vec![PEER_NAME.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, PEER_NAME);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .context("signing the stream certificate")?;
    Ok(Generated {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

impl Generated {
    /// Writes the three files into `dir` (the key readable by its owner only).
    pub fn write(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join(CA_FILE), &self.ca)?;
        std::fs::write(dir.join(CERT_FILE), &self.cert)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join(KEY_FILE))?;
        std::io::Write::write_all(&mut f, self.key.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_loads_and_names_are_checked() {
        let dir = std::env::temp_dir().join(format!("ilt-stream-tls-{}", std::process::id()));
        generate().unwrap().write(&dir).unwrap();
        StreamTls::load(&dir).unwrap();
        std::fs::write(dir.join(KEY_FILE), "not a key").unwrap();
        let e = StreamTls::load(&dir).err().unwrap();
        assert!(format!("{e:#}").contains(KEY_FILE), "{e:#}");
        std::fs::remove_file(dir.join(CA_FILE)).unwrap();
        let e = StreamTls::load(&dir).err().unwrap();
        assert!(format!("{e:#}").contains(CA_FILE), "{e:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
