//! Creating Docker secrets (`interlock certs --docker-secrets`).
use anyhow::{Context, Result};
use base64::Engine;
use bollard::models::SecretSpec;

use super::DockerSource;

impl DockerSource {
    /// The names of the secrets the engine has.
    pub async fn secret_names(&self) -> Result<Vec<String>> {
        Ok(self
            .docker
            .list_secrets(None::<bollard::query_parameters::ListSecretsOptions>)
            .await
            .context("listing secrets")?
            .into_iter()
            .filter_map(|s| s.spec?.name)
            .collect())
    }

    pub async fn create_secret(&self, name: &str, data: &[u8]) -> Result<()> {
        let spec = SecretSpec {
            name: Some(name.to_string()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        self.docker
            .create_secret(spec)
            .await
            .with_context(|| format!("creating the secret {name}"))?;
        Ok(())
    }
}
