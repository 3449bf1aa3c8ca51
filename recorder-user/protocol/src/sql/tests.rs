//! Decoding of fixtures recorded from real servers and clients through a loopback relay (see
//! `tests/fixtures/sql/README.md`): exact statements, parameters, users, databases and results.

use super::*;

mod edge;
mod fuzz;

/// One recorded chunk: its direction and bytes.
pub(super) type Chunk = (Direction, Vec<u8>);

/// Reads a fixture: records of direction (0 to server, 1 to client), u32 LE length, bytes.
pub(super) fn fixture(name: &str) -> Vec<Chunk> {
    let path = format!(
        "{}/tests/fixtures/sql/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut chunks = Vec::new();
    let mut rest = raw.as_slice();
    while let [dir, a, b, c, d, tail @ ..] = rest {
        let len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
        let dir = if *dir == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        chunks.push((dir, tail[..len].to_vec()));
        rest = &tail[len..];
    }
    assert!(rest.is_empty(), "{path}: trailing bytes");
    chunks
}

pub(super) const PG_FIXTURES: [&str; 7] = [
    "pg_psql_simple",
    "pg_pgbench",
    "pg_pgbench_setup",
    "pg_tls",
    "pg_permission",
    "pg_cleartext_password",
    "pg_psycopg",
];
pub(super) const MY_FIXTURES: [&str; 6] = [
    "my_node",
    "my_cli",
    "my_permission",
    "my_tls",
    "my_pymysql",
    "my_prepared",
];

/// The plaintext of TLS sessions (what the TLS hooks deliver), decodable from a fresh decoder.
pub(super) const TLS_PLAINTEXT_FIXTURES: [&str; 2] = ["pg_tls_plaintext", "my_tls_plaintext"];

pub(super) fn all_fixture_names() -> impl Iterator<Item = &'static str> {
    PG_FIXTURES
        .into_iter()
        .chain(MY_FIXTURES)
        .chain(TLS_PLAINTEXT_FIXTURES)
}

pub(super) fn decoder_for(name: &str) -> AnyDecoder {
    AnyDecoder::new(if name.starts_with("pg_") {
        Protocol::Postgresql
    } else {
        Protocol::Mysql
    })
}

pub(super) fn decode(d: &mut impl Decoder, chunks: &[Chunk]) -> Vec<Output> {
    let mut out = Vec::new();
    for (dir, bytes) in chunks {
        d.feed(*dir, bytes, &mut out);
    }
    d.finish(&mut out);
    out
}

fn decode_without_finish(d: &mut impl Decoder, chunks: &[Chunk]) -> Vec<Output> {
    let mut out = Vec::new();
    for (dir, bytes) in chunks {
        d.feed(*dir, bytes, &mut out);
    }
    out
}

pub(super) fn decode_fixture(name: &str) -> Vec<Output> {
    decode(&mut decoder_for(name), &fixture(name))
}

pub(super) fn sql(outputs: &[Output]) -> Vec<&SqlEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Sql(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// (text, status, result) of each statement.
fn summary(outputs: &[Output]) -> Vec<(&str, Status, &str)> {
    sql(outputs)
        .into_iter()
        .map(|e| (e.text.as_str(), e.status, e.result.as_str()))
        .collect()
}

fn params(e: &SqlEvent) -> Vec<Option<&str>> {
    e.params.iter().map(|p| p.as_deref()).collect()
}

fn assert_identity(outputs: &[Output], user: &str, database: &str, system: Protocol) {
    for e in sql(outputs) {
        assert_eq!(e.user.as_deref(), Some(user), "{e:?}");
        assert_eq!(e.database.as_deref(), Some(database), "{e:?}");
        assert_eq!(e.db_system, system);
        assert!(!e.truncated, "{e:?}");
    }
}

fn only_sql(outputs: &[Output]) {
    let others: Vec<_> = outputs
        .iter()
        .filter(|o| !matches!(o, Output::Sql(_)))
        .collect();
    assert!(others.is_empty(), "unexpected outputs: {others:?}");
}

const NOT_RUN: &str = postgres::NOT_EXECUTED;
const PG_SYNTAX: &str = "ERROR 42601: syntax error at or near \"SELEC\"";

#[test]
fn psql_simple_protocol_one_event_per_statement_with_its_tag() {
    use Status::{Error, Ok};
    let out = decode_fixture("pg_psql_simple");
    only_sql(&out);
    assert_identity(&out, "alice", "shop", Protocol::Postgresql);
    assert_eq!(
        summary(&out),
        [
            (
                "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric)",
                Ok,
                "CREATE TABLE"
            ),
            (
                "INSERT INTO items VALUES (1, 'apple', 1.5)",
                Ok,
                "INSERT 0 1"
            ),
            (
                "INSERT INTO items VALUES (2, 'pear', 2.0), (3, 'plum', 0.5)",
                Ok,
                "INSERT 0 2"
            ),
            ("SELECT id, name FROM items ORDER BY id", Ok, "SELECT 3"),
            ("SELEC 1", Error, PG_SYNTAX),
            // COPY: the statement and its tag; the rows travelled as CopyData, never recorded.
            ("COPY items FROM STDIN", Ok, "COPY 1"),
            ("COPY items TO STDOUT", Ok, "COPY 4"),
            // One Query string with three statements: three events, each with its own tag.
            (
                "UPDATE items SET price = price + 1 WHERE id < 3",
                Ok,
                "UPDATE 2"
            ),
            ("SELECT count(*) FROM items", Ok, "SELECT 1"),
            ("DELETE FROM items WHERE id = 4", Ok, "DELETE 1"),
            // A syntax error fails the whole string before anything runs; its position names
            // the statement at fault.
            ("SELECT 1", Error, NOT_RUN),
            ("SELEC 2", Error, PG_SYNTAX),
            ("SELECT 3", Error, NOT_RUN),
        ]
    );
    let copied = out.iter().any(|o| format!("{o:?}").contains("fig"));
    assert!(!copied, "COPY data must not be recorded");
}

#[test]
fn psql_permission_error_carries_sqlstate_42501() {
    let out = decode_fixture("pg_permission");
    only_sql(&out);
    assert_identity(&out, "bob", "shop", Protocol::Postgresql);
    assert_eq!(
        summary(&out),
        [(
            "SELECT * FROM items",
            Status::Error,
            "ERROR 42501: permission denied for table items"
        )]
    );
}

#[test]
fn passwords_are_never_recorded() {
    // Cleartext password authentication: the password is in the captured bytes...
    let chunks = fixture("pg_cleartext_password");
    let secret = b"carol-cleartext-pw";
    assert!(
        chunks
            .iter()
            .any(|(_, b)| b.windows(secret.len()).any(|w| w == secret))
    );
    // ...and nowhere in what is decoded from them.
    let out = decode(&mut PostgresDecoder::new(), &chunks);
    assert!(!format!("{out:?}").contains("carol-cleartext-pw"));
    assert_identity(&out, "carol", "shop", Protocol::Postgresql);
    assert_eq!(
        summary(&out),
        [("SELECT current_user", Status::Ok, "SELECT 1")]
    );
    for name in all_fixture_names() {
        let text = format!("{:?}", decode_fixture(name));
        for pw in ["alice-scram-pw", "alice-my-pw", "bob-my-pw"] {
            assert!(!text.contains(pw), "{name} leaks {pw}");
        }
    }
}

#[test]
fn tls_upgrade_stops_raw_decoding() {
    for name in ["pg_tls", "my_tls"] {
        assert_eq!(decode_fixture(name), [Output::TlsStarted], "{name}");
    }
    // The bytes after the upgrade are TLS records indeed.
    let chunks = fixture("pg_tls");
    let hello = chunks
        .iter()
        .filter(|(d, _)| *d == Direction::ToServer)
        .nth(1)
        .map(|c| &c.1);
    assert!(looks_like_tls_record(hello.expect("a ClientHello chunk")));
    assert!(!looks_like_tls_record(&chunks[0].1));
}

/// The plaintext inside a TLS session, as the TLS hooks deliver it, continues the decoding of
/// the raw stream that saw the upgrade.
#[test]
fn postgres_statements_inside_tls() {
    let mut raw = PostgresDecoder::new();
    let before = decode_without_finish(&mut raw, &fixture("pg_tls_raw"));
    assert_eq!(before, [Output::TlsStarted]);
    let plaintext = fixture("pg_tls_plaintext");
    assert_eq!(
        guess(Direction::ToServer, &plaintext[0].1),
        Some(Protocol::Postgresql)
    );
    let out = decode(&mut raw.for_tls_plaintext(), &plaintext);
    only_sql(&out);
    assert_identity(&out, "alice", "shop", Protocol::Postgresql);
    let got: Vec<_> = sql(&out)
        .into_iter()
        .map(|e| (e.text.as_str(), params(e), e.result.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("SELECT $1::int + 1", vec![Some("41")], "SELECT 1"),
            (
                "UPDATE items SET name = $1 WHERE id = $2",
                vec![Some("apricot"), Some("1")],
                "UPDATE 1"
            ),
        ]
    );
}

#[test]
fn mysql_statements_inside_tls() {
    let mut raw = MysqlDecoder::new();
    let before = decode_without_finish(&mut raw, &fixture("my_tls_raw"));
    assert_eq!(before, [Output::TlsStarted]);
    let plaintext = fixture("my_tls_plaintext");
    assert_eq!(
        guess(Direction::ToServer, &plaintext[0].1),
        Some(Protocol::Mysql)
    );
    let out = decode(&mut raw.for_tls_plaintext(), &plaintext);
    only_sql(&out);
    assert_identity(&out, "alice", "shop", Protocol::Mysql);
    assert_eq!(
        summary(&out),
        [
            ("SELECT 1", Status::Ok, "1 row in set"),
            (
                "UPDATE items SET name = 'apricot' WHERE id = 1",
                Status::Ok,
                "OK, 1 row affected"
            ),
        ]
    );
}

#[test]
fn psycopg_extended_protocol_with_text_and_binary_parameters() {
    use Status::{Error, Ok};
    let out = decode_fixture("pg_psycopg");
    only_sql(&out);
    assert_identity(&out, "alice", "shop", Protocol::Postgresql);
    let events = sql(&out);
    let insert = "INSERT INTO t VALUES ($1, $2, $3)";
    let select = "SELECT id, name FROM t WHERE id >= $1 ORDER BY id";
    let expected: Vec<(&str, Vec<Option<&str>>, Status, &str)> = vec![
        (
            "CREATE TABLE t (id int8 PRIMARY KEY, name text, ok bool)",
            vec![],
            Ok,
            "CREATE TABLE",
        ),
        (
            insert,
            vec![Some("1"), Some("one"), Some("t")],
            Ok,
            "INSERT 0 1",
        ),
        // Binary format (%b): int8 and bool decoded from the OIDs declared by Parse.
        (
            insert,
            vec![Some("2"), Some("two"), Some("f")],
            Ok,
            "INSERT 0 1",
        ),
        (insert, vec![Some("3"), None, None], Ok, "INSERT 0 1"),
        // prepare=True: a named statement, executed twice (the second time without Parse).
        (select, vec![Some("1")], Ok, "SELECT 3"),
        (select, vec![Some("1")], Ok, "SELECT 3"),
        // Bind fails: the error belongs to the statement whose Execute was skipped.
        (
            "SELECT $1::int",
            vec![Some("notanint")],
            Error,
            "ERROR 22P02: invalid input syntax for type integer: \"notanint\"",
        ),
        // Parse fails.
        (
            "SELEC $1",
            vec![Some("1")],
            Error,
            "ERROR 42601: syntax error at or near \"SELEC\"",
        ),
        // Pipeline mode: three Parse/Bind/Execute before one Sync.
        (
            "UPDATE t SET ok = $1 WHERE id = $2",
            vec![Some("t"), Some("2")],
            Ok,
            "UPDATE 1",
        ),
        (
            "DELETE FROM t WHERE id = $1",
            vec![Some("3")],
            Ok,
            "DELETE 1",
        ),
        ("SELECT count(*) FROM t", vec![], Ok, "SELECT 1"),
    ];
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.text.as_str(), params(e), e.status, e.result.as_str()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn pgbench_prepared_select_only_transactions() {
    let out = decode_fixture("pg_pgbench");
    only_sql(&out);
    assert_identity(&out, "alice", "shop", Protocol::Postgresql);
    let events = sql(&out);
    // One Parse of statement P_0, then three Bind/Describe/Execute/Sync with a random account.
    assert_eq!(events.len(), 3);
    for e in events {
        assert_eq!(
            e.text,
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
        );
        assert_eq!((e.status, e.result.as_str()), (Status::Ok, "SELECT 1"));
        let aid: u32 = e.params[0]
            .as_deref()
            .and_then(|p| p.parse().ok())
            .expect("an aid");
        assert!(e.params.len() == 1 && (1..=100_000).contains(&aid), "{e:?}");
    }
    let setup = decode_fixture("pg_pgbench_setup");
    assert_eq!(sql(&setup).len(), 2);
    assert_eq!(
        summary(&setup)[0],
        (
            "select count(*) from pgbench_branches",
            Status::Ok,
            "SELECT 1"
        )
    );
}

#[test]
fn postgres_decoding_picks_up_a_connection_already_running() {
    let chunks = fixture("pg_psql_simple");
    // Start at the first Query, as if capture began after the login.
    let first_query = chunks
        .iter()
        .position(|(d, b)| *d == Direction::ToServer && b[0] == b'Q');
    let out = decode(
        &mut PostgresDecoder::new(),
        &chunks[first_query.expect("a Query")..],
    );
    only_sql(&out);
    let full = decode_fixture("pg_psql_simple");
    assert_eq!(summary(&out), summary(&full));
    assert!(
        sql(&out)
            .iter()
            .all(|e| e.user.is_none() && e.database.is_none())
    );
}

const MY_SYNTAX: &str = "ERROR 1064 (42000): You have an error in your SQL syntax; check the manual \
                         that corresponds to your MariaDB server version for the right syntax to \
                         use near 'SELEC 1' at line 1";

#[test]
fn mariadb_cli_text_protocol_with_ok_err_and_result_sets() {
    use Status::{Error, Ok};
    let out = decode_fixture("my_cli");
    only_sql(&out);
    assert_eq!(
        summary(&out),
        [
            (
                "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20))",
                Ok,
                "OK, 0 rows affected"
            ),
            (
                "INSERT INTO items VALUES (1, 'apple')",
                Ok,
                "OK, 1 row affected"
            ),
            (
                "INSERT INTO items VALUES (2, 'pear'), (3, 'plum')",
                Ok,
                "OK, 2 rows affected"
            ),
            (
                "SELECT id, name FROM items ORDER BY id",
                Ok,
                "3 rows in set"
            ),
            ("SELEC 1", Error, MY_SYNTAX),
            (
                "SELECT * FROM nosuch",
                Error,
                "ERROR 1146 (42S02): Table 'shop.nosuch' doesn't exist"
            ),
            // The client's `use mysql` command: it asks DATABASE(), then sends COM_INIT_DB.
            ("SELECT DATABASE()", Ok, "1 row in set"),
            ("USE mysql", Ok, "OK, 0 rows affected"),
            ("SELECT DATABASE()", Ok, "1 row in set"),
            // `USE shop;` typed as SQL is sent as COM_INIT_DB by the client too.
            ("USE shop", Ok, "OK, 0 rows affected"),
            (
                "UPDATE items SET name = 'x' WHERE id > 10",
                Ok,
                "OK, 0 rows affected"
            ),
        ]
    );
    // The database follows COM_INIT_DB: each event carries the database current when sent.
    let dbs: Vec<_> = sql(&out)
        .iter()
        .map(|e| e.database.as_deref().unwrap_or("-"))
        .collect();
    let expected = ["shop"; 8].into_iter().chain(["mysql", "mysql", "shop"]);
    assert_eq!(dbs, expected.collect::<Vec<_>>());
    assert!(
        sql(&out)
            .iter()
            .all(|e| e.user.as_deref() == Some("alice") && e.params.is_empty())
    );
}

#[test]
fn mariadb_permission_error_1142() {
    let out = decode_fixture("my_permission");
    only_sql(&out);
    assert_identity(&out, "bob", "shop", Protocol::Mysql);
    let denied = "ERROR 1142 (42000): INSERT command denied to user 'bob'@'localhost' for table \
                  `shop`.`items`";
    assert_eq!(
        summary(&out),
        [(
            "INSERT INTO items VALUES (9, 'nine')",
            Status::Error,
            denied
        )]
    );
}

#[test]
fn pymysql_multi_statement_query_reports_every_result() {
    use Status::Ok;
    let out = decode_fixture("my_pymysql");
    only_sql(&out);
    assert_identity(&out, "alice", "shop", Protocol::Mysql);
    assert_eq!(
        summary(&out),
        [
            ("SET NAMES utf8mb4", Ok, "OK, 0 rows affected"),
            (
                "INSERT INTO items VALUES (20, 'it\\'s')",
                Ok,
                "OK, 1 row affected"
            ),
            ("SELECT id FROM items WHERE id >= 20", Ok, "1 row in set"),
            (
                "SELECT 1; UPDATE items SET name = 'y' WHERE id = 20",
                Ok,
                "1 row in set; OK, 1 row affected"
            ),
        ]
    );
}

#[test]
fn connector_prepared_statements_with_binary_parameters() {
    use Status::{Error, Ok};
    let out = decode_fixture("my_prepared");
    only_sql(&out);
    assert_identity(&out, "alice", "shop", Protocol::Mysql);
    let insert = "INSERT INTO items VALUES (?, ?)";
    let prepare_error = MY_SYNTAX.replace("SELEC 1", "SELEC ?");
    let expected: Vec<(&str, Vec<Option<&str>>, Status, &str)> = vec![
        (
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'",
            vec![],
            Ok,
            "OK, 0 rows affected",
        ),
        (
            "SET @@session.autocommit = ON",
            vec![],
            Ok,
            "OK, 0 rows affected",
        ),
        (
            insert,
            vec![Some("30"), Some("thirty")],
            Ok,
            "OK, 1 row affected",
        ),
        (insert, vec![Some("31"), None], Ok, "OK, 1 row affected"),
        (
            "SELECT id, name FROM items WHERE id > ? AND id < ?",
            vec![Some("2"), Some("100")],
            Ok,
            "4 rows in set",
        ),
        (
            "SELECT ?, ?, ?",
            vec![Some("1.5"), Some("2024-05-06 07:08:09"), Some("2023-01-02")],
            Ok,
            "1 row in set",
        ),
        (
            insert,
            vec![Some("30"), Some("again")],
            Error,
            "ERROR 1062 (23000): Duplicate entry '30' for key 'PRIMARY'",
        ),
        // COM_STMT_PREPARE fails: recorded with the prepare's text and error.
        ("SELEC ?", vec![], Error, &prepare_error),
    ];
    let got: Vec<_> = sql(&out)
        .into_iter()
        .map(|e| (e.text.as_str(), params(e), e.status, e.result.as_str()))
        .collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!((g.0, &g.1, g.2, g.3), (e.0, &e.1, e.2, e.3));
    }
}

#[test]
fn mariadb_node_connector_deprecate_eof_and_pipelined_prepare() {
    use Status::{Error, Ok};
    let chunks = fixture("my_node");
    // The client asks for CLIENT_DEPRECATE_EOF (and MariaDB's metadata caching).
    let caps = u32::from_le_bytes(chunks[1].1[4..8].try_into().unwrap());
    assert_ne!(caps & (1 << 24), 0);
    let out = decode(&mut MysqlDecoder::new(), &chunks);
    only_sql(&out);
    assert_identity(&out, "alice", "shop", Protocol::Mysql);
    let select = "SELECT id, name FROM items WHERE id > ? AND name <> ?";
    let expected: Vec<(&str, Vec<Option<&str>>, Status, &str)> = vec![
        ("SET NAMES utf8mb4", vec![], Ok, "OK, 0 rows affected"),
        (
            "INSERT INTO items VALUES (40, 'forty')",
            vec![],
            Ok,
            "OK, 1 row affected",
        ),
        (
            "SELECT id, name FROM items WHERE id >= 30 ORDER BY id",
            vec![],
            Ok,
            "3 rows in set",
        ),
        (select, vec![Some("30"), Some("x")], Ok, "1 row in set"),
        // Executed again: the server skips the column definitions it knows the client cached.
        (select, vec![Some("35"), Some("y")], Ok, "1 row in set"),
        // COM_STMT_PREPARE and COM_STMT_EXECUTE(-1) sent together, before the prepare's answer.
        (
            "UPDATE items SET name = ? WHERE id = ?",
            vec![Some("FORTY"), Some("40")],
            Ok,
            "OK, 1 row affected",
        ),
        ("SELEC 1", vec![], Error, MY_SYNTAX),
    ];
    let got: Vec<_> = sql(&out)
        .into_iter()
        .map(|e| (e.text.as_str(), params(e), e.status, e.result.as_str()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn mysql_plaintext_of_a_tls_connection_starts_at_the_handshake_response() {
    // What the TLS hooks deliver: everything after the greeting, which went over the raw stream.
    let chunks = fixture("my_cli");
    let mut raw = MysqlDecoder::new();
    let mut out = Vec::new();
    raw.feed(chunks[0].0, &chunks[0].1, &mut out);
    assert!(out.is_empty());
    let mut plain = raw.for_tls_plaintext();
    let after = decode(&mut plain, &chunks[1..]);
    assert_eq!(after, decode_fixture("my_cli"));
    // Without knowing the greeting at all, the handshake response still gives user and database.
    assert_eq!(decode(&mut MysqlDecoder::new(), &chunks[1..]), after);
}

#[test]
fn guess_detects_the_protocol_from_the_first_bytes() {
    for name in PG_FIXTURES {
        let chunks = fixture(name);
        assert_eq!(
            guess(Direction::ToServer, &chunks[0].1),
            Some(Protocol::Postgresql),
            "{name}"
        );
        assert_eq!(guess(Direction::ToClient, &chunks[0].1), None, "{name}");
    }
    for name in MY_FIXTURES {
        let chunks = fixture(name);
        assert_eq!(
            chunks[0].0,
            Direction::ToClient,
            "{name}: the server speaks first"
        );
        assert_eq!(
            guess(Direction::ToClient, &chunks[0].1),
            Some(Protocol::Mysql),
            "{name}"
        );
        assert_eq!(guess(Direction::ToServer, &chunks[0].1), None, "{name}");
        assert_eq!(
            guess(Direction::ToServer, &chunks[1].1),
            Some(Protocol::Mysql),
            "{name}"
        );
        assert!(!looks_like_tls_record(&chunks[0].1));
    }
    assert_eq!(guess(Direction::ToServer, b"GET / HTTP/1.1\r\n"), None);
    assert_eq!(guess(Direction::ToServer, &[]), None);
}

/// Feeding a fixture split at every byte position gives the same outputs as feeding it in the
/// chunks it was captured in.
#[test]
fn split_at_every_byte_position_gives_identical_outputs() {
    for name in all_fixture_names() {
        let chunks = fixture(name);
        let expected = decode_fixture(name);
        for (i, (dir, bytes)) in chunks.iter().enumerate() {
            for cut in 1..bytes.len() {
                let mut split = chunks.clone();
                split[i] = (*dir, bytes[..cut].to_vec());
                split.insert(i + 1, (*dir, bytes[cut..].to_vec()));
                assert_eq!(
                    decode(&mut decoder_for(name), &split),
                    expected,
                    "{name} chunk {i} at {cut}"
                );
            }
        }
        let bytewise: Vec<Chunk> = chunks
            .iter()
            .flat_map(|(d, b)| b.iter().map(move |x| (*d, vec![*x])))
            .collect();
        assert_eq!(
            decode(&mut decoder_for(name), &bytewise),
            expected,
            "{name} byte by byte"
        );
    }
}

/// What a held write would run: each client chunk of a real session gives the statements it
/// completed, and a statement split over two writes comes with the second.
#[test]
fn the_statements_each_write_sends_are_known_before_any_answer() {
    let mut d = AnyDecoder::new(Protocol::Postgresql);
    let mut out = Vec::new();
    let mut sent = Vec::new();
    for (dir, bytes) in fixture("pg_tls_plaintext") {
        d.feed(dir, &bytes, &mut out);
        if dir == Direction::ToServer {
            sent.extend(d.take_sent());
        }
    }
    assert!(sent.contains(&"SELECT $1::int + 1".to_string()), "{sent:?}");
    assert!(sent.contains(&"UPDATE items SET name = $1 WHERE id = $2".to_string()));
    assert!(d.take_sent().is_empty(), "taken once");

    // A simple Query cut in two writes: nothing until its last byte is in.
    let mut d = PostgresDecoder::new();
    let mut out = Vec::new();
    let mut startup = Vec::new();
    let params = b"user\0alice\0database\0shop\0\0";
    startup.extend(((8 + params.len()) as u32).to_be_bytes());
    startup.extend(196_608u32.to_be_bytes());
    startup.extend(params);
    d.feed(Direction::ToServer, &startup, &mut out);
    let text = b"DROP TABLE payments\0";
    let mut query = vec![b'Q'];
    query.extend(((4 + text.len()) as u32).to_be_bytes());
    query.extend(text);
    let (first, second) = query.split_at(9);
    d.feed(Direction::ToServer, first, &mut out);
    assert!(
        d.take_sent().is_empty(),
        "an incomplete message runs nothing"
    );
    d.feed(Direction::ToServer, second, &mut out);
    assert_eq!(d.take_sent(), ["DROP TABLE payments"]);

    // Never asked for, the list keeps the last few only.
    for i in 0..40 {
        let text = format!("SELECT {i}\0");
        let mut q = vec![b'Q'];
        q.extend(((4 + text.len()) as u32).to_be_bytes());
        q.extend(text.as_bytes());
        d.feed(Direction::ToServer, &q, &mut out);
    }
    let kept = d.take_sent();
    assert_eq!(kept.len(), Sent::KEPT);
    assert_eq!(kept.last().map(String::as_str), Some("SELECT 39"));
}
