//! Resource names as kubectl accepts them (kinds, singulars, short names, `resource.version.group`)
//! mapped to the plural resource the API server sees, so a `kubectl` record and an API record of
//! the same action name the same resource.

/// The canonical plural resource for a kubectl resource argument: lowercased, group and version
/// suffix dropped (`deploy.v1.apps` -> `deployments`), aliases resolved. An unknown resource (a
/// custom resource, a typo) is kept as given, lowercased, without its group.
pub(super) fn canonical(arg: &str) -> String {
    let lower = arg.to_lowercase();
    let head = lower.split('.').next().unwrap_or_default();
    alias(head).map_or_else(|| head.to_string(), str::to_string)
}

/// The built-in short names and singular kinds. Plural names are listed too so the table says
/// which resources are known; custom resources fall through to the caller's default.
fn alias(name: &str) -> Option<&'static str> {
    Some(match name {
        "po" | "pod" | "pods" => "pods",
        "svc" | "service" | "services" => "services",
        "deploy" | "deployment" | "deployments" => "deployments",
        "rs" | "replicaset" | "replicasets" => "replicasets",
        "sts" | "statefulset" | "statefulsets" => "statefulsets",
        "ds" | "daemonset" | "daemonsets" => "daemonsets",
        "job" | "jobs" => "jobs",
        "cj" | "cronjob" | "cronjobs" => "cronjobs",
        "rc" | "replicationcontroller" | "replicationcontrollers" => "replicationcontrollers",
        "ns" | "namespace" | "namespaces" => "namespaces",
        "cm" | "configmap" | "configmaps" => "configmaps",
        "secret" | "secrets" => "secrets",
        "sa" | "serviceaccount" | "serviceaccounts" => "serviceaccounts",
        "no" | "node" | "nodes" => "nodes",
        "ing" | "ingress" | "ingresses" => "ingresses",
        "ingressclass" | "ingressclasses" => "ingressclasses",
        "pv" | "persistentvolume" | "persistentvolumes" => "persistentvolumes",
        "pvc" | "persistentvolumeclaim" | "persistentvolumeclaims" => "persistentvolumeclaims",
        "ep" | "endpoints" => "endpoints",
        "endpointslice" | "endpointslices" => "endpointslices",
        "ev" | "event" | "events" => "events",
        "crd" | "crds" | "customresourcedefinition" | "customresourcedefinitions" => {
            "customresourcedefinitions"
        }
        "netpol" | "networkpolicy" | "networkpolicies" => "networkpolicies",
        "hpa" | "horizontalpodautoscaler" | "horizontalpodautoscalers" => {
            "horizontalpodautoscalers"
        }
        "pdb" | "poddisruptionbudget" | "poddisruptionbudgets" => "poddisruptionbudgets",
        "quota" | "resourcequota" | "resourcequotas" => "resourcequotas",
        "limits" | "limitrange" | "limitranges" => "limitranges",
        "role" | "roles" => "roles",
        "rolebinding" | "rolebindings" => "rolebindings",
        "clusterrole" | "clusterroles" => "clusterroles",
        "clusterrolebinding" | "clusterrolebindings" => "clusterrolebindings",
        "sc" | "storageclass" | "storageclasses" => "storageclasses",
        "csr" | "certificatesigningrequest" | "certificatesigningrequests" => {
            "certificatesigningrequests"
        }
        "pc" | "priorityclass" | "priorityclasses" => "priorityclasses",
        "cs" | "componentstatus" | "componentstatuses" => "componentstatuses",
        "podtemplate" | "podtemplates" => "podtemplates",
        "controllerrevision" | "controllerrevisions" => "controllerrevisions",
        "lease" | "leases" => "leases",
        "runtimeclass" | "runtimeclasses" => "runtimeclasses",
        "volumeattachment" | "volumeattachments" => "volumeattachments",
        "csidriver" | "csidrivers" => "csidrivers",
        "csinode" | "csinodes" => "csinodes",
        "apiservice" | "apiservices" => "apiservices",
        "mutatingwebhookconfiguration" | "mutatingwebhookconfigurations" => {
            "mutatingwebhookconfigurations"
        }
        "validatingwebhookconfiguration" | "validatingwebhookconfigurations" => {
            "validatingwebhookconfigurations"
        }
        "validatingadmissionpolicy" | "validatingadmissionpolicies" => {
            "validatingadmissionpolicies"
        }
        "validatingadmissionpolicybinding" | "validatingadmissionpolicybindings" => {
            "validatingadmissionpolicybindings"
        }
        "flowschema" | "flowschemas" => "flowschemas",
        "prioritylevelconfiguration" | "prioritylevelconfigurations" => {
            "prioritylevelconfigurations"
        }
        "psp" | "podsecuritypolicy" | "podsecuritypolicies" => "podsecuritypolicies",
        _ => return None,
    })
}

/// Splits a `TYPE/NAME` argument into its canonical resource and the name.
pub(super) fn type_name(arg: &str) -> Option<(String, &str)> {
    let (kind, name) = arg.split_once('/')?;
    Some((canonical(kind), name))
}
