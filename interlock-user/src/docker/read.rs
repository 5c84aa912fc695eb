//! Reads the parts of the cluster state the routing model needs.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use bollard::query_parameters::{ListNetworksOptions, ListSecretsOptions, ListServicesOptions};
use bollard::Docker;
use serde::Deserialize;

use super::events::Dirty;
use super::raw::{self, Endpoint};
use crate::model::assemble::{ClusterState, NetworkInfo, ServiceInfo, TaskInfo};

/// A connection to the engine (bollard for the typed API, `raw` for tasks).
#[derive(Clone)]
pub struct DockerSource {
    pub(super) docker: Docker,
    endpoint: Endpoint,
    version: String,
}

impl DockerSource {
    /// Connects per DOCKER_HOST (default unix socket) and negotiates the API version.
    pub async fn connect() -> Result<DockerSource> {
        let endpoint = Endpoint::from_env()?;
        let docker = Docker::connect_with_defaults().context("connecting to the Docker engine")?;
        let docker = docker
            .negotiate_version()
            .await
            .context("negotiating the Docker API version")?;
        let v = docker.client_version();
        let version = format!("{}.{}", v.major_version, v.minor_version);
        Ok(DockerSource {
            docker,
            endpoint,
            version,
        })
    }

    /// True when this engine is a swarm manager (it can list services and tasks).
    pub async fn is_manager(&self) -> Result<bool> {
        let info = self.docker.info().await.context("docker info")?;
        Ok(info.swarm.and_then(|s| s.control_available).unwrap_or(false))
    }

    /// Re-reads the dirty parts of `state` in place.
    pub async fn refresh(&self, state: &mut ClusterState, dirty: Dirty) -> Result<()> {
        if dirty.networks {
            state.networks = self.networks().await?;
        }
        if dirty.secrets {
            state.secrets = self.secrets().await?;
        }
        if dirty.services {
            state.services = self.services().await?;
        }
        if dirty.tasks {
            state.tasks = self.tasks().await?;
        }
        Ok(())
    }

    async fn services(&self) -> Result<Vec<ServiceInfo>> {
        let services = self
            .docker
            .list_services(None::<ListServicesOptions>)
            .await
            .context("listing services")?;
        Ok(services
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                let networks = spec
                    .task_template
                    .and_then(|t| t.networks)
                    .or(spec.networks)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|n| n.target)
                    .collect();
                let vips = s
                    .endpoint
                    .and_then(|e| e.virtual_ips)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|v| Some((v.network_id?, parse_cidr(&v.addr?)?)))
                    .collect();
                Some(ServiceInfo {
                    id: s.id?,
                    name: spec.name.unwrap_or_default(),
                    created_at: s.created_at.map(|t| t.to_string()).unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
                    networks,
                    vips,
                })
            })
            .collect())
    }

    async fn tasks(&self) -> Result<Vec<TaskInfo>> {
        // {"desired-state":["running","shutdown"]}, URL-encoded: the tasks swarm is stopping
        // too, which may still run (see `TaskInfo::draining`).
        let path = "/tasks?filters=%7B%22desired-state%22%3A%5B%22running%22%2C%22shutdown%22%5D%7D";
        let tasks: Vec<RawTask> = raw::get_json(&self.endpoint, &self.version, path)
            .await
            .context("listing tasks")?;
        Ok(tasks.into_iter().map(RawTask::into_info).collect())
    }

    async fn networks(&self) -> Result<Vec<NetworkInfo>> {
        let networks = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .context("listing networks")?;
        Ok(networks
            .into_iter()
            .filter_map(|n| {
                Some(NetworkInfo {
                    id: n.id?,
                    name: n.name?,
                })
            })
            .collect())
    }

    async fn secrets(&self) -> Result<std::collections::BTreeSet<String>> {
        let secrets = self
            .docker
            .list_secrets(None::<ListSecretsOptions>)
            .await
            .context("listing secrets")?;
        Ok(secrets.into_iter().filter_map(|s| s.spec?.name).collect())
    }
}

/// `10.0.1.5/24` -> 10.0.1.5 (IPv6 addresses are not routed yet).
pub(super) fn parse_cidr(addr: &str) -> Option<Ipv4Addr> {
    addr.split('/').next()?.parse().ok()
}

/// The fields of `GET /tasks` we use (bollard's model lacks `NetworksAttachments`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(default)]
    status: RawStatus,
    #[serde(default)]
    desired_state: String,
    #[serde(default)]
    networks_attachments: Vec<RawAttachment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawStatus {
    #[serde(default)]
    state: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAttachment {
    network: RawNetwork,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawNetwork {
    #[serde(rename = "ID")]
    id: String,
}

impl RawTask {
    fn into_info(self) -> TaskInfo {
        TaskInfo {
            running: self.status.state == "running" && self.desired_state == "running",
            draining: self.status.state == "running" && self.desired_state == "shutdown",
            addresses: self
                .networks_attachments
                .into_iter()
                .filter_map(|a| Some((a.network.id, a.addresses.iter().find_map(|c| parse_cidr(c))?)))
                .collect(),
            id: self.id,
            service_id: self.service_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_task_from_engine_json() {
        let json = r#"[{"ID":"t1","ServiceID":"s1","Status":{"State":"running"},"DesiredState":"running",
            "NetworksAttachments":[{"Network":{"ID":"n1","Spec":{}},"Addresses":["10.0.1.5/24"]}]},
            {"ID":"t2","ServiceID":"s1","Status":{"State":"preparing"},"DesiredState":"running"},
            {"ID":"t3","ServiceID":"s1","Status":{"State":"running"},"DesiredState":"shutdown"}]"#;
        let tasks: Vec<RawTask> = serde_json::from_str(json).unwrap();
        let infos: Vec<TaskInfo> = tasks.into_iter().map(RawTask::into_info).collect();
        assert!(infos[0].running);
        assert_eq!(infos[0].addresses, vec![("n1".to_string(), Ipv4Addr::new(10, 0, 1, 5))]);
        assert!(!infos[1].running);
        assert!(infos[1].addresses.is_empty());
        assert!(!infos[2].running && infos[2].draining);
        assert!(!infos[0].draining && !infos[1].draining);
    }
}
