//! Properties: no argv and no request target makes the parsers panic, including inputs built
//! from the tokens they look for.

use proptest::prelude::*;

use super::*;

/// Tokens kubectl argv and API paths are made of, so random inputs reach the interesting
/// branches rather than only the "unknown" ones.
fn argv_token() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "-[a-zA-Z=é]{0,4}",
        "--[a-z-]{0,12}(=[a-z/:,.-]{0,6})?",
        prop::sample::select(vec![
            "--",
            "-",
            "-n",
            "-f",
            "-it",
            "--raw",
            "get",
            "exec",
            "cp",
            "create",
            "secret",
            "rollout",
            "set",
            "auth",
            "can-i",
            "top",
            "logs",
            "po,svc",
            "deploy/x",
            "ns/p:/x",
            ":",
            "a=b",
            "x-",
            "/",
            "config",
            "certificate",
            "taint",
            "apply",
            "view-last-applied",
        ])
        .prop_map(str::to_string),
    ]
}

fn target() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[a-z0-9%.:-]{0,8}",
        prop::sample::select(vec![
            "api",
            "apis",
            "v1",
            "namespaces",
            "watch",
            "proxy",
            "status",
            "finalize",
            "%",
            "%2",
            "%2F",
            "%ff",
            "",
            "..",
        ])
        .prop_map(str::to_string),
    ];
    let query = "[a-zA-Z=&;%+!.0-9]{0,20}";
    (
        "(https?://[a-z:0-9]{0,8})?",
        prop::collection::vec(segment, 0..8),
        prop::option::of(query),
    )
        .prop_map(|(origin, segments, query)| {
            let mut t = format!("{origin}/{}", segments.join("/"));
            if let Some(q) = query {
                t.push('?');
                t.push_str(&q);
            }
            t
        })
}

proptest! {
    #[test]
    fn kubectl_never_panics(
        argv0 in prop::sample::select(vec!["kubectl", "/usr/bin/kubectl", "sh"]),
        args in prop::collection::vec(argv_token(), 0..10),
    ) {
        let mut argv = vec![argv0.to_string()];
        argv.extend(args);
        let parsed = parse_kubectl(&argv);
        prop_assert_eq!(parsed.is_some(), argv0 != "sh");
    }

    #[test]
    fn api_never_panics(
        method in prop::sample::select(vec!["GET", "POST", "DELETE", "PATCH", "PUT", "HEAD", "X"]),
        target in target(),
        raw in any::<String>(),
    ) {
        let _ = api_request(method, &target);
        let _ = api_request(method, &raw);
        let _ = api_request(&raw, &target);
    }
}
