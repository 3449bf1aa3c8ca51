//! RFC 7541 Appendix C examples, verbatim, and error cases.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn decode(d: &mut Decoder, block: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    d.decode(&hex(block), |n, v| {
        out.push((
            String::from_utf8(n.to_vec()).unwrap(),
            String::from_utf8(v.to_vec()).unwrap(),
        ));
    })
    .unwrap();
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The dynamic table as (name, value), newest first, and its size.
fn table(d: &Decoder) -> (Vec<(String, String)>, usize) {
    let entries = d
        .table
        .entries
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8(n.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect();
    (entries, d.table_size())
}

const REQ1: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const REQ2: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQ3: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];

fn check_requests(blocks: [&str; 3]) {
    let mut d = Decoder::new();
    assert_eq!(decode(&mut d, blocks[0]), pairs(REQ1));
    assert_eq!(table(&d), (pairs(&[(":authority", "www.example.com")]), 57));
    assert_eq!(decode(&mut d, blocks[1]), pairs(REQ2));
    assert_eq!(
        table(&d),
        (
            pairs(&[
                ("cache-control", "no-cache"),
                (":authority", "www.example.com")
            ]),
            110
        )
    );
    assert_eq!(decode(&mut d, blocks[2]), pairs(REQ3));
    assert_eq!(
        table(&d),
        (
            pairs(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com")
            ]),
            164
        )
    );
}

/// C.3: requests without Huffman coding.
#[test]
fn rfc_c3_requests() {
    check_requests([
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]);
}

/// C.4: the same requests with Huffman coding.
#[test]
fn rfc_c4_requests_huffman() {
    check_requests([
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]);
}

const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

fn check_responses(blocks: [&str; 3]) {
    let mut d = Decoder::new();
    // The examples run with SETTINGS_HEADER_TABLE_SIZE 256, which forces evictions.
    d.table.max = 256;
    assert_eq!(
        decode(&mut d, blocks[0]),
        pairs(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", LOCATION)
        ])
    );
    assert_eq!(
        table(&d),
        (
            pairs(&[
                ("location", LOCATION),
                ("date", DATE1),
                ("cache-control", "private"),
                (":status", "302")
            ]),
            222
        )
    );
    assert_eq!(
        decode(&mut d, blocks[1]),
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", LOCATION)
        ])
    );
    assert_eq!(
        table(&d),
        (
            pairs(&[
                (":status", "307"),
                ("location", LOCATION),
                ("date", DATE1),
                ("cache-control", "private")
            ]),
            222
        )
    );
    assert_eq!(
        decode(&mut d, blocks[2]),
        pairs(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", DATE2),
            ("location", LOCATION),
            ("content-encoding", "gzip"),
            ("set-cookie", COOKIE)
        ])
    );
    assert_eq!(
        table(&d),
        (
            pairs(&[
                ("set-cookie", COOKIE),
                ("content-encoding", "gzip"),
                ("date", DATE2)
            ]),
            215
        )
    );
}

/// C.5: responses without Huffman coding, with evictions.
#[test]
fn rfc_c5_responses() {
    check_responses([
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
         3d31",
    ]);
}

/// C.6: the same responses with Huffman coding.
#[test]
fn rfc_c6_responses_huffman() {
    check_responses([
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ]);
}

/// C.1: integer examples (10 with a 5-bit prefix, 1337 with a 5-bit prefix, 42 at a byte
/// boundary).
#[test]
fn rfc_c1_integers() {
    assert_eq!(Input(&[0b0000_1010]).integer(5), Ok(10));
    assert_eq!(
        Input(&[0b0001_1111, 0b1001_1010, 0b0000_1010]).integer(5),
        Ok(1337)
    );
    assert_eq!(Input(&[0b0010_1010]).integer(8), Ok(42));
    assert_eq!(Input(&[0x1f, 0xff]).integer(5), Err(HpackError::Truncated));
    let huge = [0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(Input(&huge).integer(5), Err(HpackError::Integer));
    // 2^32 - 1 + 31 does not fit in 32 bits.
    assert_eq!(
        Input(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x0f]).integer(5),
        Err(HpackError::Integer)
    );
}

/// C.2.2 / C.2.3: literal without indexing and never indexed leave the table alone.
#[test]
fn rfc_c2_literals_not_indexed() {
    let mut d = Decoder::new();
    assert_eq!(
        decode(&mut d, "040c 2f73 616d 706c 652f 7061 7468"),
        pairs(&[(":path", "/sample/path")])
    );
    assert_eq!(
        decode(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74"),
        pairs(&[("password", "secret")])
    );
    assert_eq!(table(&d), (vec![], 0));
}

#[test]
fn errors() {
    let mut d = Decoder::new();
    let mut run = |bytes: &[u8]| d.decode(bytes, |_, _| {});
    assert_eq!(run(&[0x80]), Err(HpackError::Index(0)));
    assert_eq!(run(&[0xbe]), Err(HpackError::Index(62)));
    assert_eq!(run(&[0x40, 0x05, b'a']), Err(HpackError::Truncated));
    assert_eq!(run(&[0x40, 0x81, 0x00, 0x00]), Err(HpackError::Huffman));
    // A size update to 64 KiB + 1.
    assert_eq!(
        run(&[0x3f, 0xe2, 0xff, 0x03]),
        Err(HpackError::TableSize(65_536 + 1))
    );
}

#[test]
fn size_update_evicts_and_oversized_entry_empties() {
    let mut d = Decoder::new();
    decode(
        &mut d,
        "400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    );
    assert_eq!(table(&d).1, 54);
    // Size update to 0 empties the table, then back to 4096.
    decode(&mut d, "20 3fe1 1f");
    assert_eq!(table(&d), (vec![], 0));
    assert_eq!(d.table.max, 4096);
    // An entry bigger than the whole table: the table ends empty, the field is still decoded.
    d.table.max = 40;
    decode(
        &mut d,
        "400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    );
    assert_eq!(table(&d), (vec![], 0));
}

/// Past the list bound, fields stop being handed out but the table is still maintained.
#[test]
fn header_list_is_bounded() {
    let mut d = Decoder::new();
    d.table.max = MAX_TABLE_SIZE;
    // One entry of ~60 KiB value, then 10 references to it.
    let value = vec![b'x'; 60_000];
    let mut block = vec![0x40, 0x01, b'a', 0x7f];
    let mut n = value.len() - 127;
    while n >= 128 {
        block.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    block.push(n as u8);
    block.extend_from_slice(&value);
    block.extend(std::iter::repeat_n(0xbe, 10));
    block.extend_from_slice(&[0x40, 0x01, b'b', 0x01, b'c']);
    let mut seen = 0;
    d.decode(&block, |_, _| seen += 1).unwrap();
    assert_eq!(seen, 4);
    assert_eq!(d.table.entries.len(), 2);
}
