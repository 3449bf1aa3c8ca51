//! `/api/v1/...`: the collections and objects of the store, as kube-apiserver serves them.
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    http::{Api, Call, Reply},
    present::{now_secs, table},
    select::Filter,
    store::{Kind, Store, kind_of},
    watch::watch,
};

/// The metadata the server owns: an update keeps them from the stored object.
const SERVER_OWNED: &[&str] = &["name", "namespace", "uid", "creationTimestamp"];

impl Api {
    /// `/api/v1/...`: collections and objects, namespaced or not.
    pub(super) fn resource(&self, call: &Call, rest: &[&str]) -> Reply {
        // (namespace, resource, name)
        let (ns, resource, name) = match *rest {
            ["namespaces", ns, resource] => (Some(ns), resource, None),
            ["namespaces", ns, resource, name] => (Some(ns), resource, Some(name)),
            // `namespaces/NAME` is an object of the cluster-scoped kind, not a namespace prefix.
            [resource] => (None, resource, None),
            [resource, name] => (None, resource, Some(name)),
            _ => return Reply::not_found_path(),
        };
        let Some(kind) = kind_of(resource) else {
            return Reply::not_found_path();
        };
        if ns.is_some() && !kind.namespaced {
            return Reply::not_found_path();
        }
        let mut store = self.store.lock().unwrap();
        let scope = if kind.namespaced { ns } else { Some("") };
        let collection = scope.filter(|s| !s.is_empty());
        match (call.method.clone(), name) {
            (Method::GET, None) if call.param("watch").is_some_and(|w| w == "true" || w == "1") => {
                watch(call, &store, kind, collection)
            }
            (Method::GET, None) => list(call, &store, kind, collection),
            (Method::GET, Some(name)) => match store.get(kind, scope.unwrap_or(""), name) {
                Some(obj) if call.wants_table() => Reply::json(
                    StatusCode::OK,
                    &table(
                        call.param("includeObject").unwrap_or("Metadata"),
                        store.resource_version,
                        kind,
                        std::slice::from_ref(obj),
                    ),
                ),
                Some(obj) => Reply::json(StatusCode::OK, obj),
                None => Reply::not_found(kind, name),
            },
            (Method::POST, None) => {
                let Some(ns) = scope else {
                    // A namespaced kind has no cluster-wide collection to create in.
                    return Reply::method_not_allowed();
                };
                create(call, &mut store, kind, ns)
            }
            (Method::DELETE, Some(name)) => {
                let ns = scope.unwrap_or("");
                // Gone at once (no kubelet to wait for): kubectl's wait then lists it absent.
                let removed = if dry_run(call) {
                    store.get(kind, ns, name).cloned()
                } else {
                    store.remove(kind, ns, name)
                };
                match removed {
                    Some(obj) => Reply::json(StatusCode::OK, &obj),
                    None => Reply::not_found(kind, name),
                }
            }
            (Method::PATCH, Some(name)) => patch(call, &mut store, kind, scope.unwrap_or(""), name),
            (Method::PUT, Some(name)) => replace(call, &mut store, kind, scope.unwrap_or(""), name),
            _ => Reply::method_not_allowed(),
        }
    }
}

fn dry_run(call: &Call) -> bool {
    call.param("dryRun").is_some_and(|d| d == "All")
}

/// A list with both selectors applied. `limit` is not honoured (no `continue` is ever sent):
/// kube-apiserver does the same for lists served from its cache (`resourceVersion=0`).
fn list(call: &Call, store: &Store, kind: &Kind, ns: Option<&str>) -> Reply {
    let filter = match Filter::new(ns, call.param("fieldSelector"), call.param("labelSelector")) {
        Ok(filter) => filter,
        Err(message) => return Reply::bad_request(message),
    };
    let items: Vec<Value> = store
        .list(kind, ns)
        .into_iter()
        .filter(|obj| filter.matches(obj))
        .collect();
    if call.wants_table() {
        let include = call.param("includeObject").unwrap_or("Metadata");
        return Reply::json(
            StatusCode::OK,
            &table(include, store.resource_version, kind, &items),
        );
    }
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut obj| {
            if let Some(map) = obj.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            obj
        })
        .collect();
    Reply::json(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", kind.kind), "apiVersion": "v1",
            "metadata": {"resourceVersion": store.resource_version.to_string()},
            "items": items,
        }),
    )
}

fn create(call: &Call, store: &mut Store, kind: &'static Kind, ns: &str) -> Reply {
    let Ok(mut obj) = serde_json::from_slice::<Value>(&call.body) else {
        return Reply::bad_request("the request body is not a JSON object".into());
    };
    if !obj.is_object() {
        return Reply::bad_request("the request body is not a JSON object".into());
    }
    let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
        return Reply::status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "{} \"\" is invalid: metadata.name: Required value",
                kind.kind
            ),
            json!({"kind": kind.kind}),
        );
    };
    if let Some(body_ns) = obj["metadata"]["namespace"].as_str()
        && kind.namespaced
        && body_ns != ns
    {
        return Reply::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        );
    }
    if kind.namespaced && store.get(kind_of("namespaces").unwrap(), "", ns).is_none() {
        return Reply::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{ns}\" not found"),
            json!({"name": ns, "kind": "namespaces"}),
        );
    }
    if store.get(kind, ns, &name).is_some() {
        return Reply::status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.resource),
            json!({"name": name, "kind": kind.resource}),
        );
    }
    // What the server owns is the server's to set, whatever the client sent.
    if let Some(meta) = obj["metadata"].as_object_mut() {
        for field in ["uid", "creationTimestamp", "resourceVersion"] {
            meta.remove(field);
        }
    }
    if obj.get("status").is_none() && kind.kind == "Namespace" {
        obj["status"] = json!({"phase": "Active"});
    }
    let stored = if dry_run(call) {
        obj
    } else {
        store.insert(kind, ns, obj, now_secs())
    };
    Reply::json(StatusCode::CREATED, &stored)
}

fn patch(call: &Call, store: &mut Store, kind: &'static Kind, ns: &str, name: &str) -> Reply {
    // JSON merge patch semantics also cover what client-side apply sends as a strategic merge
    // patch for the kinds served here (maps of strings, no merge-keyed lists it needs to merge).
    if !(call
        .content_type
        .starts_with("application/merge-patch+json")
        || call
            .content_type
            .starts_with("application/strategic-merge-patch+json"))
    {
        return Reply::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json; got {}",
                call.content_type
            ),
            json!({}),
        );
    }
    let Ok(patch) = serde_json::from_slice::<Value>(&call.body) else {
        return Reply::bad_request("the patch is not JSON".into());
    };
    let Some(current) = store.get(kind, ns, name) else {
        return Reply::not_found(kind, name);
    };
    let mut obj = current.clone();
    merge(&mut obj, &patch);
    if dry_run(call) {
        return Reply::json(StatusCode::OK, &obj);
    }
    Reply::json(
        StatusCode::OK,
        &store.update(kind, ns, name, obj, SERVER_OWNED),
    )
}

fn replace(call: &Call, store: &mut Store, kind: &'static Kind, ns: &str, name: &str) -> Reply {
    let Ok(obj) = serde_json::from_slice::<Value>(&call.body) else {
        return Reply::bad_request("the request body is not JSON".into());
    };
    if store.get(kind, ns, name).is_none() {
        return Reply::not_found(kind, name);
    }
    if dry_run(call) {
        return Reply::json(StatusCode::OK, &obj);
    }
    Reply::json(
        StatusCode::OK,
        &store.update(kind, ns, name, obj, SERVER_OWNED),
    )
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}
