//! kubectl command lines as agents type them, and the structure read from them.

use super::*;

/// Parses a command line split on whitespace (no quoting needed by these cases).
fn parse(line: &str) -> KubectlCommand {
    let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    parse_kubectl(&argv).unwrap_or_else(|| panic!("not kubectl: {line}"))
}

/// The fields most cases check: verb, resource, names, namespace.
fn brief(line: &str) -> (String, Option<String>, Vec<String>, Option<String>) {
    let c = parse(line);
    (c.verb, c.resource, c.names, c.namespace)
}

fn expect(line: &str, verb: &str, resource: Option<&str>, names: &[&str], namespace: Option<&str>) {
    let want = (
        verb.to_string(),
        resource.map(str::to_string),
        names
            .iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>(),
        namespace.map(str::to_string),
    );
    assert_eq!(brief(line), want, "{line}");
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(std::string::ToString::to_string).collect()
}

#[test]
fn argv0_forms() {
    assert!(is_kubectl("kubectl"));
    assert!(is_kubectl("/usr/bin/kubectl"));
    assert!(is_kubectl("./bin/kubectl"));
    assert!(!is_kubectl("kubectl-foo"));
    assert!(!is_kubectl("/usr/bin/kubectl/"));
    assert!(!is_kubectl("oc"));
    assert_eq!(parse_kubectl(&strings(&["kubectlx", "get", "pods"])), None);
    assert_eq!(parse_kubectl(&[]), None);
    expect(
        "/usr/local/bin/kubectl get po",
        "get",
        Some("pods"),
        &[],
        None,
    );
}

#[test]
fn no_verb() {
    assert_eq!(parse("kubectl"), KubectlCommand::default());
    assert_eq!(parse("kubectl --help"), KubectlCommand::default());
    let c = parse("kubectl -n team-a");
    assert_eq!(
        (c.verb.as_str(), c.namespace.as_deref()),
        ("", Some("team-a"))
    );
}

#[test]
fn get_forms() {
    expect("kubectl get pods", "get", Some("pods"), &[], None);
    expect(
        "kubectl get po web-1 web-2 -o wide",
        "get",
        Some("pods"),
        &["web-1", "web-2"],
        None,
    );
    expect(
        "kubectl get pods/web-1",
        "get",
        Some("pods"),
        &["web-1"],
        None,
    );
    expect(
        "kubectl get po,svc",
        "get",
        Some("pods,services"),
        &[],
        None,
    );
    expect(
        "kubectl get deploy/a deploy/b",
        "get",
        Some("deployments"),
        &["a", "b"],
        None,
    );
    expect(
        "kubectl get deploy/a svc/b",
        "get",
        Some("deployments,services"),
        &["a", "b"],
        None,
    );
    expect(
        "kubectl get deployments.apps web",
        "get",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl get deploy.v1.apps/web",
        "get",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl get Deployment web",
        "get",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl get widgets.example.com",
        "get",
        Some("widgets"),
        &[],
        None,
    );
    expect("kubectl get FooBars", "get", Some("foobars"), &[], None);
    expect("kubectl get all -A", "get", Some("all"), &[], None);
    // Value flags do not leak into names; boolean flags do not swallow them.
    expect(
        "kubectl get pods -l app=web --field-selector status.phase=Running --sort-by .metadata.name -w web",
        "get",
        Some("pods"),
        &["web"],
        None,
    );
    expect(
        "kubectl get pods --show-labels --watch web",
        "get",
        Some("pods"),
        &["web"],
        None,
    );
    expect(
        "kubectl get pods -L app -o jsonpath={.items} x",
        "get",
        Some("pods"),
        &["x"],
        None,
    );
    expect("kubectl get --raw /api/v1/nodes", "get", None, &[], None);
}

#[test]
fn short_names() {
    for (given, canonical) in [
        ("ns", "namespaces"),
        ("cm", "configmaps"),
        ("secret", "secrets"),
        ("sa", "serviceaccounts"),
        ("no", "nodes"),
        ("node", "nodes"),
        ("rs", "replicasets"),
        ("sts", "statefulsets"),
        ("ds", "daemonsets"),
        ("job", "jobs"),
        ("cj", "cronjobs"),
        ("ing", "ingresses"),
        ("pv", "persistentvolumes"),
        ("pvc", "persistentvolumeclaims"),
        ("ep", "endpoints"),
        ("ev", "events"),
        ("crd", "customresourcedefinitions"),
        ("netpol", "networkpolicies"),
        ("hpa", "horizontalpodautoscalers"),
        ("pdb", "poddisruptionbudgets"),
        ("quota", "resourcequotas"),
        ("limits", "limitranges"),
        ("role", "roles"),
        ("rolebinding", "rolebindings"),
        ("clusterrole", "clusterroles"),
        ("clusterrolebindings", "clusterrolebindings"),
        ("sc", "storageclasses"),
        ("csr", "certificatesigningrequests"),
    ] {
        expect(
            &format!("kubectl get {given}"),
            "get",
            Some(canonical),
            &[],
            None,
        );
    }
}

#[test]
fn namespace_flags() {
    for line in [
        "kubectl get pods -n team-a",
        "kubectl get pods -nteam-a",
        "kubectl get pods -n=team-a",
        "kubectl get pods --namespace team-a",
        "kubectl get pods --namespace=team-a",
        "kubectl -n team-a get pods",
        "kubectl --namespace team-a get pods",
        "kubectl get pods -n other -n team-a",
    ] {
        expect(line, "get", Some("pods"), &[], Some("team-a"));
    }
    assert!(parse("kubectl get pods -A").all_namespaces);
    assert!(parse("kubectl get pods --all-namespaces").all_namespaces);
    assert!(!parse("kubectl get pods --all-namespaces=false").all_namespaces);
}

#[test]
fn global_flags_before_verb() {
    let c = parse("kubectl --context prod --kubeconfig /tmp/kc delete deploy web --grace-period 0");
    assert_eq!(c.context.as_deref(), Some("prod"));
    assert_eq!(c.kubeconfig.as_deref(), Some("/tmp/kc"));
    expect(
        "kubectl --context=prod -v 6 -s https://k:6443 --token abc --user u --cluster c --as admin \
         --as-group g --request-timeout 5s --certificate-authority ca.crt --client-key k.pem \
         --client-certificate c.pem --tls-server-name k --cache-dir /tmp/c delete deploy web",
        "delete",
        Some("deployments"),
        &["web"],
        None,
    );
}

#[test]
fn files() {
    let c = parse("kubectl apply -f a.yaml -f b.yaml --filename=c.yaml,d.yaml -R --server-side");
    assert_eq!(c.verb, "apply");
    assert_eq!(c.resource, None);
    assert_eq!(c.files, strings(&["a.yaml", "b.yaml", "c.yaml", "d.yaml"]));
    assert_eq!(parse("kubectl apply -f -").files, strings(&["-"]));
    assert_eq!(
        parse("kubectl apply -k overlays/prod").files,
        strings(&["overlays/prod"])
    );
    assert_eq!(
        parse("kubectl delete --kustomize=base").files,
        strings(&["base"])
    );
    let c = parse("kubectl create -f job.yaml --dry-run=client -o yaml");
    assert_eq!((c.verb.as_str(), c.resource.as_deref()), ("create", None));
    assert_eq!(c.files, strings(&["job.yaml"]));
    // `--dry-run` takes a value only with `=`: the file operand is not swallowed.
    assert_eq!(
        parse("kubectl replace --dry-run --force -f x.yaml").files,
        strings(&["x.yaml"])
    );
    assert_eq!(parse("kubectl diff -f x.yaml").files, strings(&["x.yaml"]));
    assert_eq!(
        parse("kubectl kustomize overlays/dev").files,
        strings(&["overlays/dev"])
    );
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "a flat list of command lines and what each must parse to, one case per call"
)]
fn mutations() {
    expect(
        "kubectl delete pod web-1 --force --grace-period=0",
        "delete",
        Some("pods"),
        &["web-1"],
        None,
    );
    expect(
        "kubectl delete pods --all --wait -n team-a",
        "delete",
        Some("pods"),
        &[],
        Some("team-a"),
    );
    expect(
        "kubectl delete ns team-a --ignore-not-found",
        "delete",
        Some("namespaces"),
        &["team-a"],
        None,
    );
    expect(
        "kubectl edit deploy/web",
        "edit",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl patch deploy web --type merge -p {\"spec\":{\"replicas\":2}}",
        "patch",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl label pods web app=x tier- --overwrite",
        "label",
        Some("pods"),
        &["web"],
        None,
    );
    expect(
        "kubectl annotate deploy/web note=hi",
        "annotate",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl scale deploy/web --replicas 3",
        "scale",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl scale --replicas=0 sts db",
        "scale",
        Some("statefulsets"),
        &["db"],
        None,
    );
    expect(
        "kubectl autoscale deploy web --min 2 --max 5 --cpu-percent 80",
        "autoscale",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl expose deploy web --port 80 --target-port 8080 --name web-svc",
        "expose",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl run tmp --image busybox --restart Never --rm -it -- sh -c date",
        "run",
        Some("pods"),
        &["tmp"],
        None,
    );
    expect(
        "kubectl taint nodes n1 dedicated=gpu:NoSchedule",
        "taint",
        Some("nodes"),
        &["n1"],
        None,
    );
    expect(
        "kubectl taint node n1 dedicated:NoSchedule-",
        "taint",
        Some("nodes"),
        &["n1"],
        None,
    );
    expect("kubectl cordon n1", "cordon", Some("nodes"), &["n1"], None);
    expect(
        "kubectl uncordon n1",
        "uncordon",
        Some("nodes"),
        &["n1"],
        None,
    );
    expect(
        "kubectl drain n1 --ignore-daemonsets --delete-emptydir-data --timeout 60s --pod-selector app=x",
        "drain",
        Some("nodes"),
        &["n1"],
        None,
    );
    expect(
        "kubectl wait --for condition=Ready pod/web --timeout=60s",
        "wait",
        Some("pods"),
        &["web"],
        None,
    );
}

#[test]
fn subcommands() {
    let c = parse("kubectl rollout restart deploy/web -n team-a");
    assert_eq!(c.subcommand, strings(&["rollout", "restart"]));
    assert_eq!(
        (
            c.verb.as_str(),
            c.resource.as_deref(),
            c.names.clone(),
            c.namespace.as_deref()
        ),
        (
            "rollout",
            Some("deployments"),
            strings(&["web"]),
            Some("team-a")
        )
    );
    expect(
        "kubectl rollout status deployment web -w",
        "rollout",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl rollout undo deploy/web --to-revision 2",
        "rollout",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl rollout history deploy/web --revision 3",
        "rollout",
        Some("deployments"),
        &["web"],
        None,
    );
    let c = parse("kubectl set image deploy/web app=nginx:1.27");
    assert_eq!(c.subcommand, strings(&["set", "image"]));
    assert_eq!(
        (c.resource.as_deref(), c.names),
        (Some("deployments"), strings(&["web"]))
    );
    expect(
        "kubectl set env deploy/web -e A=1 B- -c app",
        "set",
        Some("deployments"),
        &["web"],
        None,
    );
    expect(
        "kubectl set serviceaccount deploy web robot",
        "set",
        Some("deployments"),
        &["web"],
        None,
    );
    let c = parse("kubectl top pod web-1 --containers");
    assert_eq!(c.subcommand, strings(&["top", "pod"]));
    assert_eq!(
        (c.resource.as_deref(), c.names),
        (Some("pods"), strings(&["web-1"]))
    );
    expect("kubectl top node", "top", Some("nodes"), &[], None);
    let c = parse("kubectl auth can-i delete pods -n team-a");
    assert_eq!(c.subcommand, strings(&["auth", "can-i"]));
    assert_eq!(c.resource.as_deref(), Some("pods"));
    expect(
        "kubectl auth can-i get deploy/web",
        "auth",
        Some("deployments"),
        &["web"],
        None,
    );
    expect("kubectl auth whoami", "auth", None, &[], None);
    let c = parse("kubectl config use-context prod");
    assert_eq!(c.subcommand, strings(&["config", "use-context"]));
    assert_eq!((c.resource, c.names), (None, strings(&["prod"])));
    let c = parse("kubectl config view --minify --raw -o yaml");
    assert_eq!(
        (c.subcommand, c.names),
        (strings(&["config", "view"]), vec![])
    );
    let c = parse("kubectl certificate approve csr-1");
    assert_eq!(c.subcommand, strings(&["certificate", "approve"]));
    assert_eq!(
        (c.resource.as_deref(), c.names),
        (Some("certificatesigningrequests"), strings(&["csr-1"]))
    );
    let c = parse("kubectl apply view-last-applied deploy/web");
    assert_eq!(c.subcommand, strings(&["apply", "view-last-applied"]));
    assert_eq!(c.resource.as_deref(), Some("deployments"));
}

#[test]
fn create_forms() {
    let c = parse("kubectl create deployment web --image nginx -r 2");
    assert_eq!(c.subcommand, strings(&["create", "deployment"]));
    assert_eq!(
        (c.resource.as_deref(), c.names),
        (Some("deployments"), strings(&["web"]))
    );
    let c = parse("kubectl create secret generic db --from-literal password=x");
    assert_eq!(c.subcommand, strings(&["create", "secret", "generic"]));
    assert_eq!(
        (c.resource.as_deref(), c.names),
        (Some("secrets"), strings(&["db"]))
    );
    let c = parse("kubectl create svc nodeport web --tcp 80:8080");
    assert_eq!(
        (c.resource.as_deref(), c.names),
        (Some("services"), strings(&["web"]))
    );
    expect(
        "kubectl create ns team-b",
        "create",
        Some("namespaces"),
        &["team-b"],
        None,
    );
    expect(
        "kubectl create token robot --duration 1h",
        "create",
        Some("serviceaccounts"),
        &["robot"],
        None,
    );
    expect(
        "kubectl create job once --from cronjob/nightly",
        "create",
        Some("jobs"),
        &["once"],
        None,
    );
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "a flat list of command lines and what each must parse to, one case per call"
)]
fn pod_targets() {
    let c = parse("kubectl exec -it web-1 -c app -- ls -l");
    assert_eq!(
        (
            c.verb.as_str(),
            c.resource.as_deref(),
            c.names.clone(),
            c.files.clone()
        ),
        ("exec", Some("pods"), strings(&["web-1"]), vec![])
    );
    expect(
        "kubectl exec web-1 -- sh",
        "exec",
        Some("pods"),
        &["web-1"],
        None,
    );
    expect(
        "kubectl exec -n team-a deploy/web -- env",
        "exec",
        Some("deployments"),
        &["web"],
        Some("team-a"),
    );
    expect(
        "kubectl logs deploy/web",
        "logs",
        Some("deployments"),
        &["web"],
        None,
    );
    // `logs -f` follows and `-p` is the previous container: neither takes a value.
    expect(
        "kubectl logs -f web-1 -p",
        "logs",
        Some("pods"),
        &["web-1"],
        None,
    );
    expect(
        "kubectl logs web-1 app --tail 100 --since 1h",
        "logs",
        Some("pods"),
        &["web-1"],
        None,
    );
    expect(
        "kubectl logs -l app=web --all-containers",
        "logs",
        Some("pods"),
        &[],
        None,
    );
    expect(
        "kubectl attach -i web-1",
        "attach",
        Some("pods"),
        &["web-1"],
        None,
    );
    expect(
        "kubectl port-forward svc/web 8080:80 --address 0.0.0.0",
        "port-forward",
        Some("services"),
        &["web"],
        None,
    );
    expect(
        "kubectl port-forward web-1 5432",
        "port-forward",
        Some("pods"),
        &["web-1"],
        None,
    );
    expect(
        "kubectl debug node/n1 -it --image busybox",
        "debug",
        Some("nodes"),
        &["n1"],
        None,
    );
    expect(
        "kubectl debug web-1 -it --image busybox --target app",
        "debug",
        Some("pods"),
        &["web-1"],
        None,
    );
    expect(
        "kubectl cp team-a/web-1:/var/log/app.log ./app.log",
        "cp",
        Some("pods"),
        &["web-1"],
        Some("team-a"),
    );
    expect(
        "kubectl cp ./conf web-1:/etc/conf -c app -n team-b",
        "cp",
        Some("pods"),
        &["web-1"],
        Some("team-b"),
    );
    expect("kubectl proxy -p 8001 -w ./www", "proxy", None, &[], None);
}

#[test]
fn read_only_verbs() {
    let c = parse("kubectl version --client");
    assert_eq!((c.verb.as_str(), c.names), ("version", vec![]));
    expect(
        "kubectl version --client -o json",
        "version",
        None,
        &[],
        None,
    );
    expect(
        "kubectl api-resources --namespaced=true -o wide",
        "api-resources",
        None,
        &[],
        None,
    );
    expect("kubectl api-versions", "api-versions", None, &[], None);
    expect("kubectl cluster-info", "cluster-info", None, &[], None);
    expect(
        "kubectl explain pods.spec.containers --recursive",
        "explain",
        Some("pods"),
        &[],
        None,
    );
    expect(
        "kubectl describe no n1",
        "describe",
        Some("nodes"),
        &["n1"],
        None,
    );
    expect(
        "kubectl events --for pod/web -n team-a",
        "events",
        Some("events"),
        &[],
        Some("team-a"),
    );
    expect("kubectl get pods --help", "get", Some("pods"), &[], None);
}

#[test]
fn dash_dash_ends_operands() {
    // `get -- pods` is unusual, but nothing after `--` is an operand.
    expect(
        "kubectl exec web-1 -i -t -- get pods",
        "exec",
        Some("pods"),
        &["web-1"],
        None,
    );
    let c = parse("kubectl run x --image=i -- -n not-a-namespace -f not-a-file");
    assert_eq!((c.namespace, c.files), (None, vec![]));
}

#[test]
fn missing_flag_values() {
    expect("kubectl get pods -n", "get", Some("pods"), &[], None);
    expect(
        "kubectl get pods --namespace",
        "get",
        Some("pods"),
        &[],
        None,
    );
    assert_eq!(parse("kubectl apply -f").files, Vec::<String>::new());
}
