//! Reading PEM files: certificates and private keys, for the HTTPS front (`l7::front::tls`)
//! and the snapshot stream's mutual TLS (`control::stream_tls`).
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates of a PEM file; an error names the file, also when it holds none.
pub fn read_certs(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use anyhow::Context;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(chain)
}

/// The private key of a PEM file.
pub fn read_key(path: &std::path::Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    use anyhow::Context;
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("reading the private key {}", path.display()))
}
