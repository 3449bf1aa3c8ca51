//! A Kubernetes API request read from its HTTP method and target, the way kube-apiserver's
//! `RequestInfo` reads it for authorization and audit, so the record names the same verb,
//! resource and object the server acted on.

/// What an HTTP request asks of the API server. `resource` is `None` for the server's
/// non-resource paths (discovery, `/version`, health, metrics); their verb is the lowercased
/// method, as in the server's authorization of non-resource URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiRequest {
    /// get, list, watch, create, update, patch, delete, deletecollection, proxy, or the
    /// lowercased method.
    pub verb: String,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    /// The request's namespace; for a namespace object itself, its own name (as the server sets
    /// it).
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// API group; `None` for the core group (`/api/v1`).
    pub group: Option<String>,
    pub version: Option<String>,
}

/// Reads an HTTP request to a Kubernetes API server. `target` is the request target with its
/// query (origin form `/api/v1/pods?watch=1`, or absolute form with scheme and host). `None`
/// when the path is not one the API server serves: the request is not Kubernetes traffic.
pub fn api_request(method: &str, target: &str) -> Option<ApiRequest> {
    let target = strip_origin(target);
    let target = target.split('#').next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.starts_with('/') {
        return None;
    }
    // The server splits the decoded path, as Go's URL.Path is; an escaped `/` splits too.
    let path = decode(path, false);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    resource_request(method, &parts, query).or_else(|| non_resource(method, &parts))
}

/// `/api/{version}/...` and `/apis/{group}/{version}/...` with at least a resource after the
/// version; `None` for anything else.
fn resource_request(method: &str, parts: &[&str], query: &str) -> Option<ApiRequest> {
    let (group, rest) = match parts {
        ["api", rest @ ..] => (None, rest),
        ["apis", group, rest @ ..] => (Some(*group), rest),
        _ => return None,
    };
    let [version, after_version @ ..] = rest else {
        return None;
    };
    let mut rest = after_version;
    let mut verb = match rest {
        // Legacy verb prefixes: `/api/v1/watch/namespaces/x/pods`. Without a resource after
        // them the server rejects the request.
        [prefix @ ("watch" | "proxy"), after @ ..] => {
            if after.is_empty() {
                return None;
            }
            rest = after;
            prefix.to_string()
        }
        [] => return None,
        _ => method_verb(method),
    };
    let mut namespace = None;
    if let ["namespaces", ns, after @ ..] = rest {
        namespace = non_empty(ns);
        // `namespaces/x/status` and `/finalize` are subresources of the namespace object;
        // anything else after the namespace name is a namespaced resource.
        if let [next, ..] = after
            && !matches!(*next, "status" | "finalize")
        {
            rest = after;
        }
    }
    let resource = rest.first().and_then(|r| non_empty(r));
    let mut name = rest.get(1).and_then(|n| non_empty(n));
    // After `proxy` the rest is the proxied path, not a subresource.
    let subresource = match verb.as_str() {
        "proxy" => None,
        _ => rest.get(2).and_then(|s| non_empty(s)),
    };
    if name.is_none() && verb == "get" {
        let query = Query(query);
        verb = if query.watch() { "watch" } else { "list" }.to_string();
        // A list or watch of one object by field selector (`kubectl get pod web -w`).
        name = query.exact_name();
    }
    if name.is_none() && verb == "delete" {
        verb = "deletecollection".to_string();
    }
    Some(ApiRequest {
        verb,
        resource,
        subresource,
        namespace,
        name,
        group: group.and_then(non_empty),
        version: non_empty(version),
    })
}

/// The API server's own non-resource paths; `None` for any other path.
fn non_resource(method: &str, parts: &[&str]) -> Option<ApiRequest> {
    let (group, version) = match parts {
        // Discovery roots (`/api`, `/apis`), the server's own endpoints, and service account
        // issuer discovery: no group or version.
        ["api" | "apis"]
        | [
            "version" | "openapi" | "healthz" | "livez" | "readyz" | "metrics",
            ..,
        ]
        | [".well-known", "openid-configuration"]
        | ["openid", "v1", "jwks"] => (None, None),
        // Discovery of a version or a group: `/api/v1`, `/apis/apps`, `/apis/apps/v1`.
        ["api", version, ..] => (None, Some(*version)),
        ["apis", group] => (Some(*group), None),
        ["apis", group, version, ..] => (Some(*group), Some(*version)),
        _ => return None,
    };
    Some(ApiRequest {
        verb: method.to_ascii_lowercase(),
        group: group.and_then(non_empty),
        version: version.and_then(non_empty),
        ..ApiRequest::default()
    })
}

/// The verb of a resource request by its method, before the list/watch/deletecollection
/// refinement. An unknown method keeps its lowercased name (the server leaves the verb empty).
fn method_verb(method: &str) -> String {
    match method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => return method.to_ascii_lowercase(),
    }
    .to_string()
}

/// Drops `scheme://authority` from an absolute-form target (an HTTP/1.1 request through a
/// proxy); an origin-form target is returned as is.
fn strip_origin(target: &str) -> &str {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let Some(after) = ["https://", "http://"]
        .iter()
        .find(|s| lower.starts_with(*s))
        .and_then(|s| target.get(s.len()..))
    else {
        return target;
    };
    after.find(['/', '?']).map_or("/", |i| &after[i..])
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The query of a request, read like Go's `url.Query()`: `&`-separated pairs, pairs with a `;`
/// ignored, `+` as space, first value of a key wins.
struct Query<'a>(&'a str);

impl Query<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .split('&')
            .filter(|pair| !pair.is_empty() && !pair.contains(';'))
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| decode(k, true) == key)
            .map(|(_, v)| decode(v, true))
    }

    /// The server reads `watch` as true unless absent, `0` or `false` (any case).
    fn watch(&self) -> bool {
        self.get("watch")
            .is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
    }

    /// The object name a `fieldSelector` pins with `metadata.name=x` (or `==`), when it is a
    /// valid path segment name.
    fn exact_name(&self) -> Option<String> {
        let selector = self.get("fieldSelector")?;
        selector.split(',').find_map(|term| {
            if term.contains("!=") {
                return None;
            }
            let (field, value) = term.split_once("==").or_else(|| term.split_once('='))?;
            let valid = !matches!(value, "" | "." | "..") && !value.contains(['/', '%']);
            (field.trim() == "metadata.name" && valid).then(|| value.to_string())
        })
    }
}

/// Percent-decodes (and, in a query, turns `+` into a space). Malformed escapes are kept as
/// written; invalid UTF-8 becomes U+FFFD.
fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match bytes[i] {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
