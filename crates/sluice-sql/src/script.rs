//! A job file: statements separated by `;`, each parsed into a [`Statement`].
//!
//! The split knows quotes (`'...'`, `"..."`, `` `...` ``) and comments (`-- ...`,
//! `/* ... */`), and `EXECUTE STATEMENT SET BEGIN ...; ...; END` (or `BEGIN STATEMENT
//! SET; ...; END;`, as Flink's SQL client writes it) is one statement.

use crate::ddl::{parse_create_table, TableDefinition};
use crate::dialect::FlinkDialect;
use crate::error::SqlError;
use sqlparser::ast::Query;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// One statement of a job file.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// `CREATE TABLE`.
    CreateTable(Box<TableDefinition>),
    /// `CREATE [TEMPORARY] VIEW name AS query`.
    CreateView {
        /// The view's name.
        name: String,
        /// Its query.
        query: Box<Query>,
    },
    /// `CREATE [TEMPORARY [SYSTEM]] FUNCTION name AS 'identifier'`: a function
    /// registered from Rust under that identifier.
    CreateFunction {
        /// The name the job's SQL uses.
        name: String,
        /// The identifier it was registered under.
        identifier: String,
    },
    /// `SET 'key' = 'value'`.
    Set {
        /// The setting's key, as Flink names it (`parallelism.default`, ...).
        key: String,
        /// Its value.
        value: String,
    },
    /// `INSERT INTO table SELECT ...`.
    Insert(Box<sqlparser::ast::Statement>),
    /// `EXECUTE STATEMENT SET BEGIN INSERT ...; INSERT ...; END`: inserts run as one job.
    StatementSet(Vec<sqlparser::ast::Statement>),
    /// A query by itself: its rows are printed.
    Query(Box<Query>),
    /// `EXPLAIN statement`.
    Explain(Box<Statement>),
}

/// A statement's text and where it starts in the file.
struct Piece<'a> {
    text: &'a str,
    line: u64,
    column: u64,
}

/// Splits a job file at the `;` outside quotes and comments.
fn split(script: &str) -> Vec<Piece<'_>> {
    let bytes = script.as_bytes();
    let mut pieces = Vec::new();
    let (mut start, mut i) = (0, 0);
    let (mut line, mut column) = (1u64, 1u64);
    let mut start_at = (1u64, 1u64);
    let mut started = false;
    while i < bytes.len() {
        let c = bytes[i];
        // Where the next statement's text really starts (after blanks).
        if !started && !c.is_ascii_whitespace() {
            start = i;
            start_at = (line, column);
            started = true;
        }
        let advance = |i: &mut usize, line: &mut u64, column: &mut u64| {
            if bytes[*i] == b'\n' {
                *line += 1;
                *column = 1;
            } else if (bytes[*i] & 0xC0) != 0x80 {
                *column += 1;
            }
            *i += 1;
        };
        match c {
            b'\'' | b'"' | b'`' => {
                advance(&mut i, &mut line, &mut column);
                while i < bytes.len() && bytes[i] != c {
                    advance(&mut i, &mut line, &mut column);
                }
                if i < bytes.len() {
                    advance(&mut i, &mut line, &mut column);
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    advance(&mut i, &mut line, &mut column);
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    advance(&mut i, &mut line, &mut column);
                }
                for _ in 0..2 {
                    if i < bytes.len() {
                        advance(&mut i, &mut line, &mut column);
                    }
                }
            }
            b';' => {
                if started {
                    pieces.push(Piece { text: &script[start..i], line: start_at.0, column: start_at.1 });
                }
                started = false;
                advance(&mut i, &mut line, &mut column);
            }
            _ => advance(&mut i, &mut line, &mut column),
        }
    }
    if started && !only_comments(&script[start..]) {
        pieces.push(Piece { text: &script[start..], line: start_at.0, column: start_at.1 });
    }
    pieces.retain(|piece| !only_comments(piece.text));
    pieces
}

/// `text` from its first character that is neither blank nor in a comment.
fn after_comments(text: &str) -> &str {
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |at| &after[at..]).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |at| &after[at + 2..]).trim_start();
        } else {
            return rest;
        }
    }
}

/// Whether `text` holds nothing but blanks and comments.
fn only_comments(text: &str) -> bool {
    after_comments(text).is_empty()
}

/// The first words of a statement, upper-cased, for telling statements apart.
fn leading_words(text: &str, n: usize) -> Vec<String> {
    let rest = after_comments(text);
    rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Maps a sqlparser error ("... at Line: L, Column: C", within the statement) to the
/// file.
fn located(error: ParserError, number: usize, piece: &Piece<'_>) -> SqlError {
    let text = match error {
        ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".to_string(),
    };
    let (message, at) = match text.rfind(" at Line: ") {
        Some(i) => (text[..i].to_string(), Some(&text[i + " at Line: ".len()..])),
        None => (text.clone(), None),
    };
    let position = at.and_then(|at| {
        let (line, column) = at.split_once(", Column: ")?;
        Some((line.trim().parse::<u64>().ok()?, column.trim().parse::<u64>().ok()?))
    });
    let (line, column) = match position {
        Some((1, column)) => (piece.line, piece.column + column - 1),
        Some((line, column)) => (piece.line + line - 1, column),
        None => (piece.line, piece.column),
    };
    SqlError { statement: number, line, column, message }
}

fn parser_of(text: &str) -> Result<Parser<'static>, ParserError> {
    Parser::new(&FlinkDialect).try_with_sql(text)
}

/// Parses one statement's text.
fn parse_one(text: &str) -> Result<Statement, ParserError> {
    let words = leading_words(text, 4);
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    let mut parser = parser_of(text)?;
    match (word(0), word(1)) {
        ("SET", _) => {
            parser.expect_keyword(Keyword::SET)?;
            let key = parser.parse_literal_string()?;
            parser.expect_token(&Token::Eq)?;
            let value = parser.parse_literal_string()?;
            end_of(&parser)?;
            Ok(Statement::Set { key, value })
        }
        ("EXPLAIN", _) => {
            let start = text.to_ascii_uppercase().find("EXPLAIN").unwrap_or(0) + "EXPLAIN".len();
            let inner = parse_one(&text[start..])?;
            Ok(Statement::Explain(Box::new(inner)))
        }
        ("CREATE", "TABLE") | ("CREATE", "TEMPORARY") if words.contains(&"TABLE".to_string()) => {
            parse_create_table(&mut parser).map(|table| Statement::CreateTable(Box::new(table)))
        }
        ("CREATE", _) if words.contains(&"FUNCTION".to_string()) => {
            parser.expect_keyword(Keyword::CREATE)?;
            let _ = parser.parse_keyword(Keyword::TEMPORARY);
            let _ = parser.parse_keyword(Keyword::SYSTEM);
            parser.expect_keyword(Keyword::FUNCTION)?;
            let _ = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = parser.parse_identifier()?.value;
            parser.expect_keyword(Keyword::AS)?;
            let identifier = parser.parse_literal_string()?;
            if parser.parse_keyword(Keyword::LANGUAGE) {
                parser.parse_identifier()?;
            }
            end_of(&parser)?;
            Ok(Statement::CreateFunction { name, identifier })
        }
        ("CREATE", _) if words.contains(&"VIEW".to_string()) => match parser.parse_statement()? {
            sqlparser::ast::Statement::CreateView(view) => {
                Ok(Statement::CreateView { name: view.name.to_string(), query: view.query })
            }
            other => Err(ParserError::ParserError(format!("expected CREATE VIEW, found {other}"))),
        },
        ("INSERT", _) => {
            let statement = parser.parse_statement()?;
            end_of(&parser)?;
            Ok(Statement::Insert(Box::new(statement)))
        }
        ("SELECT", _) | ("WITH", _) | ("VALUES", _) => {
            let query = parser.parse_query()?;
            end_of(&parser)?;
            Ok(Statement::Query(query))
        }
        (first, _) => Err(ParserError::ParserError(format!(
            "{first} is not a statement a job file can hold (CREATE TABLE, CREATE VIEW, CREATE FUNCTION, SET, \
             INSERT INTO, EXECUTE STATEMENT SET, EXPLAIN, or a query) at Line: 1, Column: 1"
        ))),
    }
}

fn end_of(parser: &Parser<'_>) -> Result<(), ParserError> {
    let rest = parser.peek_token();
    match rest.token {
        Token::EOF => Ok(()),
        _ => Err(crate::types::error_at(&rest, format!("expected the end of the statement, found {}", rest.token))),
    }
}

/// Where a statement starts in its job file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The statement's number in the file, from 1.
    pub statement: usize,
    /// Its first line, from 1.
    pub line: u64,
    /// Its first column, from 1.
    pub column: u64,
}

impl Position {
    /// An error about the statement at this position.
    pub fn error(&self, message: impl std::fmt::Display) -> SqlError {
        SqlError { statement: self.statement, line: self.line, column: self.column, message: message.to_string() }
    }
}

/// Parses a job file into its statements; the first statement that cannot be used is
/// an error naming it, its line and column, and what is wrong.
pub fn parse_script(script: &str) -> Result<Vec<Statement>, SqlError> {
    Ok(parse_script_positioned(script)?.into_iter().map(|(statement, _)| statement).collect())
}

/// As [`parse_script`], with where each statement starts.
pub fn parse_script_positioned(script: &str) -> Result<Vec<(Statement, Position)>, SqlError> {
    let pieces = split(script);
    let mut statements: Vec<(Statement, Position)> = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let piece = &pieces[i];
        let number = statements.len() + 1;
        let words = leading_words(piece.text, 4);
        let set_begins = match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["EXECUTE", "STATEMENT", "SET", "BEGIN", ..] => Some(true),
            ["BEGIN", "STATEMENT", "SET", ..] => Some(false),
            _ => None,
        };
        let position = Position { statement: number, line: piece.line, column: piece.column };
        let Some(inline_first) = set_begins else {
            statements.push((parse_one(piece.text).map_err(|e| located(e, number, piece))?, position));
            i += 1;
            continue;
        };
        // The inserts of a statement set, up to its END.
        let mut inserts = Vec::new();
        let mut texts: Vec<(&str, &Piece<'_>)> = Vec::new();
        if inline_first {
            let upper = piece.text.to_ascii_uppercase();
            let after = upper.find("BEGIN").map_or(piece.text.len(), |at| at + "BEGIN".len());
            texts.push((&piece.text[after..], piece));
        }
        i += 1;
        let mut ended = false;
        while i < pieces.len() {
            let next = &pieces[i];
            i += 1;
            if leading_words(next.text, 2) == ["END"] {
                ended = true;
                break;
            }
            texts.push((next.text, next));
        }
        if !ended {
            return Err(SqlError {
                statement: number,
                line: piece.line,
                column: piece.column,
                message: "the statement set has no END".to_string(),
            });
        }
        for (text, at) in texts {
            match parse_one(text).map_err(|e| located(e, number, at))? {
                Statement::Insert(insert) => inserts.push(*insert),
                _ => {
                    return Err(SqlError {
                        statement: number,
                        line: at.line,
                        column: at.column,
                        message: "a statement set holds INSERT INTO statements only".to_string(),
                    })
                }
            }
        }
        statements.push((Statement::StatementSet(inserts), position));
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddl::ColumnKind;
    use arrow_schema::{DataType, TimeUnit};

    const NEXMARK_DDL: &str = "
        -- The bids of the Nexmark benchmark.
        SET 'parallelism.default' = '2';
        SET 'execution.checkpointing.interval' = '10s';

        CREATE TABLE bid (
            auction BIGINT,
            bidder BIGINT NOT NULL,
            price BIGINT,
            channel VARCHAR,
            url VARCHAR COMMENT 'the bid''s page',
            date_time TIMESTAMP(3),
            extra ROW<tags ARRAY<STRING>, attributes MAP<STRING, DOUBLE>>,
            price_dollars AS price / 100,
            WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND,
            PRIMARY KEY (auction, bidder) NOT ENFORCED
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'bids.jsonl', /* a ; inside a comment */
            'format' = 'json'
        );

        CREATE VIEW expensive AS SELECT auction, price FROM bid WHERE price > 1000;

        INSERT INTO out SELECT auction, COUNT(*) FILTER (WHERE price > 10) FROM bid GROUP BY auction;

        EXECUTE STATEMENT SET BEGIN
            INSERT INTO a SELECT * FROM expensive;
            INSERT INTO b SELECT `auction` FROM bid;
        END;
        EXPLAIN SELECT * FROM bid
    ";

    #[test]
    fn a_job_file_parses_into_its_statements() {
        let statements = parse_script(NEXMARK_DDL).unwrap();
        assert_eq!(statements.len(), 7, "{statements:#?}");
        assert_eq!(statements[0], Statement::Set { key: "parallelism.default".into(), value: "2".into() });
        let Statement::CreateTable(table) = &statements[2] else { panic!("{:?}", statements[2]) };
        assert_eq!(table.name, "bid");
        assert_eq!(table.columns.len(), 8);
        let bidder = &table.columns[1];
        assert_eq!(bidder.sql_type.as_ref().map(|t| (&t.data_type, t.nullable)), Some((&DataType::Int64, false)));
        assert_eq!(
            table.columns[5].sql_type.as_ref().map(|t| t.data_type.clone()),
            Some(DataType::Timestamp(TimeUnit::Millisecond, None))
        );
        let DataType::Struct(extra) = &table.columns[6].sql_type.as_ref().unwrap().data_type else { panic!() };
        assert_eq!(extra.len(), 2);
        assert!(matches!(extra[1].data_type(), DataType::Map(_, false)));
        assert!(matches!(table.columns[7].kind, ColumnKind::Computed(_)));
        let watermark = table.watermark.as_ref().unwrap();
        assert_eq!(watermark.column, "date_time");
        assert_eq!(watermark.expression.to_string(), "date_time - INTERVAL '4' SECOND");
        assert_eq!(table.primary_key, ["auction", "bidder"]);
        assert_eq!(table.option("path"), Some("bids.jsonl"));
        assert!(matches!(&statements[3], Statement::CreateView { name, .. } if name == "expensive"));
        assert!(matches!(&statements[4], Statement::Insert(_)));
        assert!(matches!(&statements[5], Statement::StatementSet(inserts) if inserts.len() == 2));
        assert!(matches!(&statements[6], Statement::Explain(inner) if matches!(**inner, Statement::Query(_))));
    }

    #[test]
    fn the_sql_clients_statement_set_form_parses_too() {
        let script = "BEGIN STATEMENT SET;\nINSERT INTO a SELECT 1;\nINSERT INTO b SELECT 2;\nEND;";
        let statements = parse_script(script).unwrap();
        assert!(matches!(&statements[..], [Statement::StatementSet(inserts)] if inserts.len() == 2));
    }

    #[test]
    fn errors_name_the_statement_line_and_column() {
        let script = "SET 'a' = 'b';\n\nCREATE TABLE t (\n  a INT,\n  b STRNG\n) WITH ('connector' = 'print');";
        let error = parse_script(script).unwrap_err();
        assert_eq!((error.statement, error.line, error.column), (2, 5, 5), "{error}");
        assert!(error.message.contains("unknown or unsupported type STRNG"), "{error}");

        let error = parse_script("SELECT a FROM t WHERE;").unwrap_err();
        assert_eq!((error.statement, error.line), (1, 1), "{error}");
        assert!(error.to_string().starts_with("statement 1, line 1, column"), "{error}");

        let error = parse_script("DROP TABLE t;").unwrap_err();
        assert!(error.message.contains("DROP is not a statement a job file can hold"), "{error}");

        let script = "CREATE TABLE t (a INT, WATERMARK FOR ts AS ts) WITH ('connector' = 'print')";
        assert!(parse_script(script).unwrap_err().message.contains("WATERMARK FOR ts: there is no such column"));
        let script = "CREATE TABLE t (a INT, PRIMARY KEY (a)) WITH ('connector' = 'print')";
        assert!(parse_script(script).unwrap_err().message.contains("NOT ENFORCED"));
        let error = parse_script("EXECUTE STATEMENT SET BEGIN INSERT INTO a SELECT 1;").unwrap_err();
        assert!(error.message.contains("no END"), "{error}");
    }
}

#[cfg(test)]
mod flink_queries {
    use super::*;

    /// Queries of the forms Flink's documentation and the Nexmark queries use.
    #[test]
    fn flink_query_forms_parse() {
        let queries = [
            "SELECT window_start, window_end, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
            "SELECT * FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))",
            "SELECT * FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))",
            "SELECT o.id, r.rate FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency = r.currency",
            "SELECT TUMBLE_START(date_time, INTERVAL '10' SECOND), COUNT(*) FROM bid GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND)",
            "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rownum FROM bid) WHERE rownum <= 3",
            "SELECT CAST(price AS STRING), COUNT(DISTINCT bidder) FILTER (WHERE price > 10) FROM bid GROUP BY price",
            "SELECT a.id FROM a, b WHERE a.id = b.id AND a.ts BETWEEN b.ts - INTERVAL '4' HOUR AND b.ts",
        ];
        for query in queries {
            if let Err(error) = parse_script(query) {
                panic!("{query}\n{error}");
            }
        }
        // A window table function's table argument becomes the call TABLE(name).
        let Ok(parsed) = parse_script(queries[0]) else { unreachable!() };
        let Statement::Query(query) = &parsed[0] else { panic!("{parsed:?}") };
        assert!(query.to_string().contains("TUMBLE(TABLE(bid), DESCRIPTOR(date_time)"), "{query}");
    }
}
