//! A SQL lexer just deep enough to tell code from quoted text and comments, the way the servers
//! do: PostgreSQL ('…' with doubled quotes, E'…' with backslash escapes, "…", $tag$…$tag$,
//! `--` and nested `/* */`) and MySQL/MariaDB ('…' and "…" with backslash escapes or doubled
//! quotes, `…`, `--␠`, `#` and `/* */`, whose `/*!…*/` form holds code the server runs).
//!
//! Two uses: [`statements`] splits a PostgreSQL simple-query string into its statements (as the
//! server does, on `;` outside quotes and comments), and [`classify`] tells the statement
//! classes alert rules and approvals care about (a `DROP`, a `DELETE` without `WHERE`…).
//!
//! Not handled: `BEGIN ATOMIC … END` function bodies, whose inner `;` the server's grammar (not
//! its lexer) keeps together; the decoder's ReadyForQuery boundary keeps later statements
//! matched even then.

/// Whose quoting and comment rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgresql,
    /// MySQL and MariaDB, with their default SQL mode (backslash escapes in strings).
    Mysql,
}

/// Statement classes worth an alert or an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementClass {
    Drop,
    Truncate,
    DeleteWithoutWhere,
    UpdateWithoutWhere,
}

/// The class of the first statement of `sql`, if it is one of [`StatementClass`]. Comments and
/// quoted text are skipped, so `DELETE FROM t -- where` is still without WHERE, and
/// `UPDATE t SET a = $$it's$$ WHERE id = 1` has one.
pub fn classify(sql: &str, dialect: Dialect) -> Option<StatementClass> {
    let words = first_statement_words(sql.as_bytes(), dialect);
    let has_where = || words.iter().any(|w| w.eq_ignore_ascii_case(b"WHERE"));
    let first = words.first()?;
    if first.eq_ignore_ascii_case(b"DROP") {
        Some(StatementClass::Drop)
    } else if first.eq_ignore_ascii_case(b"TRUNCATE") {
        Some(StatementClass::Truncate)
    } else if first.eq_ignore_ascii_case(b"DELETE") && !has_where() {
        Some(StatementClass::DeleteWithoutWhere)
    } else if first.eq_ignore_ascii_case(b"UPDATE") && !has_where() {
        Some(StatementClass::UpdateWithoutWhere)
    } else {
        None
    }
}

/// The bare words (keywords and unquoted identifiers) of the first statement, in order.
fn first_statement_words(sql: &[u8], dialect: Dialect) -> Vec<&[u8]> {
    let mut words = Vec::new();
    let mut lexer = Lexer::new(sql, dialect);
    while let Some((token, start, end)) = lexer.next_token() {
        match token {
            Token::Semicolon => break,
            Token::Word => words.push(&sql[start..end]),
            _ => {}
        }
    }
    words
}

/// The tables `sql` names: what follows `FROM`, `JOIN`, `INTO`, `UPDATE` and `TABLE` (and the
/// commas of a `FROM a, b` list), schema-qualified as written (`public.orders`). Unquoted names
/// are folded to lower case as the servers fold them; quoted ones keep their case. Quoted text
/// and comments never count: `SELECT 'from t'` names no table.
pub fn tables(sql: &str, dialect: Dialect) -> Vec<String> {
    const BEFORE: [&[u8]; 5] = [b"FROM", b"JOIN", b"INTO", b"UPDATE", b"TABLE"];
    const SKIP: [&[u8]; 5] = [b"ONLY", b"IF", b"NOT", b"EXISTS", b"LATERAL"];
    let bytes = sql.as_bytes();
    let mut lexer = Lexer::new(bytes, dialect);
    let mut tokens = Vec::new();
    while let Some((token, start, end)) = lexer.next_token() {
        if !matches!(token, Token::Space | Token::Comment) {
            tokens.push((token, &bytes[start..end]));
        }
    }
    let name_part = |(token, text): (Token, &[u8])| -> Option<String> {
        match token {
            Token::Word => Some(String::from_utf8_lossy(text).to_lowercase()),
            Token::Quoted if text.len() >= 2 && matches!(text[0], b'"' | b'`') => {
                Some(String::from_utf8_lossy(&text[1..text.len() - 1]).into_owned())
            }
            _ => None,
        }
    };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (token, text) = tokens[i];
        i += 1;
        if token != Token::Word || !BEFORE.iter().any(|k| text.eq_ignore_ascii_case(k)) {
            continue;
        }
        loop {
            while i < tokens.len()
                && tokens[i].0 == Token::Word
                && SKIP.iter().any(|k| tokens[i].1.eq_ignore_ascii_case(k))
            {
                i += 1;
            }
            let Some(mut name) = tokens.get(i).copied().and_then(name_part) else {
                break;
            };
            i += 1;
            while i + 1 < tokens.len() && tokens[i].1 == b"." {
                let Some(part) = name_part(tokens[i + 1]) else {
                    break;
                };
                name = format!("{name}.{part}");
                i += 2;
            }
            if !out.contains(&name) {
                out.push(name);
            }
            // A FROM list goes on after a comma (an alias may come first).
            while i < tokens.len() && tokens[i].0 == Token::Word && !is_clause(tokens[i].1) {
                i += 1;
            }
            if i < tokens.len() && tokens[i].1 == b"," {
                i += 1;
                continue;
            }
            break;
        }
    }
    out
}

/// Words that end a table reference (so an alias is not taken for a clause, nor a clause for
/// an alias).
/// The byte ranges of the literal values of `sql`: quoted strings (with their quotes; in MySQL
/// `"…"` too, and PostgreSQL's dollar-quoted bodies) and numbers. Identifiers quoted as
/// identifiers (`"name"` in PostgreSQL, `` `name` `` in MySQL) are not values. For redaction:
/// what a statement on a sensitive table carries.
pub fn literals(sql: &str, dialect: Dialect) -> Vec<std::ops::Range<usize>> {
    let bytes = sql.as_bytes();
    let mut lexer = Lexer::new(bytes, dialect);
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    while let Some((token, start, end)) = lexer.next_token() {
        if out.last().is_some_and(|r| start < r.end) {
            continue;
        }
        let text = &bytes[start..end];
        match token {
            Token::Quoted => {
                let value = match text.first() {
                    Some(b'`') => false,
                    Some(b'"') => dialect == Dialect::Mysql,
                    _ => true,
                };
                if value {
                    out.push(start..end);
                }
            }
            // A number: digits (and a point) not inside a name (`t1` is one word).
            Token::Other if text[0].is_ascii_digit() && !ident_char(prev(bytes, start)) => {
                let len = bytes[start..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || **c == b'.')
                    .count();
                out.push(start..start + len);
            }
            _ => {}
        }
    }
    out
}

fn is_clause(word: &[u8]) -> bool {
    const CLAUSES: [&[u8]; 17] = [
        b"WHERE",
        b"SET",
        b"JOIN",
        b"LEFT",
        b"RIGHT",
        b"INNER",
        b"OUTER",
        b"FULL",
        b"CROSS",
        b"ON",
        b"USING",
        b"GROUP",
        b"ORDER",
        b"LIMIT",
        b"VALUES",
        b"SELECT",
        b"RETURNING",
    ];
    CLAUSES.iter().any(|c| word.eq_ignore_ascii_case(c))
}

/// Byte ranges of the statements of a PostgreSQL simple-query string, trimmed, without their
/// `;`. Statements holding only whitespace and comments are dropped, as the server skips them
/// without a CommandComplete.
pub(crate) fn statements(sql: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut content: Option<(usize, usize)> = None;
    let mut lexer = Lexer::new(sql, Dialect::Postgresql);
    while let Some((token, start, end)) = lexer.next_token() {
        match token {
            Token::Semicolon => {
                if let Some(range) = content.take() {
                    out.push(range);
                }
            }
            Token::Space | Token::Comment => {}
            Token::Word | Token::Quoted | Token::Other => {
                content = Some((content.map_or(start, |(s, _)| s), end));
            }
        }
    }
    if let Some(range) = content {
        out.push(range);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Space,
    Comment,
    /// A string, quoted identifier or dollar-quoted body.
    Quoted,
    /// A keyword or unquoted identifier.
    Word,
    Semicolon,
    Other,
}

struct Lexer<'a> {
    sql: &'a [u8],
    dialect: Dialect,
    at: usize,
    /// Inside MySQL's `/*! … */`: its closing `*/` is not code.
    in_executable_comment: bool,
}

impl<'a> Lexer<'a> {
    fn new(sql: &'a [u8], dialect: Dialect) -> Self {
        Self {
            sql,
            dialect,
            at: 0,
            in_executable_comment: false,
        }
    }

    fn byte(&self, i: usize) -> u8 {
        self.sql.get(i).copied().unwrap_or(0)
    }

    /// The next token and its byte range. Unterminated quotes and comments run to the end.
    fn next_token(&mut self) -> Option<(Token, usize, usize)> {
        let i = self.at;
        if i >= self.sql.len() {
            return None;
        }
        let (c, next) = (self.byte(i), self.byte(i + 1));
        let mysql = self.dialect == Dialect::Mysql;
        let (token, end) = match c {
            b'-' if next == b'-' && (!mysql || is_mysql_comment_space(self.byte(i + 2))) => {
                (Token::Comment, line_end(self.sql, i))
            }
            b'#' if mysql => (Token::Comment, line_end(self.sql, i)),
            b'/' if next == b'*' && mysql && self.byte(i + 2) == b'!' => {
                // Code the server runs: skip the marker and its version number, lex the rest.
                self.in_executable_comment = true;
                let digits = self.sql[i + 3..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                (Token::Space, i + 3 + digits)
            }
            b'*' if next == b'/' && self.in_executable_comment => {
                self.in_executable_comment = false;
                (Token::Space, i + 2)
            }
            b'/' if next == b'*' => (Token::Comment, block_comment_end(self.sql, i, !mysql)),
            b'\'' => {
                let backslash = mysql || is_escape_string(self.sql, i);
                (Token::Quoted, quote_end(self.sql, i, b'\'', backslash))
            }
            b'"' => (Token::Quoted, quote_end(self.sql, i, b'"', mysql)),
            b'`' if mysql => (Token::Quoted, quote_end(self.sql, i, b'`', false)),
            b'$' if !mysql && !ident_char(prev(self.sql, i)) => match dollar_tag(self.sql, i) {
                Some(tag_len) => (Token::Quoted, dollar_end(self.sql, i, tag_len)),
                None => (Token::Other, i + 1),
            },
            b';' => (Token::Semicolon, i + 1),
            c if c.is_ascii_whitespace() => (Token::Space, i + 1),
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let len = self.sql[i..].iter().take_while(|&&c| ident_char(c)).count();
                (Token::Word, i + len)
            }
            _ => (Token::Other, i + 1),
        };
        let end = end.max(i + 1);
        self.at = end;
        Some((token, i, end))
    }
}

/// MySQL reads `--` as a comment only when a space or control character follows.
fn is_mysql_comment_space(c: u8) -> bool {
    c == 0 || c.is_ascii_whitespace() || c.is_ascii_control()
}

fn prev(sql: &[u8], i: usize) -> u8 {
    i.checked_sub(1)
        .and_then(|p| sql.get(p).copied())
        .unwrap_or(b' ')
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// PostgreSQL's `E'…'` (backslash escapes): an `E` just before the quote that starts a token.
fn is_escape_string(sql: &[u8], quote: usize) -> bool {
    matches!(prev(sql, quote), b'E' | b'e')
        && quote
            .checked_sub(1)
            .is_some_and(|e| !ident_char(prev(sql, e)))
}

fn line_end(sql: &[u8], from: usize) -> usize {
    sql.iter()
        .skip(from)
        .position(|&c| c == b'\n')
        .map_or(sql.len(), |p| from + p + 1)
}

/// End (exclusive) of the block comment at `from`; PostgreSQL nests them, MySQL does not.
fn block_comment_end(sql: &[u8], from: usize, nested: bool) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    while i < sql.len() {
        match (sql.get(i).copied(), sql.get(i + 1).copied()) {
            (Some(b'/'), Some(b'*')) if nested || depth == 0 => {
                depth += 1;
                i += 2;
            }
            (Some(b'*'), Some(b'/')) => {
                depth = depth.saturating_sub(1);
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    sql.len()
}

/// End (exclusive) of a quoted token starting at `from`; a doubled quote is an escaped one, and
/// with `backslash` so is a quote after a backslash.
fn quote_end(sql: &[u8], from: usize, q: u8, backslash: bool) -> usize {
    let mut i = from + 1;
    while i < sql.len() {
        match sql.get(i).copied() {
            Some(b'\\') if backslash => i += 2,
            Some(c) if c == q => {
                if sql.get(i + 1) == Some(&q) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    sql.len()
}

/// Length of a `$tag$` opener at `from` (including both `$`), if it is one (`$1` is not).
fn dollar_tag(sql: &[u8], from: usize) -> Option<usize> {
    let rest = sql.get(from + 1..)?;
    let first = rest.first()?;
    if first.is_ascii_digit() {
        return None;
    }
    let close = rest.iter().position(|&c| c == b'$')?;
    let tag = rest.get(..close)?;
    tag.iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80)
        .then_some(close + 2)
}

fn dollar_end(sql: &[u8], from: usize, tag_len: usize) -> usize {
    let Some(tag) = sql.get(from..from + tag_len) else {
        return sql.len();
    };
    let body = from + tag_len;
    sql.get(body..)
        .and_then(|rest| rest.windows(tag_len).position(|w| w == tag))
        .map_or(sql.len(), |p| body + p + tag_len)
}

#[cfg(test)]
mod tests {
    use super::{Dialect, StatementClass, classify, statements, tables};

    fn split(sql: &str) -> Vec<&str> {
        statements(sql.as_bytes())
            .into_iter()
            .map(|(s, e)| &sql[s..e])
            .collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        assert_eq!(split("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
        assert_eq!(
            split("SELECT ';'; SELECT \"a;b\" FROM t;"),
            ["SELECT ';'", "SELECT \"a;b\" FROM t"]
        );
        assert_eq!(split("SELECT 'it''s;'; x"), ["SELECT 'it''s;'", "x"]);
        assert_eq!(split("SELECT E'\\';'; y"), ["SELECT E'\\';'", "y"]);
        assert_eq!(
            split("SELECT $$a;b$$; SELECT $f$ ; $f$"),
            ["SELECT $$a;b$$", "SELECT $f$ ; $f$"]
        );
        assert_eq!(split("SELECT $1; z"), ["SELECT $1", "z"]);
        assert_eq!(split("-- c;\nSELECT 1 /* a; /* b; */ c; */;"), ["SELECT 1"]);
    }

    #[test]
    fn drops_empty_statements() {
        assert_eq!(split(" ; ;; -- only a comment\n"), Vec::<&str>::new());
        assert_eq!(split(""), Vec::<&str>::new());
        assert_eq!(split("BEGIN;;COMMIT;"), ["BEGIN", "COMMIT"]);
    }

    #[test]
    fn unterminated_tokens_run_to_the_end() {
        assert_eq!(split("SELECT 'open; x"), ["SELECT 'open; x"]);
        assert_eq!(split("SELECT $q$ open; x"), ["SELECT $q$ open; x"]);
    }

    #[test]
    fn classifies_statements() {
        use Dialect::{Mysql, Postgresql};
        use StatementClass::{DeleteWithoutWhere, Drop, Truncate, UpdateWithoutWhere};
        for dialect in [Postgresql, Mysql] {
            assert_eq!(classify("DROP TABLE users", dialect), Some(Drop));
            assert_eq!(classify("  /* x */ truncate t", dialect), Some(Truncate));
            assert_eq!(classify("delete from t", dialect), Some(DeleteWithoutWhere));
            assert_eq!(classify("DELETE FROM t WHERE id = 1", dialect), None);
            assert_eq!(
                classify("delete from t -- where id = 1", dialect),
                Some(DeleteWithoutWhere)
            );
            assert_eq!(classify("delete from t where note = 'x'", dialect), None);
            assert_eq!(
                classify("update t set a = 'where'", dialect),
                Some(UpdateWithoutWhere)
            );
            assert_eq!(
                classify("update t set a = 1; select 1 where true", dialect),
                Some(UpdateWithoutWhere)
            );
            assert_eq!(
                classify("UPDATE t SET a = 'it''s' WHERE id = 1", dialect),
                None
            );
            assert_eq!(classify("SELECT * FROM t", dialect), None);
            assert_eq!(classify("", dialect), None);
            assert_eq!(classify("'unterminated", dialect), None);
        }
    }

    #[test]
    fn quotes_are_read_as_each_server_reads_them() {
        use Dialect::{Mysql, Postgresql};
        // PostgreSQL: dollar quoting and E'' strings hold quotes; a backslash in a standard
        // string escapes nothing.
        assert_eq!(
            classify("UPDATE t SET a = $$it's$$ WHERE id = 1", Postgresql),
            None
        );
        assert_eq!(
            classify("UPDATE t SET a = $q$it's$q$ WHERE id = 1", Postgresql),
            None
        );
        assert_eq!(
            classify("UPDATE t SET a = E'it\\'s' WHERE id = 1", Postgresql),
            None
        );
        assert_eq!(
            classify("UPDATE t SET a = 'c:\\' WHERE id = 1", Postgresql),
            None
        );
        // MySQL: a backslash escapes a quote in '…' and "…"; backticks quote identifiers;
        // `#` starts a comment, `--` only before a space.
        assert_eq!(
            classify("UPDATE t SET a = 'it\\'s' WHERE id = 1", Mysql),
            None
        );
        assert_eq!(
            classify("UPDATE t SET a = \"say \\\"hi\\\"\" WHERE id = 1", Mysql),
            None
        );
        assert_eq!(
            classify("UPDATE `where` SET a = 1", Mysql),
            Some(StatementClass::UpdateWithoutWhere)
        );
        assert_eq!(
            classify("DELETE FROM t # WHERE id = 1", Mysql),
            Some(StatementClass::DeleteWithoutWhere)
        );
        assert_eq!(classify("DELETE FROM t WHERE a=1--1", Mysql), None);
        // MySQL runs what `/*! … */` holds.
        assert_eq!(
            classify("/*!40101 DROP TABLE t */", Mysql),
            Some(StatementClass::Drop)
        );
        assert_eq!(classify("DELETE FROM t /*!WHERE id = 1 */", Mysql), None);
        assert_eq!(
            classify("DELETE FROM t /* WHERE id = 1 */", Mysql),
            Some(StatementClass::DeleteWithoutWhere)
        );
        // The dollar sign is part of a MySQL identifier.
        assert_eq!(classify("UPDATE t$ SET a = 1 WHERE b = 2", Mysql), None);
    }

    #[test]
    fn tables_named_outside_quotes_and_comments() {
        let pg = |sql: &str| tables(sql, Dialect::Postgresql);
        assert_eq!(
            pg("SELECT * FROM Orders o JOIN public.items i ON o.id = i.o"),
            ["orders", "public.items"]
        );
        assert_eq!(
            pg("select a from t1, t2 x, \"Big Table\" where 1=1"),
            ["t1", "t2", "Big Table"]
        );
        assert_eq!(
            pg("INSERT INTO audit (a) VALUES ('from secrets')"),
            ["audit"]
        );
        assert_eq!(
            pg("UPDATE ONLY accounts SET x = 1 -- from payments"),
            ["accounts"]
        );
        assert_eq!(pg("DROP TABLE IF EXISTS tmp_1"), ["tmp_1"]);
        assert_eq!(pg("SELECT 1"), Vec::<String>::new());
        assert_eq!(
            tables("SELECT * FROM `Pay`.`cards` # from x", Dialect::Mysql),
            ["Pay.cards"]
        );
    }

    #[test]
    fn literals_are_the_values_not_the_names() {
        use super::{Dialect, literals};
        fn of(sql: &str, dialect: Dialect) -> Vec<&str> {
            literals(sql, dialect)
                .into_iter()
                .map(|r| &sql[r])
                .collect()
        }
        assert_eq!(
            of(
                "INSERT INTO \"cards\" (pan, note) VALUES ('4111 1111', 42) -- 'not this'",
                Dialect::Postgresql
            ),
            ["'4111 1111'", "42"]
        );
        assert_eq!(
            of(
                "UPDATE t SET a = $$it's$$, b = E'x\\'y' WHERE id = 7",
                Dialect::Postgresql
            ),
            ["$$it's$$", "'x\\'y'", "7"]
        );
        assert_eq!(
            of(
                "SELECT `pan` FROM cards WHERE pan = \"4111\"",
                Dialect::Mysql
            ),
            ["\"4111\""]
        );
    }
}
