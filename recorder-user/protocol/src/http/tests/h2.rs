//! HTTP/2 streams built frame by frame.

use super::*;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

pub(in super::super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK integer with an N-bit prefix under `flags`.
fn int(out: &mut Vec<u8>, flags: u8, prefix: u8, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &str, huffman: bool) {
    if huffman {
        let coded = super::super::huffman::encode(s.as_bytes());
        int(out, 0x80, 7, coded.len());
        out.extend_from_slice(&coded);
    } else {
        int(out, 0, 7, s.len());
        out.extend_from_slice(s.as_bytes());
    }
}

/// How a field is written in a header block.
#[derive(Clone, Copy)]
enum Field<'a> {
    /// Indexed (static or dynamic table).
    Index(usize),
    /// Literal with a new name, not indexed.
    Plain(&'a str, &'a str),
    /// Literal with a new name, Huffman-coded, added to the dynamic table.
    Add(&'a str, &'a str),
    /// Literal with an indexed name, never indexed.
    Never(usize, &'a str),
}

fn block(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        match *f {
            Field::Index(i) => int(&mut out, 0x80, 7, i),
            Field::Plain(n, v) => {
                out.push(0);
                string(&mut out, n, false);
                string(&mut out, v, false);
            }
            Field::Add(n, v) => {
                out.push(0x40);
                string(&mut out, n, true);
                string(&mut out, v, true);
            }
            Field::Never(i, v) => {
                int(&mut out, 0x10, 4, i);
                string(&mut out, v, false);
            }
        }
    }
    out
}

/// A GET or other request's header block; `:authority` plain.
pub(in super::super) fn request(method: &str, path: &str) -> Vec<u8> {
    block(&[
        Field::Plain(":method", method),
        Field::Index(7),
        Field::Plain(":path", path),
        Field::Plain(":authority", "10.0.0.1:6443"),
        Field::Plain("user-agent", "kubectl/v1.31"),
    ])
}

pub(in super::super) fn response(status: u16) -> Vec<u8> {
    block(&[
        Field::Plain(":status", &status.to_string()),
        Field::Index(31),
    ])
}

fn settings() -> Vec<u8> {
    frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0, 0, 4, 0, 0x40, 0, 0])
}

/// The client side: preface, SETTINGS, then `frames`.
fn client(frames: &[Vec<u8>]) -> Chunk {
    let mut bytes = H2_PREFACE.to_vec();
    bytes.extend(settings());
    bytes.extend(frames.concat());
    (ToServer, bytes)
}

fn server(frames: &[Vec<u8>]) -> Chunk {
    let mut bytes = settings();
    bytes.extend(frame(SETTINGS, 1, 0, &[]));
    bytes.extend(frames.concat());
    (ToClient, bytes)
}

fn headers(stream: u32, block: &[u8]) -> Vec<u8> {
    frame(HEADERS, END_HEADERS, stream, block)
}

/// A typical kubectl-shaped exchange of several streams.
pub(in super::super) fn sample() -> Vec<Chunk> {
    vec![
        client(&[
            headers(
                1,
                &request("GET", "/api/v1/namespaces/default/pods?limit=500"),
            ),
            headers(
                3,
                &request("DELETE", "/api/v1/namespaces/default/pods/web-0"),
            ),
        ]),
        server(&[
            headers(3, &response(200)),
            frame(DATA, 0, 3, b"{\"kind\":\"Pod\"}"),
            headers(1, &response(404)),
            frame(DATA, END_STREAM, 1, b"GET /fake HTTP/1.1\r\n\r\n"),
            frame(DATA, END_STREAM, 3, b""),
        ]),
    ]
}

#[test]
fn interleaved_streams_answer_in_response_order() {
    let out = run(Version::Http2, &sample());
    assert_eq!(
        triples(&out),
        vec![
            t("DELETE", "/api/v1/namespaces/default/pods/web-0", Some(200)),
            t(
                "GET",
                "/api/v1/namespaces/default/pods?limit=500",
                Some(404)
            ),
        ]
    );
    let HttpOutput::Exchange(e) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(e.stream_id, Some(3));
    assert_eq!(e.authority.as_deref(), Some("10.0.0.1:6443"));
    assert_eq!(e.version, Version::Http2);
    assert!(!e.truncated);
    for size in [1, 2, 3, 7, 9, 10, 100] {
        assert_eq!(
            run_split(Version::Http2, &sample(), size),
            out,
            "split {size}"
        );
    }
}

#[test]
fn continuation_padding_and_priority() {
    let req = request("GET", "/apis/apps/v1/deployments?watch=true");
    let (a, rest) = req.split_at(3);
    let (b, c) = rest.split_at(20);
    // HEADERS with PADDED and PRIORITY: pad length 5, 5 priority bytes, fragment, padding.
    let mut first = vec![5, 0x80, 0, 0, 1, 15];
    first.extend_from_slice(a);
    first.extend_from_slice(&[0; 5]);
    let resp = response(200);
    let mut padded = vec![2];
    padded.extend_from_slice(&resp);
    padded.extend_from_slice(&[0, 0]);
    let chunks = vec![
        client(&[
            frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, &first),
            frame(CONTINUATION, 0, 5, b),
            frame(CONTINUATION, END_HEADERS, 5, c),
        ]),
        server(&[frame(HEADERS, PADDED | END_HEADERS, 5, &padded)]),
    ];
    let out = run(Version::Http2, &chunks);
    assert_eq!(
        triples(&out),
        vec![t("GET", "/apis/apps/v1/deployments?watch=true", Some(200))]
    );
    assert_eq!(run_split(Version::Http2, &chunks, 1), out);
}

#[test]
fn reset_streams_are_emitted_without_status() {
    let chunks = vec![
        client(&[
            headers(1, &request("GET", "/watch")),
            headers(3, &request("GET", "/logs")),
            frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()),
        ]),
        server(&[
            frame(RST_STREAM, 0, 3, &2u32.to_be_bytes()),
            // A late response on the reset stream pairs with nothing.
            headers(1, &response(200)),
        ]),
    ];
    assert_eq!(
        triples(&run(Version::Http2, &chunks)),
        vec![t("GET", "/watch", None), t("GET", "/logs", None)]
    );
}

#[test]
fn informational_and_trailers_are_skipped() {
    let trailers = block(&[Field::Plain("grpc-status", "0")]);
    let chunks = vec![
        client(&[
            headers(1, &request("POST", "/upload")),
            frame(DATA, END_STREAM, 1, b"body"),
            // Request trailers: HEADERS without :method.
            headers(1, &trailers),
        ]),
        server(&[
            headers(1, &response(103)),
            headers(1, &response(201)),
            headers(1, &trailers),
        ]),
    ];
    assert_eq!(
        triples(&run(Version::Http2, &chunks)),
        vec![t("POST", "/upload", Some(201))]
    );
}

/// Requests and responses through each side's dynamic table, Huffman-coded, with indexed
/// names; the two directions' tables are independent (index 62 differs per side).
#[test]
fn dynamic_tables_per_direction() {
    let chunks = vec![
        client(&[
            headers(
                1,
                &block(&[
                    Field::Index(2),
                    Field::Add(":path", "/api/v1/namespaces/kube-system/secrets"),
                    Field::Add(":authority", "cluster.local"),
                    Field::Never(23, "Bearer abc"),
                ]),
            ),
            // Index 62 is the newest entry (:authority), 63 the path.
            headers(
                3,
                &block(&[Field::Index(2), Field::Index(63), Field::Index(62)]),
            ),
        ]),
        server(&[
            headers(1, &block(&[Field::Add(":status", "403")])),
            headers(3, &block(&[Field::Index(62)])),
        ]),
    ];
    let out = run(Version::Http2, &chunks);
    let path = "/api/v1/namespaces/kube-system/secrets";
    assert_eq!(
        triples(&out),
        vec![t("GET", path, Some(403)), t("GET", path, Some(403))]
    );
    let HttpOutput::Exchange(e) = &out[1] else {
        panic!()
    };
    assert_eq!(e.authority.as_deref(), Some("cluster.local"));
}

/// `PUSH_PROMISE` adds to the server's table even though it makes no exchange.
#[test]
fn push_promise_keeps_hpack_state() {
    let mut promise = 2u32.to_be_bytes().to_vec();
    promise.extend(block(&[
        Field::Index(2),
        Field::Add(":path", "/style.css"),
        Field::Add(":status", "202"),
    ]));
    let chunks = vec![
        client(&[headers(1, &request("GET", "/"))]),
        server(&[
            frame(PUSH_PROMISE, END_HEADERS, 1, &promise),
            // The pushed response on stream 2 pairs with no request.
            headers(2, &response(200)),
            headers(1, &block(&[Field::Index(62)])),
        ]),
    ];
    assert_eq!(
        triples(&run(Version::Http2, &chunks)),
        vec![t("GET", "/", Some(202))]
    );
}

#[test]
fn goaway_answers_streams_above_the_last() {
    let mut goaway = 1u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&[0, 0, 0, 0]);
    goaway.extend_from_slice(b"debug data is skipped");
    let chunks = vec![
        client(&[
            headers(1, &request("GET", "/a")),
            headers(3, &request("GET", "/b")),
            headers(5, &request("GET", "/c")),
        ]),
        server(&[frame(GOAWAY, 0, 0, &goaway), headers(1, &response(200))]),
    ];
    let out = run(Version::Http2, &chunks);
    assert_eq!(
        triples(&out),
        vec![
            t("GET", "/b", None),
            t("GET", "/c", None),
            t("GET", "/a", Some(200)),
        ]
    );
}

#[test]
fn bad_preface_is_one_notice() {
    let chunks = vec![
        (ToServer, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".to_vec()),
        (ToServer, headers(1, &request("GET", "/"))),
    ];
    let out = run(Version::Http2, &chunks);
    assert_eq!(notices(&out).len(), 1, "{out:?}");
    assert_eq!(notices(&out)[0].reason, MALFORMED_HTTP);
    assert!(triples(&out).is_empty());
}

#[test]
fn frame_inside_open_header_block_is_malformed() {
    let req = request("GET", "/x");
    let chunks = vec![
        client(&[
            frame(HEADERS, 0, 1, &req[..4]),
            frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]),
            frame(CONTINUATION, END_HEADERS, 1, &req[4..]),
        ]),
        server(&[headers(1, &response(200))]),
    ];
    let out = run(Version::Http2, &chunks);
    assert_eq!(notices(&out).len(), 1);
    assert!(triples(&out).is_empty());
}

/// A broken client header block kills the client direction only: earlier requests still get
/// their responses.
#[test]
fn broken_client_block_stops_that_direction() {
    let chunks = vec![
        client(&[
            headers(1, &request("GET", "/ok")),
            headers(3, &[0x80 | 0x7f, 0x7f]), // index 254: not in any table
            headers(5, &request("GET", "/never-seen")),
        ]),
        server(&[headers(1, &response(200)), headers(3, &response(200))]),
    ];
    let out = run(Version::Http2, &chunks);
    assert_eq!(triples(&out), vec![t("GET", "/ok", Some(200))]);
    let n = notices(&out);
    assert_eq!(n.len(), 1);
    assert!(
        n[0].detail.contains("client header block on stream 3"),
        "{n:?}"
    );
}

/// A broken server direction: waiting requests go out at once without status, and so do
/// later ones.
#[test]
fn broken_server_block_flushes_requests() {
    let chunks = vec![
        client(&[headers(1, &request("GET", "/a"))]),
        server(&[headers(1, &[0x40, 0x85, 0xff, 0xff, 0xff, 0xff, 0xff])]),
        (ToServer, headers(3, &request("GET", "/b"))),
        (ToClient, headers(3, &response(200))),
    ];
    let out = run(Version::Http2, &chunks);
    assert_eq!(
        triples(&out),
        vec![t("GET", "/a", None), t("GET", "/b", None)]
    );
    assert_eq!(notices(&out).len(), 1);
    assert!(matches!(out[0], HttpOutput::Notice(_)));
}

#[test]
fn oversized_header_block_is_refused_before_buffering() {
    // A HEADERS frame announcing 1 MiB: refused from its header, not after 1 MiB of buffering.
    let mut f = frame(HEADERS, 0, 1, &[]);
    f[0] = 0x10;
    let mut conn = HttpConn::new(Version::Http2);
    let mut out = Vec::new();
    conn.feed(ToServer, &client(&[f]).1, &mut out);
    conn.feed(ToServer, &vec![0u8; 300 * 1024], &mut out);
    assert_eq!(notices(&out).len(), 1);
    assert!(conn.buffered_bytes() < 1024);
}

/// Large DATA frames are skipped without being stored.
#[test]
fn data_is_not_buffered() {
    let mut conn = HttpConn::new(Version::Http2);
    let mut out = Vec::new();
    conn.feed(
        ToServer,
        &client(&[headers(1, &request("PUT", "/big"))]).1,
        &mut out,
    );
    let mut data = frame(DATA, 0, 1, &[]);
    data[..3].copy_from_slice(&[0xff, 0xff, 0xff]);
    conn.feed(ToServer, &data, &mut out);
    for _ in 0..63 {
        conn.feed(ToServer, &vec![b'x'; 256 * 1024], &mut out);
        assert!(conn.buffered_bytes() < 1024);
    }
    conn.feed(
        ToServer,
        &vec![b'x'; (1 << 24) - 1 - 63 * 256 * 1024],
        &mut out,
    );
    conn.feed(ToServer, &frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]), &mut out);
    assert_eq!(triples(&out), vec![t("PUT", "/big", None)]);
    assert!(notices(&out).is_empty());
}

#[test]
fn pending_requests_are_bounded() {
    let frames: Vec<Vec<u8>> = (0..300u32)
        .map(|i| headers(2 * i + 1, &request("GET", &format!("/r{i}"))))
        .collect();
    let mut conn = HttpConn::new(Version::Http2);
    let mut out = Vec::new();
    conn.feed(ToServer, &client(&frames).1, &mut out);
    let first: Vec<_> = (0..300 - MAX_PENDING)
        .map(|i| t("GET", &format!("/r{i}"), None))
        .collect();
    assert_eq!(triples(&out), first);
    out.clear();
    conn.flush(&mut out);
    assert_eq!(out.len(), MAX_PENDING);
    assert_eq!(
        triples(&out)[0],
        t("GET", &format!("/r{}", 300 - MAX_PENDING), None)
    );
}

#[test]
fn long_path_is_cut_and_flagged() {
    let path = format!("/{}", "p".repeat(MAX_TARGET_BYTES + 100));
    let chunks = vec![client(&[headers(1, &request("GET", &path))])];
    let out = run(Version::Http2, &chunks);
    let HttpOutput::Exchange(e) = &out[0] else {
        panic!()
    };
    assert_eq!(e.target.len(), MAX_TARGET_BYTES);
    assert!(e.truncated);
    assert_eq!(e.status, None);
}
