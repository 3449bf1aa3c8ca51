//! kubectl's flags, as far as parsing argv needs them: which ones take their value from the next
//! argument. kubectl parses with pflag, so flags may appear anywhere, before or after the verb;
//! a value-taking flag given without `=` swallows the next argument, which must then not be read
//! as a verb, resource or name.

/// A short flag: the long name it stands for (empty when the parser does not record it) and
/// whether it takes a value.
pub(super) struct Short {
    pub long: &'static str,
    pub takes_value: bool,
}

/// Meaning of the short flag `c` under `verb`. A few letters mean different things per command:
/// `logs -f` is `--follow` and `logs -p` is `--previous` (booleans), while `proxy -p/-w/-P/-u`
/// take a port, directory, prefix and socket path.
pub(super) fn short(verb: &str, c: char) -> Short {
    let (long, takes_value) = match (verb, c) {
        ("logs", 'f') => ("follow", false),
        ("logs", 'p') => ("previous", false),
        ("proxy", 'p') => ("port", true),
        ("proxy", 'w') => ("www", true),
        ("proxy", 'P') => ("www-prefix", true),
        ("proxy", 'u') => ("unix-socket", true),
        ("set", 'e') => ("env", true),
        (_, 'n') => ("namespace", true),
        (_, 'A') => ("all-namespaces", false),
        (_, 'f') => ("filename", true),
        (_, 'k') => ("kustomize", true),
        // -o output, -l selector, -c container, -p patch, -s server, -v log level,
        // -L label columns, -r replicas (`create deployment`).
        (_, 'o' | 'l' | 'c' | 'p' | 's' | 'v' | 'L' | 'r') => ("", true),
        // -i, -t, -w, -q, -R, -h and anything unknown: booleans.
        _ => ("", false),
    };
    Short { long, takes_value }
}

/// Whether the long flag `name` (without `--`) takes its value from the next argument when given
/// without `=`. Everything not listed is boolean or, like `--dry-run`, `--cascade`, `--validate`
/// and `--wait`, takes a value only in the `--flag=value` form (pflag's optional value), so it
/// never swallows the next argument. `next` is that argument: `--raw` takes a URI path in
/// `get --raw /api/v1/nodes` but is a boolean in `config view --raw`.
pub(super) fn long_takes_value(verb: &str, name: &str, next: Option<&str>) -> bool {
    match name {
        "raw" => next.is_some_and(|n| n.starts_with('/')),
        // `top pod --containers` is a boolean; `set env/resources --containers` names containers.
        "containers" => verb != "top",
        // `set env --prefix` takes a prefix; `logs --prefix` is a boolean.
        "prefix" => verb == "set",
        _ => GLOBAL.contains(&name) || COMMAND.contains(&name),
    }
}

/// kubectl's global value flags (including klog's).
const GLOBAL: &[&str] = &[
    "as",
    "as-group",
    "as-uid",
    "cache-dir",
    "certificate-authority",
    "client-certificate",
    "client-key",
    "cluster",
    "context",
    "kubeconfig",
    "kuberc",
    "log-backtrace-at",
    "log-dir",
    "log-file",
    "log-file-max-size",
    "log-flush-frequency",
    "namespace",
    "password",
    "profile",
    "profile-output",
    "request-timeout",
    "server",
    "stderrthreshold",
    "tls-server-name",
    "token",
    "user",
    "username",
    "v",
    "vmodule",
];

/// Value flags of kubectl's commands, all commands together: no name here is a boolean in any
/// other command (the exceptions are handled in [`long_takes_value`]).
const COMMAND: &[&str] = &[
    "address",
    "aggregation-rule",
    "annotation",
    "annotations",
    "api-group",
    "api-prefix",
    "api-version",
    "applyset",
    "accept-hosts",
    "accept-paths",
    "audience",
    "auth-provider",
    "auth-provider-arg",
    "bound-object-kind",
    "bound-object-name",
    "bound-object-uid",
    "categories",
    "cert",
    "chunk-size",
    "class",
    "cluster-ip",
    "clusterip",
    "clusterrole",
    "concurrency",
    "container",
    "copy-to",
    "cpu-percent",
    "current-replicas",
    "custom",
    "default-backend",
    "description",
    "docker-email",
    "docker-password",
    "docker-server",
    "docker-username",
    "duration",
    "env",
    "exec-api-version",
    "exec-arg",
    "exec-command",
    "exec-env",
    "exec-interactive-mode",
    "external-ip",
    "external-name",
    "field-manager",
    "field-selector",
    "filename",
    "for",
    "from",
    "from-env-file",
    "from-file",
    "from-literal",
    "generator",
    "grace-period",
    "group",
    "hard",
    "helm-command",
    "hostport",
    "image",
    "image-pull-policy",
    "keepalive",
    "key",
    "keys",
    "kustomize",
    "label-columns",
    "labels",
    "limit-bytes",
    "limits",
    "load-balancer-ip",
    "load-restrictor",
    "max",
    "max-log-requests",
    "max-unavailable",
    "min",
    "min-available",
    "mount",
    "name",
    "namespaces",
    "network-name",
    "node-port",
    "non-resource-url",
    "output",
    "output-directory",
    "override-type",
    "overrides",
    "patch",
    "patch-file",
    "pod-running-timeout",
    "pod-selector",
    "port",
    "preemption-policy",
    "protocol",
    "proxy-url",
    "prune-allowlist",
    "prune-whitelist",
    "reject-methods",
    "reject-paths",
    "replicas",
    "requests",
    "resource",
    "resource-name",
    "resource-version",
    "restart",
    "retries",
    "revision",
    "role",
    "rule",
    "schedule",
    "scopes",
    "selector",
    "serviceaccount",
    "session-affinity",
    "set-image",
    "since",
    "since-time",
    "skip-wait-for-delete-timeout",
    "sort-by",
    "subresource",
    "tail",
    "target",
    "target-port",
    "tcp",
    "template",
    "timeout",
    "to-revision",
    "type",
    "types",
    "unix-socket",
    "value",
    "verb",
    "verbs",
    "www",
    "www-prefix",
];

/// pflag's boolean syntax (Go's `strconv.ParseBool`); anything else makes kubectl fail, so it is
/// read as the flag's presence.
pub(super) fn parse_bool(value: Option<&str>) -> bool {
    !matches!(value, Some("0" | "f" | "F" | "false" | "FALSE" | "False"))
}
