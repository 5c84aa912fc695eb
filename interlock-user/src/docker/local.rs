//! What the agent asks its own node's engine (works on workers too): which container it runs
//! in, which networks that container is on (and joining more), and the `docker_gwbridge`
//! address of each local task, which the host network namespace can reach directly.
use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use bollard::models::{NetworkConnectRequest, NetworkDisconnectRequest};
use bollard::query_parameters::ListContainersOptions;

use super::read::parse_cidr;
use super::DockerSource;
use crate::model::node::GatewayAddr;

/// The bridge every swarm container on an overlay also has an interface on, for egress.
pub const GWBRIDGE: &str = "docker_gwbridge";
const TASK_LABEL: &str = "com.docker.swarm.task.id";

impl DockerSource {
    /// Network name -> id of the networks `container` is attached to.
    pub async fn container_networks(&self, container: &str) -> Result<BTreeMap<String, String>> {
        let info = self
            .docker
            .inspect_container(container, None)
            .await
            .with_context(|| format!("inspecting container {container}"))?;
        Ok(info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, endpoint)| (name, endpoint.network_id.unwrap_or_default()))
            .collect())
    }

    pub async fn connect_network(&self, network: &str, container: &str) -> Result<()> {
        let request = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: None,
        };
        self.docker
            .connect_network(network, request)
            .await
            .with_context(|| format!("connecting container {container} to network {network}"))
    }

    pub async fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let request = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(false),
        };
        self.docker
            .disconnect_network(network, request)
            .await
            .with_context(|| format!("disconnecting container {container} from network {network}"))
    }

    /// Task id -> `docker_gwbridge` address, for the swarm tasks running on this node.
    pub async fn local_gateway_addrs(&self) -> Result<HashMap<String, GatewayAddr>> {
        let options = ListContainersOptions {
            filters: Some(HashMap::from([("label".to_string(), vec![TASK_LABEL.to_string()])])),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .context("listing local containers")?;
        let task_of: HashMap<String, String> = containers
            .into_iter()
            .filter_map(|c| Some((c.id?, c.labels?.remove(TASK_LABEL)?)))
            .collect();
        let bridge = self
            .docker
            .inspect_network(GWBRIDGE, None)
            .await
            .with_context(|| format!("inspecting {GWBRIDGE}"))?;
        Ok(bridge
            .containers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(container, endpoint)| {
                let task = task_of.get(&container)?.clone();
                let ip = parse_cidr(endpoint.ipv4_address.as_deref()?)?;
                let mac = parse_mac(endpoint.mac_address.as_deref()?)?;
                Some((task, GatewayAddr { ip, mac }))
            })
            .collect())
    }
}

/// The id of the container this process runs in, from the bind mounts Docker makes for it
/// (`/var/lib/docker/containers/<id>/hostname`); `None` outside a container.
pub fn own_container_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    container_id_from_mountinfo(&text)
}

fn container_id_from_mountinfo(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = &line[line.find("/containers/")? + "/containers/".len()..];
        let id = rest.split('/').next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
    })
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_container_id_in_mountinfo() {
        let id = "a8c9839c75e1df31254a62365d5f72758c1770b48289cfd726ac6ebe40dbd929";
        let text = format!(
            "600 599 0:52 / / rw,relatime - overlay overlay rw\n\
             611 600 254:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&text).as_deref(), Some(id));
        assert_eq!(
            container_id_from_mountinfo("600 599 0:52 / / rw - ext4 /dev/vda1 rw\n"),
            None
        );
        assert_eq!(
            container_id_from_mountinfo("1 2 3 /x/containers/short/hostname /h\n"),
            None
        );
    }

    #[test]
    fn parses_macs() {
        assert_eq!(parse_mac("02:42:ac:12:00:03"), Some([2, 0x42, 0xac, 0x12, 0, 3]));
        assert_eq!(parse_mac("02:42:ac:12:00"), None);
        assert_eq!(parse_mac("02:42:ac:12:00:03:04"), None);
        assert_eq!(parse_mac("zz:42:ac:12:00:03"), None);
    }
}
