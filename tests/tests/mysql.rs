//! End-to-end: MySQL-protocol statements of watched processes against a real MariaDB server,
//! plain and over TLS, from the `mariadb` client, PyMySQL and mysql-connector's prepared
//! statements.
use recorder_tests::{Agent, Cgroup, dump, mariadb::Mariadb, of_kind};
use serde_json::{Value, json};

const SCRIPT: &str = "CREATE TABLE items (id int, name text);\n\
INSERT INTO items VALUES (1, 'one'), (2, 'two');\n\
SELECT * FROM items;\n\
SELEC oops;\n\
SELECT * FROM nowhere;\n\
DROP TABLE items;\n";

fn sql_of(records: &[Value]) -> Vec<Value> {
    of_kind(records, "sql").into_iter().cloned().collect()
}

fn mariadb_client(tls: bool) {
    let my = Mariadb::start();
    let cg = Cgroup::new("mariadb");
    let agent = Agent::start(&["--identity", &cg.identity_flag("my-agent")]);
    let port = my.port.to_string();
    let ssl = if tls { "--ssl" } else { "--skip-ssl" };
    let mut child = cg
        .command("/usr/bin/mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            "alice",
            "-palice-pw",
            "--force",
            "--batch",
            ssl,
            "shop",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SCRIPT.as_bytes())
        .unwrap();
    child.wait().unwrap();
    let records = agent.wait_for("the DROP TABLE statement", |r| {
        r.iter()
            .any(|x| x["kind"] == "sql" && x["text"] == "DROP TABLE items")
    });
    let sql = sql_of(&records);
    // The client asks a couple of things of its own first (`select @@version_comment limit 1`).
    let ours: Vec<&Value> = sql
        .iter()
        .filter(|r| !r["text"].as_str().unwrap().starts_with("select @@"))
        .collect();
    let got: Vec<(&str, &str, &str)> = ours
        .iter()
        .map(|r| {
            (
                r["text"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), 6, "{}", dump(&records));
    assert_eq!(
        got[0],
        ("CREATE TABLE items (id int, name text)", "ok", got[0].2)
    );
    assert_eq!(got[1].0, "INSERT INTO items VALUES (1, 'one'), (2, 'two')");
    assert!(got[1].2.contains("2 rows affected"), "{}", got[1].2);
    assert_eq!((got[2].0, got[2].1), ("SELECT * FROM items", "ok"));
    assert!(got[2].2.contains('2'), "two rows: {}", got[2].2);
    assert_eq!((got[3].0, got[3].1), ("SELEC oops", "error"));
    assert!(got[3].2.contains("1064"), "{}", got[3].2);
    assert!(got[4].2.contains("1146"), "{}", got[4].2);
    assert_eq!((got[5].0, got[5].1), ("DROP TABLE items", "ok"));
    for r in &ours {
        assert_eq!(r["db.system"], "mysql");
        assert_eq!(r["tls"], tls, "{r}");
        assert_eq!(r["db.server"], format!("127.0.0.1:{}", my.port));
        assert_eq!(r["db.user"], "alice");
        assert_eq!(r["db.name"], "shop");
    }
}

#[test]
fn mariadb_client_over_plain_tcp() {
    mariadb_client(false);
}

#[test]
fn mariadb_client_over_tls() {
    mariadb_client(true);
}

#[test]
fn pymysql_over_tls_and_prepared_statements_with_parameters() {
    let my = Mariadb::start();
    let cg = Cgroup::new("pymysql");
    let agent = Agent::start(&["--identity", &cg.identity_flag("my-agent")]);
    let script = format!(
        r#"
import ssl, pymysql, mysql.connector
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
c = pymysql.connect(host="127.0.0.1", port={port}, user="alice", password="alice-pw", database="shop", ssl=ctx)
cur = c.cursor()
cur.execute("CREATE TABLE pets (id int, name text)")
cur.execute("INSERT INTO pets VALUES (%s, %s)", (7, "rex"))
c.commit()
c.close()
p = mysql.connector.connect(host="127.0.0.1", port={port}, user="alice", password="alice-pw", database="shop", ssl_disabled=True, use_pure=True)
pc = p.cursor(prepared=True)
pc.execute("SELECT name FROM pets WHERE id = %s AND name <> %s", (7, "cat"))
pc.fetchall()
pc.execute("DROP TABLE pets")
p.close()
"#,
        port = my.port
    );
    let out = cg.run("/usr/bin/env", &["python3", "-c", &script]);
    assert!(out.status.success(), "{out:?}");
    let records = agent.wait_for("the DROP TABLE statement", |r| {
        r.iter()
            .any(|x| x["kind"] == "sql" && x["text"] == "DROP TABLE pets")
    });
    let sql = sql_of(&records);
    let find = |text: &str| {
        sql.iter()
            .find(|r| r["text"] == text)
            .unwrap_or_else(|| panic!("no statement {text:?} in:\n{}", dump(&records)))
    };
    // PyMySQL interpolates parameters on the client: the statement carries the values.
    let insert = find("INSERT INTO pets VALUES (7, 'rex')");
    assert_eq!(
        (insert["tls"].clone(), insert["status"].clone()),
        (json!(true), json!("ok"))
    );
    assert!(
        insert["result"].as_str().unwrap().contains("1 row"),
        "{insert}"
    );
    assert_eq!(find("CREATE TABLE pets (id int, name text)")["tls"], true);
    // mysql-connector's prepared statement: COM_STMT_PREPARE + COM_STMT_EXECUTE with parameters.
    let select = find("SELECT name FROM pets WHERE id = ? AND name <> ?");
    assert_eq!(select["params"], json!(["7", "cat"]), "{select}");
    assert_eq!(
        (select["tls"].clone(), select["status"].clone()),
        (json!(false), json!("ok"))
    );
    assert!(
        sql.iter()
            .all(|r| r["db.user"] == "alice" && r["db.system"] == "mysql")
    );
}
