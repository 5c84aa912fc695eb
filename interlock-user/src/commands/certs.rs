//! `interlock certs`: a fresh CA and certificate for the leader -> follower snapshot stream,
//! written to a directory or created as the Docker secrets `deploy/stack.yml` mounts.
use std::path::PathBuf;

use anyhow::{bail, Result};

use interlock::control::stream_tls::{self, CA_FILE, CERT_FILE, KEY_FILE};
use interlock::docker::DockerSource;

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Write interlock-ca.pem, interlock-cert.pem and interlock-key.pem into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Create them as Docker secrets of the same names (kept if they exist already).
    #[arg(long)]
    pub docker_secrets: bool,
}

pub async fn run(args: CertsArgs) -> Result<()> {
    if args.out.is_none() && !args.docker_secrets {
        bail!("say where the certificates go: --out DIR and/or --docker-secrets");
    }
    let generated = stream_tls::generate()?;
    if let Some(dir) = &args.out {
        generated.write(dir)?;
        println!("wrote {CA_FILE}, {CERT_FILE}, {KEY_FILE} into {}", dir.display());
    }
    if args.docker_secrets {
        let source = DockerSource::connect().await?;
        let existing = source.secret_names().await?;
        let wanted = [CA_FILE, CERT_FILE, KEY_FILE];
        let present = wanted.iter().filter(|n| existing.iter().any(|e| e == *n)).count();
        if present == wanted.len() {
            println!("the secrets {} exist already: kept", wanted.join(", "));
            return Ok(());
        }
        if present > 0 {
            bail!(
                "only some of the secrets {} exist: remove them (`docker secret rm`) and run this again",
                wanted.join(", ")
            );
        }
        for (name, pem) in [
            (CA_FILE, &generated.ca),
            (CERT_FILE, &generated.cert),
            (KEY_FILE, &generated.key),
        ] {
            source.create_secret(name, pem.as_bytes()).await?;
        }
        println!("created the secrets {}", wanted.join(", "));
    }
    Ok(())
}
