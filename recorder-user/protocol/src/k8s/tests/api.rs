//! Request targets as kubectl and client libraries send them, read like kube-apiserver does.

use super::*;

fn req(method: &str, target: &str) -> ApiRequest {
    api_request(method, target).unwrap_or_else(|| panic!("not Kubernetes: {method} {target}"))
}

/// verb, resource, subresource, namespace, name.
type Brief<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

fn expect(method: &str, target: &str, want: Brief) {
    let r = req(method, target);
    let got = (
        r.verb.as_str(),
        r.resource.as_deref(),
        r.subresource.as_deref(),
        r.namespace.as_deref(),
        r.name.as_deref(),
    );
    assert_eq!(got, want, "{method} {target}");
}

#[test]
fn core_namespaced() {
    let web = Some("web-1");
    let ns = Some("team-a");
    let pods = Some("pods");
    expect(
        "GET",
        "/api/v1/namespaces/team-a/pods",
        ("list", pods, None, ns, None),
    );
    expect(
        "GET",
        "/api/v1/namespaces/team-a/pods?limit=500",
        ("list", pods, None, ns, None),
    );
    expect(
        "GET",
        "/api/v1/namespaces/team-a/pods/web-1",
        ("get", pods, None, ns, web),
    );
    expect(
        "HEAD",
        "/api/v1/namespaces/team-a/pods/web-1",
        ("get", pods, None, ns, web),
    );
    expect(
        "POST",
        "/api/v1/namespaces/team-a/pods",
        ("create", pods, None, ns, None),
    );
    expect(
        "PUT",
        "/api/v1/namespaces/team-a/pods/web-1",
        ("update", pods, None, ns, web),
    );
    expect(
        "PATCH",
        "/api/v1/namespaces/team-a/pods/web-1",
        ("patch", pods, None, ns, web),
    );
    expect(
        "DELETE",
        "/api/v1/namespaces/team-a/pods/web-1",
        ("delete", pods, None, ns, web),
    );
    expect(
        "DELETE",
        "/api/v1/namespaces/team-a/pods?labelSelector=app%3Dweb",
        ("deletecollection", pods, None, ns, None),
    );
    expect(
        "GET",
        "/api/v1/namespaces/team-a/pods/web-1/log?container=app&follow=true",
        ("get", pods, Some("log"), ns, web),
    );
    expect(
        "POST",
        "/api/v1/namespaces/team-a/pods/web-1/exec?command=ls&stdout=true",
        ("create", pods, Some("exec"), ns, web),
    );
    expect(
        "GET",
        "/api/v1/namespaces/team-a/secrets/db",
        ("get", Some("secrets"), None, ns, Some("db")),
    );
    let r = req("GET", "/api/v1/namespaces/team-a/configmaps");
    assert_eq!((r.group, r.version.as_deref()), (None, Some("v1")));
}

#[test]
fn grouped() {
    let deploy = Some("deployments");
    let ns = Some("team-a");
    let r = req("GET", "/apis/apps/v1/namespaces/team-a/deployments/web");
    assert_eq!(
        (r.group.as_deref(), r.version.as_deref()),
        (Some("apps"), Some("v1"))
    );
    expect(
        "GET",
        "/apis/apps/v1/namespaces/team-a/deployments/web",
        ("get", deploy, None, ns, Some("web")),
    );
    expect(
        "PUT",
        "/apis/apps/v1/namespaces/team-a/deployments/web/scale",
        ("update", deploy, Some("scale"), ns, Some("web")),
    );
    expect(
        "PATCH",
        "/apis/apps/v1/namespaces/team-a/deployments/web/status",
        ("patch", deploy, Some("status"), ns, Some("web")),
    );
    expect(
        "GET",
        "/apis/apps/v1/deployments",
        ("list", deploy, None, None, None),
    );
    expect(
        "POST",
        "/apis/batch/v1/namespaces/ci/jobs",
        ("create", Some("jobs"), None, Some("ci"), None),
    );
    expect(
        "GET",
        "/apis/stable.example.com/v1/namespaces/ci/crontabs/x",
        ("get", Some("crontabs"), None, Some("ci"), Some("x")),
    );
    expect(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        ("create", Some("selfsubjectaccessreviews"), None, None, None),
    );
}

#[test]
fn cluster_scoped() {
    expect(
        "GET",
        "/api/v1/nodes",
        ("list", Some("nodes"), None, None, None),
    );
    expect(
        "GET",
        "/api/v1/nodes/n1",
        ("get", Some("nodes"), None, None, Some("n1")),
    );
    expect(
        "PATCH",
        "/api/v1/nodes/n1/status",
        ("patch", Some("nodes"), Some("status"), None, Some("n1")),
    );
    expect(
        "DELETE",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/admin",
        (
            "delete",
            Some("clusterrolebindings"),
            None,
            None,
            Some("admin"),
        ),
    );
    expect(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        ("list", Some("customresourcedefinitions"), None, None, None),
    );
}

#[test]
fn namespace_objects() {
    let ns = Some("namespaces");
    let team = Some("team-a");
    expect("GET", "/api/v1/namespaces", ("list", ns, None, None, None));
    expect(
        "POST",
        "/api/v1/namespaces",
        ("create", ns, None, None, None),
    );
    expect(
        "GET",
        "/api/v1/namespaces/team-a",
        ("get", ns, None, team, team),
    );
    expect(
        "DELETE",
        "/api/v1/namespaces/team-a",
        ("delete", ns, None, team, team),
    );
    expect(
        "PUT",
        "/api/v1/namespaces/team-a/status",
        ("update", ns, Some("status"), team, team),
    );
    expect(
        "PUT",
        "/api/v1/namespaces/team-a/finalize",
        ("update", ns, Some("finalize"), team, team),
    );
    // Trailing slash trimmed, as the server does.
    expect(
        "GET",
        "/api/v1/namespaces/team-a/",
        ("get", ns, None, team, team),
    );
}

#[test]
fn watches() {
    let pods = Some("pods");
    let ns = Some("team-a");
    expect(
        "GET",
        "/api/v1/namespaces/team-a/pods?watch=true",
        ("watch", pods, None, ns, None),
    );
    expect(
        "GET",
        "/api/v1/namespaces/team-a/pods?watch=1&resourceVersion=10",
        ("watch", pods, None, ns, None),
    );
    expect(
        "GET",
        "/api/v1/pods?watch",
        ("watch", pods, None, None, None),
    );
    expect(
        "GET",
        "/api/v1/pods?watch=false",
        ("list", pods, None, None, None),
    );
    expect(
        "GET",
        "/api/v1/pods?watch=0",
        ("list", pods, None, None, None),
    );
    expect(
        "GET",
        "/api/v1/pods?watch=FALSE&watch=true",
        ("list", pods, None, None, None),
    );
    expect(
        "GET",
        "/api/v1/watch/namespaces/team-a/pods",
        ("watch", pods, None, ns, None),
    );
    expect(
        "GET",
        "/api/v1/watch/namespaces/team-a/pods/web-1",
        ("watch", pods, None, ns, Some("web-1")),
    );
    expect(
        "GET",
        "/api/v1/watch/namespaces",
        ("watch", Some("namespaces"), None, None, None),
    );
    // `kubectl get pod web-1 -w` watches the list with a field selector on the name.
    expect(
        "GET",
        "/api/v1/namespaces/team-a/pods?fieldSelector=metadata.name%3Dweb-1&watch=true",
        ("watch", pods, None, ns, Some("web-1")),
    );
    expect(
        "GET",
        "/api/v1/pods?fieldSelector=metadata.name!%3Dweb-1",
        ("list", pods, None, None, None),
    );
}

#[test]
fn proxy_and_decoding() {
    expect(
        "GET",
        "/api/v1/namespaces/team-a/services/web:80/proxy/healthz",
        (
            "get",
            Some("services"),
            Some("proxy"),
            Some("team-a"),
            Some("web:80"),
        ),
    );
    expect(
        "GET",
        "/api/v1/proxy/namespaces/team-a/pods/web-1/x/y",
        ("proxy", Some("pods"), None, Some("team-a"), Some("web-1")),
    );
    expect(
        "GET",
        "/api/v1/namespaces/team%2Da/pods/web%2D1",
        ("get", Some("pods"), None, Some("team-a"), Some("web-1")),
    );
    // Absolute form, as sent through an HTTP proxy.
    expect(
        "GET",
        "https://10.0.0.1:6443/api/v1/nodes?limit=1",
        ("list", Some("nodes"), None, None, None),
    );
    expect(
        "GET",
        "HTTP://k/api/v1/nodes/n1",
        ("get", Some("nodes"), None, None, Some("n1")),
    );
}

#[test]
fn discovery_and_server_paths() {
    for (target, group, version) in [
        ("/api", None, None),
        ("/api/v1", None, Some("v1")),
        ("/api/v1/", None, Some("v1")),
        ("/apis", None, None),
        ("/apis/apps", Some("apps"), None),
        ("/apis/apps/v1", Some("apps"), Some("v1")),
        ("/apis/apps/v1?timeout=32s", Some("apps"), Some("v1")),
        ("/version", None, None),
        ("/version?timeout=32s", None, None),
        ("/openapi/v2", None, None),
        ("/openapi/v3/apis/apps/v1?hash=ABC", None, None),
        ("/healthz", None, None),
        ("/healthz/etcd", None, None),
        ("/livez", None, None),
        ("/readyz?verbose", None, None),
        ("/metrics", None, None),
        ("/.well-known/openid-configuration", None, None),
        ("/openid/v1/jwks", None, None),
        // A bare legacy prefix is rejected by the server; it is still its path.
        ("/api/v1/watch", None, Some("v1")),
    ] {
        let r = req("GET", target);
        let want = ApiRequest {
            verb: "get".into(),
            group: group.map(str::to_string),
            version: version.map(str::to_string),
            ..ApiRequest::default()
        };
        assert_eq!(r, want, "{target}");
    }
    assert_eq!(req("POST", "/apis").verb, "post");
}

#[test]
fn not_kubernetes() {
    for target in [
        "/",
        "",
        "*",
        "/index.html",
        "/foo",
        "/foo/api/v1/pods",
        "/apiv1/pods",
        "/versions",
        "/.well-known/acme-challenge/x",
        "https://example.com",
        "https://example.com/",
        "https://example.com/login?next=/api/v1/pods",
        "index.html",
    ] {
        assert_eq!(api_request("GET", target), None, "{target}");
    }
}

#[test]
fn unknown_method_keeps_its_name() {
    expect(
        "OPTIONS",
        "/api/v1/pods/x",
        ("options", Some("pods"), None, None, Some("x")),
    );
    expect(
        "get",
        "/api/v1/pods",
        ("list", Some("pods"), None, None, None),
    );
}
