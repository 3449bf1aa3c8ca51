//! What the server says that is not the store: server-side printing (tables), discovery,
//! OpenAPI, and the small text formats (times, query strings).
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::store::{KINDS, Kind};

/// The server-side printing kubectl asks for (`Accept: ...;as=Table`): the columns of
/// `kubectl get` come from the server, as they do from kube-apiserver. `include` is the
/// request's `includeObject`; `rv` the version the table is as of. Watches send one such table
/// per event.
pub(super) fn table(include: &str, rv: u64, kind: &Kind, items: &[Value]) -> Value {
    let column = |name: &str, ty: &str, format: &str| json!({"name": name, "type": ty, "format": format, "description": name, "priority": 0});
    let mut columns = vec![column("Name", "string", "name")];
    match kind.resource {
        "pods" => {
            columns.push(column("Ready", "string", ""));
            columns.push(column("Status", "string", ""));
            columns.push(column("Restarts", "string", ""));
        }
        "configmaps" => columns.push(column("Data", "integer", "")),
        "namespaces" => columns.push(column("Status", "string", "")),
        _ => {}
    }
    columns.push(column("Age", "string", ""));
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            match kind.resource {
                "pods" => {
                    let statuses = obj["status"]["containerStatuses"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
                    let restarts: u64 = statuses
                        .iter()
                        .filter_map(|s| s["restartCount"].as_u64())
                        .sum();
                    cells.push(json!(format!("{ready}/{}", statuses.len())));
                    cells.push(obj["status"]["phase"].clone());
                    cells.push(json!(restarts.to_string()));
                }
                "configmaps" => cells.push(json!(
                    obj["data"].as_object().map_or(0, |m| m.len())
                        + obj["binaryData"].as_object().map_or(0, |m| m.len())
                )),
                "namespaces" => cells.push(obj["status"]["phase"].clone()),
                _ => {}
            }
            cells.push(json!(age(obj["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or(""))));
            let object = match include {
                "None" => Value::Null,
                "Object" => obj.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": obj["metadata"].clone()}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

pub(super) fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "fixture",
        "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.4",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

pub(super) fn resource_list() -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .map(|k| {
            json!({
                "name": k.resource, "singularName": k.singular, "namespaced": k.namespaced,
                "kind": k.kind, "shortNames": k.short,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })
        })
        .collect();
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
}

/// OpenAPI v3 discovery: one group-version, core `v1`. kubectl's strict validation reads it to
/// learn whether the server validates fields itself (then it sends `fieldValidation=Strict` and
/// validates nothing client-side, which spares serving whole schemas).
pub(super) fn openapi_v3_paths() -> Value {
    json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=FIXTURE"}}})
}

/// The core `v1` document, reduced to what kubectl's field-validation check looks for: a PATCH
/// operation per kind, tagged with its group-version-kind, that takes `fieldValidation`.
pub(super) fn openapi_v3_core() -> Value {
    let mut paths = serde_json::Map::new();
    for k in KINDS {
        let path = if k.namespaced {
            format!("/api/v1/namespaces/{{namespace}}/{}/{{name}}", k.resource)
        } else {
            format!("/api/v1/{}/{{name}}", k.resource)
        };
        paths.insert(
            path,
            json!({
                "patch": {
                    "operationId": format!("patchCoreV1{}", k.kind),
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": k.kind},
                }
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                Some(Ok(b)) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (proleptic Gregorian), after H. Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The inverse of `rfc3339`, for the AGE column.
pub(super) fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil date, the inverse of the conversion above.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// A duration as kubectl prints ages: `45s`, `5m`, `3h`, `2d`.
pub(super) fn age(created: &str) -> String {
    let Some(t) = parse_rfc3339(created) else {
        return "<unknown>".into();
    };
    let secs = now_secs().saturating_sub(t);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        for t in [0, 951_782_400, 1_735_689_599, now_secs()] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            percent_decode("metadata.name%3Dweb-1"),
            "metadata.name=web-1"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }
}
