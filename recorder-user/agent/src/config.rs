//! The agent's TOML configuration. Command-line flags add to it (identities) or override it
//! (everything else). Unknown keys are errors, so a typo never silently disables something.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use recorder_kubernetes::{LabelSelector, PodSelector};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid identity {spec:?}: {why}")]
    Identity { spec: String, why: String },
    #[error("{message}")]
    Invalid { message: String },
}

/// The whole file. Every section is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Host name put in every record (default: the kernel's host name).
    pub host: Option<String>,
    /// JSON Lines output file.
    pub jsonl: Option<PathBuf>,
    /// Address for Prometheus `/metrics` and `/readyz`.
    pub metrics_addr: Option<SocketAddr>,
    /// Kernel ring buffer size in KiB (a power of two, at least 4).
    pub ring_buffer_kib: Option<u32>,
    /// Which processes carry the OpenSSL probes: `all` (default) or `watched`.
    pub tls_probes: Option<TlsProbes>,
    /// The kernel BTF the struct offsets are read from (default `/sys/kernel/btf/vmlinux`).
    pub btf: Option<PathBuf>,
    /// Where socket data is captured: `auto` (default: the socket tracepoints where the kernel
    /// has them) or `syscalls` (the system-call tracepoints, as on kernels before 6.3).
    pub socket_capture: Option<SocketCaptureSetting>,
    /// Watched identities.
    #[serde(rename = "identity")]
    pub identities: Vec<IdentityConfig>,
    /// `[kubernetes]`: where the API server is, for identities selected by pod.
    pub kubernetes: KubernetesConfig,
    /// `[collector]`: ship records to a remote collector through a local spool.
    pub collector: Option<CollectorConfig>,
    /// `[redaction]`: secrets taken out of records before they are written (on by default).
    pub redaction: recorder_redact::RedactionConfig,
    /// `[approval]`: actions held until an operator approves them (off unless rules are given).
    pub approval: recorder_approval::ApprovalConfig,
}

/// Which processes the OpenSSL uprobes are attached for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsProbes {
    /// Every process that maps a libssl file (a uprobe is planted in each): no watched
    /// process's first TLS bytes are ever missed, but every TLS user on the host, watched or
    /// not, takes a trap on each `SSL_read`/`SSL_write`.
    #[default]
    All,
    /// Only watched processes, attached as each maps libssl: unwatched processes never trap,
    /// but a short-lived client can send its first bytes before its probes are in place (a
    /// `tls_hooked_late` or `tls_unhooked` notice says so).
    Watched,
}

impl std::str::FromStr for TlsProbes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            "watched" => Ok(Self::Watched),
            _ => Err(format!("{s:?}: expected all or watched")),
        }
    }
}

/// Where socket data is captured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketCaptureSetting {
    /// The socket tracepoints `sock_send_length`/`sock_recv_length` where the kernel has them
    /// (Linux 6.3 and later): a process that is not watched pays one map lookup per socket
    /// operation. The system-call tracepoints otherwise.
    #[default]
    Auto,
    /// The system-call tracepoints, whatever the kernel offers: every system call of every
    /// process on the host takes the slow path. For comparison and for testing the fallback.
    Syscalls,
}

impl std::str::FromStr for SocketCaptureSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "syscalls" => Ok(Self::Syscalls),
            _ => Err(format!("{s:?}: expected auto or syscalls")),
        }
    }
}

/// `[collector]`: where to send, with which certificate, and where to spool meanwhile.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// `https://HOST:PORT`, or a list of them: the collectors of a group, tried in order.
    #[serde(default)]
    pub url: Urls,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Spool directory (write-ahead log of records not yet acknowledged by the collector).
    pub spool: Option<PathBuf>,
    /// Spool size bound in MiB.
    pub spool_max_mib: Option<u64>,
}

/// One collector URL or several (`url = "https://a:7443"` or `url = ["https://a:7443",
/// "https://b:7443"]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Urls {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Urls {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Urls::None => Vec::new(),
            Urls::One(u) => vec![u],
            Urls::Many(v) => v,
        }
    }
}

/// `[kubernetes]`: this node's pods come from the API server (only read when an identity has a
/// `kubernetes` selector).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// This node's name, as the API server knows it (default: `$NODE_NAME`, which a DaemonSet
    /// sets from the downward API).
    pub node: Option<String>,
    /// A kubeconfig file (default: the pod's service account when in a cluster, then
    /// `$KUBECONFIG` and `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Pod labels copied onto every record of a selected pod, as `k8s.pod.label.<key>`.
    pub copy_labels: Vec<String>,
}

/// `[[identity]]`: a name and where its processes run. Exactly one of `cgroup`, `unit` or
/// `kubernetes`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub name: String,
    /// A cgroup v2 directory: absolute, or relative to the cgroup v2 mount.
    pub cgroup: Option<String>,
    /// A systemd unit, e.g. `claude-agent.service`.
    pub unit: Option<String>,
    /// The pods of this node it covers, e.g. `{ namespace = "agents", labels = "app=claude" }`.
    pub kubernetes: Option<PodSelectorConfig>,
}

/// `kubernetes = { ... }` of an identity: every field given must hold for a pod (and container)
/// to be selected.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PodSelectorConfig {
    pub namespace: Option<String>,
    /// A label selector as `kubectl get -l` takes it: `app=claude,tier in (ops,batch),!debug`.
    pub labels: Option<String>,
    pub service_account: Option<String>,
    /// Only this container of the selected pods (default: all of them).
    pub container: Option<String>,
}

impl PodSelectorConfig {
    fn selector(&self) -> Result<PodSelector, String> {
        let selector = PodSelector {
            namespace: self.namespace.clone(),
            labels: match &self.labels {
                Some(text) => LabelSelector::parse(text)?,
                None => LabelSelector::default(),
            },
            service_account: self.service_account.clone(),
            container: self.container.clone(),
        };
        if selector == PodSelector::default() {
            return Err(
                "selects every pod of the node: give at least one of namespace, \
                        labels, service_account or container"
                    .into(),
            );
        }
        Ok(selector)
    }
}

/// Where an identity's processes live, as configured (resolved to cgroup ids by `identity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSpec {
    Path(String),
    Unit(String),
    /// Containers of this node's pods, found through the API server.
    Kubernetes(PodSelector),
}

impl IdentityConfig {
    /// Parses the `--identity NAME=CGROUP` flag (`CGROUP` may be `unit:NAME.service`, or
    /// `k8s:` and a pod selector's short form, `k8s:namespace=agents;labels=app=claude`).
    pub fn from_flag(spec: &str) -> Result<Self, ConfigError> {
        let err = |why: &str| ConfigError::Identity {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        let (name, target) = spec.split_once('=').ok_or_else(|| {
            err(
                "expected NAME=CGROUP, e.g. claude=/sys/fs/cgroup/agents/claude, \
                 claude=unit:claude.service or claude=k8s:namespace=agents;labels=app=claude",
            )
        })?;
        let mut identity = IdentityConfig {
            name: name.to_string(),
            cgroup: None,
            unit: None,
            kubernetes: None,
        };
        if let Some(unit) = target.strip_prefix("unit:") {
            identity.unit = Some(unit.to_string());
        } else if let Some(selector) = target.strip_prefix("k8s:") {
            let selector = PodSelector::parse_flag(selector).map_err(|why| err(&why))?;
            identity.kubernetes = Some(PodSelectorConfig {
                namespace: selector.namespace,
                labels: (!selector.labels.is_empty()).then(|| selector.labels.to_string()),
                service_account: selector.service_account,
                container: selector.container,
            });
        } else {
            identity.cgroup = Some(target.to_string());
        }
        identity.spec().map_err(|e| match e {
            ConfigError::Identity { why, .. } => err(&why),
            other => other,
        })?;
        Ok(identity)
    }

    /// Checks the entry and says where its processes live.
    pub fn spec(&self) -> Result<CgroupSpec, ConfigError> {
        let err = |why: &str| ConfigError::Identity {
            spec: self.name.clone(),
            why: why.to_string(),
        };
        if self.name.is_empty() {
            return Err(err("the identity name is empty"));
        }
        if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            return Err(err(
                "an identity name may only hold letters, digits and - _ . @",
            ));
        }
        match (&self.cgroup, &self.unit, &self.kubernetes) {
            (Some(path), None, None) if !path.is_empty() => Ok(CgroupSpec::Path(path.clone())),
            (None, Some(unit), None) if !unit.is_empty() => Ok(CgroupSpec::Unit(unit.clone())),
            (None, None, Some(pods)) => pods
                .selector()
                .map(CgroupSpec::Kubernetes)
                .map_err(|why| err(&why)),
            (None, None, None) => Err(err("give a cgroup, a unit or a kubernetes selector")),
            (Some(p), None, None) if p.is_empty() => Err(err("the cgroup is empty")),
            (None, Some(u), None) if u.is_empty() => Err(err("the unit is empty")),
            _ => Err(err("give one of cgroup, unit or kubernetes, not several")),
        }
    }
}

impl AgentConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text; the error is a human-readable message with the position.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        for identity in &config.identities {
            identity.spec().map_err(|e| e.to_string())?;
        }
        if let Some(kib) = config.ring_buffer_kib {
            check_ring_buffer_kib(kib)?;
        }
        Ok(config)
    }
}

/// The kernel wants a power-of-two multiple of the page size.
pub(crate) fn check_ring_buffer_kib(kib: u32) -> Result<(), String> {
    if kib < 4 || !kib.is_power_of_two() || kib > 1024 * 1024 {
        return Err(format!(
            "ring_buffer_kib = {kib}: must be a power of two between 4 and 1048576"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let c = AgentConfig::parse(
            r#"
            host = "web-1"
            jsonl = "/tmp/out.jsonl"
            metrics_addr = "127.0.0.1:9464"
            ring_buffer_kib = 64
            [[identity]]
            name = "claude"
            cgroup = "agents/claude"
            [[identity]]
            name = "ops-bot"
            unit = "ops-bot.service"
            [[identity]]
            name = "k8s-claude"
            kubernetes = { namespace = "agents", labels = "app=claude", service_account = "claude", container = "agent" }
            [kubernetes]
            node = "node-1"
            kubeconfig = "/etc/recorder/kubeconfig"
            copy_labels = ["app", "team"]
            [collector]
            url = "https://collector.example:7443"
            tls_ca = "/etc/recorder/ca.pem"
            spool = "/var/lib/recorder/spool"
            spool_max_mib = 512
            "#,
        )
        .unwrap();
        assert_eq!(c.host.as_deref(), Some("web-1"));
        assert_eq!(c.identities.len(), 3);
        let CgroupSpec::Kubernetes(pods) = c.identities[2].spec().unwrap() else {
            panic!("{:?}", c.identities[2])
        };
        assert_eq!(pods.service_account.as_deref(), Some("claude"));
        assert_eq!(pods.container.as_deref(), Some("agent"));
        assert_eq!(c.kubernetes.node.as_deref(), Some("node-1"));
        assert_eq!(c.kubernetes.copy_labels, ["app", "team"]);
        assert_eq!(
            c.identities[0].spec().unwrap(),
            CgroupSpec::Path("agents/claude".into())
        );
        assert_eq!(
            c.identities[1].spec().unwrap(),
            CgroupSpec::Unit("ops-bot.service".into())
        );
        let col = c.collector.unwrap();
        assert_eq!(
            col.url.into_vec(),
            ["https://collector.example:7443".to_string()]
        );
        assert_eq!(col.spool_max_mib, Some(512));
        let e = AgentConfig::parse("[collector]\nurll = \"x\"\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn rejects_bad_files_with_the_reason() {
        let e = AgentConfig::parse("[[identity]]\nname = \"x\"\n").unwrap_err();
        assert!(
            e.contains("give a cgroup, a unit or a kubernetes selector"),
            "{e}"
        );
        let e = AgentConfig::parse("[[identity]]\nname = \"x\"\ncgroup = \"\"\n").unwrap_err();
        assert!(e.contains("the cgroup is empty"), "{e}");
        let e = AgentConfig::parse(
            "[[identity]]\nname = \"x\"\nunit = \"a.service\"\nkubernetes = { namespace = \"n\" }\n",
        )
        .unwrap_err();
        assert!(e.contains("not several"), "{e}");
        let e = AgentConfig::parse("[[identity]]\nname = \"x\"\nkubernetes = {}\n").unwrap_err();
        assert!(e.contains("selects every pod"), "{e}");
        let e = AgentConfig::parse(
            "[[identity]]\nname = \"x\"\nkubernetes = { labels = \"tier in ops\" }\n",
        )
        .unwrap_err();
        assert!(e.contains("parentheses"), "{e}");
        let e =
            AgentConfig::parse("[[identity]]\nname = \"x\"\nkubernetes = { namspace = \"n\" }\n")
                .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = AgentConfig::parse("idenity = 3").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = AgentConfig::parse("ring_buffer_kib = 1000").unwrap_err();
        assert!(e.contains("power of two"), "{e}");
        let e = AgentConfig::parse("[[identity]\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn parses_identity_flags() {
        let i = IdentityConfig::from_flag("a=/sys/fs/cgroup/x").unwrap();
        assert_eq!(
            i.spec().unwrap(),
            CgroupSpec::Path("/sys/fs/cgroup/x".into())
        );
        let i = IdentityConfig::from_flag("b=unit:b.service").unwrap();
        assert_eq!(i.spec().unwrap(), CgroupSpec::Unit("b.service".into()));
        let i = IdentityConfig::from_flag("c=k8s:namespace=agents;labels=app=claude,tier in (ops)")
            .unwrap();
        let CgroupSpec::Kubernetes(pods) = i.spec().unwrap() else {
            panic!("{i:?}")
        };
        assert_eq!(pods.namespace.as_deref(), Some("agents"));
        assert_eq!(pods.labels.to_string(), "app=claude,tier=ops");
        let e = IdentityConfig::from_flag("c=k8s:").unwrap_err().to_string();
        assert!(e.contains("selects every pod"), "{e}");
        assert!(IdentityConfig::from_flag("nocgroup").is_err());
        assert!(IdentityConfig::from_flag("=x").is_err());
        assert!(IdentityConfig::from_flag("a b=x").is_err());
    }
}
