//! Workload identity on Kubernetes. A pod's cgroups are new for every pod, so an identity there
//! is chosen by what the pod is: its namespace, labels, service account, container name. This
//! crate watches the pods of this node on the API server, finds the cgroup kubelet made for each
//! container of a selected pod (`layout`), and says which identity it belongs to and which
//! workload its records carry. The agent puts those cgroups into the kernel's watched map.
mod layout;
mod selector;
mod watch;

pub use layout::{KubeletCgroups, Runtime, parse_container_id};
pub use selector::LabelSelector;
pub use watch::{ApiHealth, KubeError, KubeSettings, PodWatch, Snapshot, WatchedContainer};

/// Which pods, and which of their containers, an identity covers: every field given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSelector {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub service_account: Option<String>,
    /// Only this container of the selected pods (default: all of them).
    pub container: Option<String>,
}

impl PodSelector {
    /// The short form of the command line: `key=value` pairs separated by `;`, the keys
    /// `namespace`, `labels` (a label selector, which may hold `=` and `,`), `service-account`
    /// and `container`, e.g. `namespace=agents;labels=app=claude,tier in (ops)`.
    pub fn parse_flag(spec: &str) -> Result<Self, String> {
        let mut selector = Self::default();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value"))?;
            let value = value.trim();
            match key.trim() {
                "namespace" => selector.namespace = Some(value.to_string()),
                "labels" => selector.labels = LabelSelector::parse(value)?,
                "service-account" | "service_account" => {
                    selector.service_account = Some(value.to_string());
                }
                "container" => selector.container = Some(value.to_string()),
                other => {
                    return Err(format!(
                        "{other:?}: expected namespace, labels, service-account or container"
                    ));
                }
            }
        }
        if selector == Self::default() {
            return Err(
                "selects every pod of the node: give at least one of namespace, labels, \
                        service-account or container"
                    .into(),
            );
        }
        Ok(selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_short_form() {
        let s = PodSelector::parse_flag(
            "namespace=agents; labels=app=claude,tier in (ops); service-account=claude; container=agent",
        )
        .unwrap();
        assert_eq!(s.namespace.as_deref(), Some("agents"));
        assert_eq!(s.service_account.as_deref(), Some("claude"));
        assert_eq!(s.container.as_deref(), Some("agent"));
        assert_eq!(
            s.labels,
            LabelSelector::parse("app=claude,tier in (ops)").unwrap()
        );
        for (bad, why) in [
            ("", "every pod"),
            ("namespace", "key=value"),
            ("pod=x", "expected namespace"),
            ("labels=app in x", "parentheses"),
        ] {
            let e = PodSelector::parse_flag(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
