//! A `kubectl` invocation read from its argv: the verb, the resource and names it acts on, and
//! where (namespace, context, kubeconfig, files). The record's text is the argv itself; this is
//! the structure next to it, so a reader can find every `delete` in `prod` without parsing
//! shell lines.

use super::flags::{self, Short};
use super::resources::{canonical, type_name};

/// What a `kubectl` command line asks for. Strings are as given on the command line, except
/// `resource`, which is the canonical plural resource (`po` -> `pods`); several resource types
/// (`get po,svc`, `get deploy/a svc/b`) are joined with commas in order of first appearance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubectlCommand {
    /// The first operand (`get`, `rollout`, ...); empty when there is none (`kubectl --help`).
    pub verb: String,
    pub resource: Option<String>,
    /// Object names, from `TYPE NAME...` or `TYPE/NAME` operands.
    pub names: Vec<String>,
    /// `-n`/`--namespace`, last one wins (or the namespace in a `cp` pod path).
    pub namespace: Option<String>,
    /// `-A`/`--all-namespaces`.
    pub all_namespaces: bool,
    pub context: Option<String>,
    pub kubeconfig: Option<String>,
    /// `-f`/`--filename` (comma-separated lists split; `-` is stdin) and `-k`/`--kustomize`
    /// directories, in order: everything the command reads manifests from.
    pub files: Vec<String>,
    /// The command path for verbs with subcommands: `["rollout", "restart"]`,
    /// `["config", "use-context"]`, `["create", "secret", "generic"]`; empty otherwise.
    pub subcommand: Vec<String>,
}

/// Whether an executable path names kubectl (`kubectl`, `/usr/local/bin/kubectl`).
pub fn is_kubectl(argv0: &str) -> bool {
    argv0.rsplit('/').next() == Some("kubectl")
}

/// Parses a kubectl argv (argv[0] included). `None` when argv[0] is not kubectl.
pub fn parse_kubectl(argv: &[String]) -> Option<KubectlCommand> {
    let (argv0, args) = argv.split_first()?;
    if !is_kubectl(argv0) {
        return None;
    }
    let mut cmd = KubectlCommand::default();
    let mut operands: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let next = args.get(i + 1).map(String::as_str);
        // Flags are read in the light of the verb seen so far (`logs -f` is not `--filename`).
        let verb = operands.first().copied().unwrap_or_default();
        i += 1;
        if arg == "--" {
            // What follows is a command to run in a container (`exec`, `run`, `debug`), not
            // kubectl's operands.
            break;
        } else if let Some(long) = arg.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None if flags::long_takes_value(verb, long, next) => {
                    i += 1;
                    (long, next)
                }
                None => (long, None),
            };
            cmd.flag(name, value);
        } else if let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) {
            if cmd.short_cluster(verb, cluster, next) {
                i += 1;
            }
        } else {
            operands.push(arg);
        }
    }
    cmd.operands(&operands);
    Some(cmd)
}

impl KubectlCommand {
    /// Records a flag the command structure keeps; the others only needed skipping.
    fn flag(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match name {
            "namespace" => self.namespace = value.filter(|v| !v.is_empty()),
            "all-namespaces" => self.all_namespaces = flags::parse_bool(value.as_deref()),
            "context" => self.context = value,
            "kubeconfig" => self.kubeconfig = value,
            // A string slice in pflag: `-f a.yaml,b.yaml` is two files.
            "filename" => self.files.extend(
                value
                    .iter()
                    .flat_map(|v| v.split(','))
                    .filter(|f| !f.is_empty())
                    .map(str::to_string),
            ),
            "kustomize" => self.files.extend(value.filter(|v| !v.is_empty())),
            _ => {}
        }
    }

    /// Reads a cluster of short flags (`-it`, `-nteam-a`, `-n=team-a`, `-n`). Returns whether
    /// the next argument was taken as the value.
    fn short_cluster(&mut self, verb: &str, cluster: &str, next: Option<&str>) -> bool {
        for (at, c) in cluster.char_indices() {
            let rest = &cluster[at + c.len_utf8()..];
            let Short { long, takes_value } = flags::short(verb, c);
            // pflag: `-x=value` gives any flag a value; a value flag takes the rest of the
            // cluster, or the next argument when the cluster ends with it.
            if let Some(value) = rest.strip_prefix('=') {
                self.flag(long, Some(value));
                return false;
            }
            if takes_value {
                if rest.is_empty() {
                    self.flag(long, next);
                    return next.is_some();
                }
                self.flag(long, Some(rest));
                return false;
            }
            self.flag(long, None);
        }
        false
    }

    /// Interprets the operands (verb first) by the shape of the verb's arguments.
    fn operands(&mut self, operands: &[&str]) {
        let Some((verb, rest)) = operands.split_first() else {
            return;
        };
        self.verb = verb.to_string();
        match *verb {
            "get" | "describe" | "delete" | "edit" | "patch" | "scale" | "autoscale" | "expose"
            | "replace" | "diff" | "wait" => self.resource_args(rest, |_| true),
            "apply" => match rest.first() {
                Some(sub @ &("edit-last-applied" | "set-last-applied" | "view-last-applied")) => {
                    self.subcommand(verb, sub);
                    self.resource_args(&rest[1..], |_| true);
                }
                _ => self.resource_args(rest, |_| true),
            },
            // `label pods web app=x tier-`: the changes follow the objects.
            "label" | "annotate" => self.resource_args(rest, |a| !is_change(a)),
            // `taint nodes n1 dedicated=x:NoSchedule`, `... dedicated:NoSchedule-`.
            "taint" => self.resource_args(rest, |a| !is_change(a) && !a.contains(':')),
            "cordon" | "uncordon" | "drain" => self.implied("nodes", rest),
            "logs" | "exec" | "attach" | "port-forward" | "debug" => {
                // One target; later operands are a container, ports, or a legacy command.
                self.implied("pods", rest.get(..1).unwrap_or_default());
            }
            "run" => self.implied("pods", rest.get(..1).unwrap_or_default()),
            "cp" => self.copy(rest),
            "explain" => self.resource = rest.first().map(|r| canonical(r)),
            "events" => self.resource = Some("events".into()),
            "kustomize" => self
                .files
                .extend(rest.first().map(std::string::ToString::to_string)),
            "create" => self.create(rest),
            "rollout" | "set" | "top" | "auth" | "certificate" | "config" | "cluster-info"
            | "plugin" | "alpha" => self.with_subcommand(verb, rest),
            _ => self.names = rest.iter().map(std::string::ToString::to_string).collect(),
        }
    }

    /// Verbs whose first operand is a subcommand; the operands after it follow the
    /// subcommand's shape.
    fn with_subcommand(&mut self, verb: &str, rest: &[&str]) {
        let Some((sub, rest)) = rest.split_first() else {
            return;
        };
        self.subcommand(verb, sub);
        match (verb, *sub) {
            ("rollout", _) => self.resource_args(rest, |_| true),
            // `set serviceaccount deploy/web robot`: the last operand is the account.
            ("set", "serviceaccount" | "sa") => {
                self.resource_args(rest.split_last().map_or(&[], |(_, r)| r), |_| true);
            }
            // `set image deploy/web app=nginx:1.27`, `set env deploy/web KEY=v OLD-`.
            ("set", _) => self.resource_args(rest, |a| !is_change(a)),
            ("top", _) => {
                self.resource = Some(canonical(sub));
                self.names = rest.iter().map(std::string::ToString::to_string).collect();
            }
            // `auth can-i VERB [TYPE | TYPE/NAME | TYPE NAME | /non-resource-url]`.
            ("auth", "can-i") => match rest.get(1) {
                Some(url) if url.starts_with('/') => self.names = vec![url.to_string()],
                _ => self.resource_args(rest.get(1..).unwrap_or_default(), |_| true),
            },
            ("auth", _) => {}
            ("certificate", _) => self.implied("certificatesigningrequests", rest),
            _ => self.names = rest.iter().map(std::string::ToString::to_string).collect(),
        }
    }

    /// `create KIND [TYPE] NAME`; `create -f` has no operands.
    fn create(&mut self, rest: &[&str]) {
        let Some((kind, mut rest)) = rest.split_first() else {
            return;
        };
        self.subcommand("create", kind);
        // `create token SA` asks for a token of a service account.
        let resource = match canonical(kind).as_str() {
            "token" => "serviceaccounts".to_string(),
            other => other.to_string(),
        };
        // `create secret generic|tls|docker-registry NAME`, `create service clusterip NAME`.
        if (resource == "secrets" || resource == "services")
            && let Some((kind, after)) = rest.split_first()
        {
            self.subcommand.push(kind.to_string());
            rest = after;
        }
        self.resource = Some(resource);
        self.names
            .extend(rest.first().map(std::string::ToString::to_string));
    }

    /// `cp [NS/]POD:PATH LOCAL` or `cp LOCAL [NS/]POD:PATH`: the pod is whichever side is remote.
    fn copy(&mut self, rest: &[&str]) {
        self.resource = Some("pods".into());
        let Some((namespace, pod)) = rest.iter().take(2).find_map(|a| remote_pod(a)) else {
            return;
        };
        // kubectl gives the namespace in the path precedence over `-n`.
        if let Some(namespace) = namespace {
            self.namespace = Some(namespace.to_string());
        }
        self.names.push(pod.to_string());
    }

    /// Operands that name objects of one implied resource (`cordon n1`, `logs web-1`), unless
    /// given as `TYPE/NAME` (`logs deploy/web`, `debug node/n1`).
    fn implied(&mut self, resource: &str, names: &[&str]) {
        if names.first().is_some_and(|n| n.contains('/')) {
            self.resource_args(names, |_| true);
        } else if !names.is_empty() || self.resource.is_none() {
            self.resource = Some(resource.to_string());
            self.names
                .extend(names.iter().map(std::string::ToString::to_string));
        }
    }

    /// kubectl's resource builder arguments: `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...`.
    /// `keep` drops operands that are not objects (label changes, images).
    fn resource_args(&mut self, args: &[&str], keep: impl Fn(&str) -> bool) {
        let Some(first) = args.first() else {
            return;
        };
        let mut types: Vec<String> = Vec::new();
        if first.contains('/') {
            for arg in args.iter().filter(|a| keep(a)) {
                match type_name(arg) {
                    Some((kind, name)) => {
                        push_unique(&mut types, kind);
                        self.push_name(name);
                    }
                    None => self.push_name(arg),
                }
            }
        } else {
            for kind in first.split(',').filter(|k| !k.is_empty()) {
                push_unique(&mut types, canonical(kind));
            }
            for name in args[1..].iter().filter(|a| keep(a)) {
                self.push_name(name);
            }
        }
        if !types.is_empty() {
            self.resource = Some(types.join(","));
        }
    }

    fn push_name(&mut self, name: &str) {
        if !name.is_empty() {
            self.names.push(name.to_string());
        }
    }

    fn subcommand(&mut self, verb: &str, sub: &str) {
        self.subcommand = vec![verb.to_string(), sub.to_string()];
    }
}

/// A label, annotation or env change (`key=value`, `key-`) rather than an object name.
fn is_change(arg: &str) -> bool {
    arg.contains('=') || arg.ends_with('-')
}

/// The namespace and pod of a `cp` remote path, as kubectl splits it: at the first `:`, with at
/// most one `/` before it. Anything else is a local path.
fn remote_pod(arg: &str) -> Option<(Option<&str>, &str)> {
    let (pod, _) = arg.split_once(':')?;
    let (namespace, pod) = match pod.split_once('/') {
        Some((_, p)) if p.contains('/') => return None,
        Some((ns, p)) => (Some(ns).filter(|ns| !ns.is_empty()), p),
        None => (None, pod),
    };
    (!pod.is_empty()).then_some((namespace, pod))
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}
