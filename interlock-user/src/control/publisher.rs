//! Turns cluster states into versioned snapshots; publishes only when routing changed and
//! logs each service problem once (not on every poll).
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::assemble::{Assembler, ClusterState, Options};
use crate::model::{Snapshot, SnapshotTx};

pub struct Publisher {
    assembler: Assembler,
    tx: SnapshotTx,
    logged: BTreeSet<String>,
}

impl Publisher {
    pub fn new(options: Options, tx: SnapshotTx) -> Publisher {
        Publisher {
            assembler: Assembler::new(options),
            tx,
            logged: BTreeSet::new(),
        }
    }

    /// Assembles `state`; publishes a new version when the routes differ from the current
    /// snapshot. Returns the version now published.
    pub fn publish(&mut self, state: &ClusterState) -> u64 {
        let assembly = self.assembler.assemble(state);
        let messages: BTreeSet<String> = assembly.errors.iter().map(|e| e.to_string()).collect();
        for message in messages.difference(&self.logged) {
            tracing::error!("{message}");
        }
        for warning in &assembly.warnings {
            let line = warning.to_string();
            if !self.logged.contains(&line) {
                tracing::warn!("{line}");
            }
        }
        self.logged = messages
            .into_iter()
            .chain(assembly.warnings.iter().map(|w| w.to_string()))
            .collect();

        let mut version = 0;
        self.tx.send_if_modified(|current| {
            let unchanged = current.http == assembly.http
                && current.l4 == assembly.l4
                && current.networks == assembly.networks
                && current.limits_hit == assembly.limits_hit;
            if unchanged && current.version > 0 {
                version = current.version;
                return false;
            }
            version = current.version + 1;
            *current = Arc::new(Snapshot {
                version,
                http: assembly.http.clone(),
                l4: assembly.l4.clone(),
                networks: assembly.networks.clone(),
                limits_hit: assembly.limits_hit.clone(),
            });
            true
        });
        version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::assemble::{NetworkInfo, ServiceInfo};

    fn state(host: &str) -> ClusterState {
        ClusterState {
            services: vec![ServiceInfo {
                id: "s".into(),
                name: "web".into(),
                created_at: "1".into(),
                labels: [("com.docker.lb.hosts", host), ("com.docker.lb.port", "80")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                networks: vec!["n".into()],
                vips: vec![],
            }],
            networks: vec![NetworkInfo {
                id: "n".into(),
                name: "net".into(),
            }],
            ..ClusterState::default()
        }
    }

    #[test]
    fn versions_grow_only_on_change() {
        let (tx, rx) = crate::control::snapshot_channel();
        let mut p = Publisher::new(Options::default(), tx);
        assert_eq!(
            p.publish(&ClusterState::default()),
            1,
            "the first state is published even when empty"
        );
        assert_eq!(p.publish(&state("a.example")), 2);
        assert_eq!(p.publish(&state("a.example")), 2, "same routes: no new version");
        assert_eq!(p.publish(&state("b.example")), 3);
        assert_eq!(rx.borrow().version, 3);
        assert_eq!(rx.borrow().http[0].backends.len(), 0);
    }
}
