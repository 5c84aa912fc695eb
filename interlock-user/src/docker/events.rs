//! The engine's event stream, reduced to "which part of the cluster state changed".
//! Docker emits no task events: the control loop also polls tasks.
use std::collections::HashMap;

use super::DockerSource;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// Parts of the cluster state to read again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dirty {
    pub services: bool,
    pub tasks: bool,
    pub networks: bool,
    pub secrets: bool,
}

impl Dirty {
    pub const ALL: Dirty = Dirty {
        services: true,
        tasks: true,
        networks: true,
        secrets: true,
    };

    pub fn any(&self) -> bool {
        self.services || self.tasks || self.networks || self.secrets
    }

    pub fn merge(&mut self, other: Dirty) {
        self.services |= other.services;
        self.tasks |= other.tasks;
        self.networks |= other.networks;
        self.secrets |= other.secrets;
    }

    /// What an event of `kind` with `action` invalidates.
    pub fn from_event(kind: &str, action: &str) -> Dirty {
        match kind {
            "service" => Dirty {
                services: true,
                tasks: true,
                ..Dirty::default()
            },
            "network" => Dirty {
                networks: true,
                services: true,
                tasks: true,
                ..Dirty::default()
            },
            "secret" => Dirty {
                secrets: true,
                ..Dirty::default()
            },
            "node" => Dirty {
                tasks: true,
                ..Dirty::default()
            },
            // Container starts, deaths and health changes move tasks in and out of `running`.
            "container" if !action.starts_with("exec_") => Dirty {
                tasks: true,
                ..Dirty::default()
            },
            _ => Dirty::default(),
        }
    }
}

/// Forwards relevant events as `Dirty` until the stream ends or fails; returns why it ended.
pub async fn watch_events(source: &DockerSource, tx: mpsc::Sender<Dirty>) -> String {
    let docker = source.docker.clone();
    let types = ["service", "network", "container", "node", "secret"]
        .map(String::from)
        .to_vec();
    let options = EventsOptions {
        filters: Some(HashMap::from([("type".to_string(), types)])),
        ..Default::default()
    };
    let mut stream = docker.events(Some(options));
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                let kind = event.typ.map(|t| t.to_string()).unwrap_or_default();
                let dirty = Dirty::from_event(&kind, event.action.as_deref().unwrap_or_default());
                if dirty.any() && tx.send(dirty).await.is_err() {
                    return "the control loop stopped".into();
                }
            }
            Err(e) => return format!("event stream failed: {e}"),
        }
    }
    "event stream ended".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_invalidate_what_they_touch() {
        assert!(Dirty::from_event("service", "update").services);
        assert!(!Dirty::from_event("container", "die").services);
        assert!(Dirty::from_event("container", "die").tasks);
        assert!(!Dirty::from_event("container", "exec_start: sh").any());
        assert!(Dirty::from_event("secret", "create").secrets);
        assert!(!Dirty::from_event("image", "pull").any());
        let mut d = Dirty::default();
        d.merge(Dirty::from_event("network", "create"));
        assert!(d.networks && d.services && !d.secrets);
    }
}
