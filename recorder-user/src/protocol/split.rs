//! Splits a PostgreSQL simple-query string into its statements, the way the server's lexer
//! separates them: on `;` outside quotes ('…', E'…', "…", $tag$…$tag$) and comments (`--`, nested
//! `/* */`). Statements holding only whitespace and comments are dropped, as the server skips
//! them without a CommandComplete. Not handled: `BEGIN ATOMIC … END` function bodies, whose
//! inner `;` the server's grammar (not its lexer) keeps together; the decoder's ReadyForQuery
//! boundary keeps later statements matched even then.

/// Byte ranges of the statements of `sql`, trimmed, without their `;`.
pub(crate) fn statements(sql: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut content: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < sql.len() {
        let c = sql.get(i).copied().unwrap_or(0);
        let next = sql.get(i + 1).copied().unwrap_or(0);
        let (end, is_content) = match c {
            b'-' if next == b'-' => (line_end(sql, i), false),
            b'/' if next == b'*' => (block_comment_end(sql, i), false),
            b'\'' => (quote_end(sql, i, b'\'', is_escape_string(sql, i)), true),
            b'"' => (quote_end(sql, i, b'"', false), true),
            b'$' if !ident_char(prev(sql, i)) => match dollar_tag(sql, i) {
                Some(tag_len) => (dollar_end(sql, i, tag_len), true),
                None => (i + 1, true),
            },
            b';' => {
                if let Some(range) = content.take() {
                    out.push(range);
                }
                i += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => (i + 1, false),
            _ => (i + 1, true),
        };
        if is_content {
            content = Some((content.map_or(i, |(s, _)| s), end));
        }
        i = end.max(i + 1);
    }
    if let Some(range) = content {
        out.push(range);
    }
    out
}

fn prev(sql: &[u8], i: usize) -> u8 {
    i.checked_sub(1)
        .and_then(|p| sql.get(p).copied())
        .unwrap_or(b' ')
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// `E'…'` (backslash escapes): an `E` just before the quote that starts a token.
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

fn block_comment_end(sql: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    while i < sql.len() {
        match (sql.get(i).copied(), sql.get(i + 1).copied()) {
            (Some(b'/'), Some(b'*')) => {
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

/// End (exclusive) of a quoted token starting at `from`; a doubled quote is an escaped one.
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
    use super::statements;

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
}
