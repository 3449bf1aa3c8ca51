//! HTTP/1.1 streams.

use std::fmt::Write as _;

use super::*;

fn c(s: &str) -> Chunk {
    (ToServer, s.as_bytes().to_vec())
}

fn s(s: &str) -> Chunk {
    (ToClient, s.as_bytes().to_vec())
}

/// A chunked request body that contains a request line, chunk extensions and trailers; a
/// response with a Content-Length body that looks like a status line.
pub(in super::super) fn sample() -> Vec<Chunk> {
    vec![
        c(
            "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: k8s:6443\r\n\
           Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n\
           1f;ext=\"v\"\r\nGET /not-a-request HTTP/1.1\r\n\r\n\r\n\
           4\r\n\r\n\r\n\r\n\
           0\r\nX-Checksum: abc\r\n\r\n",
        ),
        s("HTTP/1.1 201 Created\r\nContent-Length: 17\r\n\r\nHTTP/1.1 500 Oops"),
        c("GET /healthz?verbose=1 HTTP/1.1\r\nhost: k8s:6443\r\n\r\n"),
        s(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n\
           4\r\nok\r\n\r\n0\r\n\r\n",
        ),
    ]
}

#[test]
fn bodies_are_skipped_not_parsed() {
    let out = run(Version::Http1, &sample());
    assert_eq!(
        triples(&out),
        vec![
            t("POST", "/api/v1/namespaces/default/configmaps", Some(201)),
            t("GET", "/healthz?verbose=1", Some(200)),
        ]
    );
    let HttpOutput::Exchange(e) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(e.authority.as_deref(), Some("k8s:6443"));
    assert_eq!((e.version, e.stream_id), (Version::Http1, None));
    for size in 1..12 {
        assert_eq!(
            run_split(Version::Http1, &sample(), size),
            out,
            "split {size}"
        );
    }
}

#[test]
fn pipelined_requests_pair_in_order() {
    let chunks = vec![
        c(
            "GET /a HTTP/1.1\r\nHost: h\r\n\r\nPUT /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz\
           DELETE /c HTTP/1.1\r\n\r\n",
        ),
        s(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 409 Conflict\r\n\
           Content-Length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    assert_eq!(
        triples(&run(Version::Http1, &chunks)),
        vec![
            t("GET", "/a", Some(200)),
            t("PUT", "/b", Some(409)),
            t("DELETE", "/c", Some(404))
        ]
    );
}

#[test]
fn head_204_304_have_no_body() {
    let chunks = vec![
        c(
            "HEAD /x HTTP/1.1\r\n\r\nDELETE /y HTTP/1.1\r\n\r\nGET /z HTTP/1.1\r\n\r\n\
           GET /w HTTP/1.1\r\n\r\n",
        ),
        s("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
           HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n\
           HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n\
           HTTP/1.0 200 OK\r\n\r\nrest of the connection HTTP/1.1 500 x\r\n\r\n"),
    ];
    assert_eq!(
        triples(&run(Version::Http1, &chunks)),
        vec![
            t("HEAD", "/x", Some(200)),
            t("DELETE", "/y", Some(204)),
            t("GET", "/z", Some(304)),
            t("GET", "/w", Some(200)),
        ]
    );
}

#[test]
fn continue_is_skipped() {
    let chunks = vec![
        c("POST /upload HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
        s("HTTP/1.1 100 Continue\r\n\r\n"),
        c("data"),
        s(
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\n\
           Content-Length: 0\r\n\r\n",
        ),
    ];
    assert_eq!(
        triples(&run(Version::Http1, &chunks)),
        vec![t("POST", "/upload", Some(201))]
    );
}

/// 101 ends decoding: what follows is another protocol (kubectl exec, port-forward).
#[test]
fn switching_protocols_stops() {
    let chunks = vec![
        c(
            "GET /api/v1/namespaces/d/pods/p/exec?command=sh HTTP/1.1\r\nConnection: Upgrade\r\n\
           Upgrade: websocket\r\n\r\n",
        ),
        s("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x01\x05hello"),
        c("\x02\x05garbage that is not HTTP"),
        s("more frames"),
    ];
    let out = run(Version::Http1, &chunks);
    assert_eq!(
        triples(&out),
        vec![t(
            "GET",
            "/api/v1/namespaces/d/pods/p/exec?command=sh",
            Some(101)
        )]
    );
    assert!(notices(&out).is_empty());
}

#[test]
fn garbage_is_one_notice_and_flushes() {
    let chunks = vec![
        c("GET /ok HTTP/1.1\r\n\r\n"),
        s("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        c("GET /waiting HTTP/1.1\r\n\r\n"),
        c("\x16\x03\x01 not http at all\r\n\r\n"),
        c("GET /after HTTP/1.1\r\n\r\n"),
        s("HTTP/1.1 200 OK\r\n\r\n"),
    ];
    let out = run(Version::Http1, &chunks);
    assert_eq!(
        triples(&out),
        vec![t("GET", "/ok", Some(200)), t("GET", "/waiting", None)]
    );
    assert_eq!(notices(&out).len(), 1);
    assert_eq!(notices(&out)[0].reason, MALFORMED_HTTP);
}

#[test]
fn bad_lengths_are_malformed() {
    for bad in [
        "Content-Length: 12x",
        "Content-Length: 1, 2",
        "Content-Length: 99999999999999999999",
        "Transfer-Encoding: gzip",
    ] {
        let chunks = vec![c(&format!("POST / HTTP/1.1\r\n{bad}\r\n\r\n"))];
        let out = run(Version::Http1, &chunks);
        assert_eq!(notices(&out).len(), 1, "{bad}");
        assert_eq!(triples(&out), vec![t("POST", "/", None)], "{bad}");
    }
    // The same length repeated is one length.
    let chunks = vec![c(
        "POST /a HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nxxGET /b HTTP/1.1\r\n\r\n",
    )];
    assert_eq!(
        triples(&run(Version::Http1, &chunks)),
        vec![t("POST", "/a", None), t("GET", "/b", None)]
    );
    // Chunk data longer than its size.
    let chunks = vec![s(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    )];
    assert_eq!(notices(&run(Version::Http1, &chunks)).len(), 1);
}

#[test]
fn heads_are_bounded() {
    let mut conn = HttpConn::new(Version::Http1);
    let mut out = Vec::new();
    conn.feed(ToServer, b"GET / HTTP/1.1\r\n", &mut out);
    for _ in 0..100 {
        conn.feed(
            ToServer,
            b"X-Long: 0123456789012345678901234567890123456789\r\n",
            &mut out,
        );
    }
    for _ in 0..2000 {
        conn.feed(ToServer, &[b'a'; 64], &mut out);
        assert!(conn.buffered_bytes() <= MAX_HEAD_BYTES);
    }
    assert_eq!(notices(&out).len(), 1);
    // Chunk lines too.
    let mut conn = HttpConn::new(Version::Http1);
    out.clear();
    conn.feed(
        ToClient,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        &mut out,
    );
    conn.feed(ToClient, &[b'1'; 10_000], &mut out);
    assert_eq!(notices(&out).len(), 1);
    assert_eq!(conn.buffered_bytes(), 0);
}

/// Bare LF line ends and blank lines between messages are accepted.
#[test]
fn lenient_line_ends() {
    let chunks = vec![
        c("GET /lf HTTP/1.1\nHost: a\n\n\r\n"),
        s("HTTP/1.1 200\nContent-Length: 0\n\n"),
    ];
    assert_eq!(
        triples(&run(Version::Http1, &chunks)),
        vec![t("GET", "/lf", Some(200))]
    );
}

#[test]
fn connect_tunnel_stops() {
    let chunks = vec![
        c("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n"),
        s("HTTP/1.1 200 Connection established\r\n\r\n"),
        c("\0\0\0\x08\x04\x52\x16\x2f"),
    ];
    let out = run(Version::Http1, &chunks);
    assert_eq!(triples(&out), vec![t("CONNECT", "db:5432", Some(200))]);
    assert!(notices(&out).is_empty());
}

/// Past the pending bound the oldest requests go out without status, and the responses that
/// answer them later are not paired with younger requests.
#[test]
fn evicted_requests_keep_the_pairing_right() {
    let n = MAX_PENDING + 10;
    let (mut requests, mut responses) = (String::new(), String::new());
    for i in 0..n {
        let _ = write!(requests, "GET /r{i} HTTP/1.1\r\n\r\n");
        let _ = write!(
            responses,
            "HTTP/1.1 {} OK\r\nContent-Length: 0\r\n\r\n",
            200 + i % 50
        );
    }
    let out = run(Version::Http1, &[c(&requests), s(&responses)]);
    let mut expected: Vec<_> = (0..10).map(|i| t("GET", &format!("/r{i}"), None)).collect();
    expected.extend((10..n).map(|i| t("GET", &format!("/r{i}"), Some(200 + (i % 50) as u16))));
    assert_eq!(triples(&out), expected);
}
