//! Flink's `CREATE TABLE`, parsed by this crate on sqlparser's tokens (sqlparser knows
//! neither computed columns without a type nor `WATERMARK FOR`).
//!
//! ```sql
//! CREATE [TEMPORARY] TABLE [IF NOT EXISTS] name (
//!     column type [NOT NULL] [COMMENT '...'],
//!     column AS expression [COMMENT '...'],                  -- computed
//!     column type METADATA [FROM 'key'] [VIRTUAL],          -- from the connector
//!     WATERMARK FOR column AS expression,
//!     [CONSTRAINT name] PRIMARY KEY (column, ...) NOT ENFORCED
//! ) [COMMENT '...'] [PARTITIONED BY (column, ...)]
//! WITH ('connector' = '...', 'key' = 'value', ...)
//! ```

use crate::types::{error_at, SqlType, TypeReader};
use sqlparser::ast::{Expr, Ident};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// What a column's values come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnKind {
    /// Read or written as they are.
    Physical,
    /// Computed from the other columns by an expression; never written.
    Computed(Box<Expr>),
    /// Metadata of the connector (a record's timestamp, a partition, ...): its key, if
    /// not the column's name, and whether it is read only (`VIRTUAL`).
    Metadata {
        /// The connector's name for it.
        key: Option<String>,
        /// Read, never written.
        is_virtual: bool,
    },
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type; `None` for a computed column, whose type is its expression's.
    pub sql_type: Option<SqlType>,
    /// Where its values come from.
    pub kind: ColumnKind,
}

/// A table's event time: the column and the expression its watermark is.
#[derive(Clone, Debug, PartialEq)]
pub struct Watermark {
    /// The event-time column.
    pub column: String,
    /// The watermark, for example `ts - INTERVAL '5' SECOND`.
    pub expression: Expr,
}

/// A `CREATE TABLE` statement.
#[derive(Clone, Debug, PartialEq)]
pub struct TableDefinition {
    /// The table's name (the last part of a qualified name).
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<Column>,
    /// Its watermark, if it has event time.
    pub watermark: Option<Watermark>,
    /// Its primary key, if it has one (never enforced, as in Flink).
    pub primary_key: Vec<String>,
    /// Its partition columns.
    pub partitioned_by: Vec<String>,
    /// Its `WITH` options, in order: `connector` and the connector's.
    pub options: Vec<(String, String)>,
    /// Whether `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
    /// Whether it is `TEMPORARY`.
    pub temporary: bool,
}

impl TableDefinition {
    /// The value of option `key`, if given.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn idents(parser: &mut Parser<'_>) -> Result<Vec<String>, ParserError> {
    parser.expect_token(&Token::LParen)?;
    let names = parser.parse_comma_separated(|p| p.parse_identifier().map(|i: Ident| i.value))?;
    parser.expect_token(&Token::RParen)?;
    Ok(names)
}

/// Parses a `CREATE TABLE` statement (the whole statement, without its `;`).
pub fn parse_create_table(parser: &mut Parser<'_>) -> Result<TableDefinition, ParserError> {
    parser.expect_keyword(Keyword::CREATE)?;
    let temporary = parser.parse_keyword(Keyword::TEMPORARY);
    parser.expect_keyword(Keyword::TABLE)?;
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let name = name.0.last().map(|part| part.to_string().trim_matches('`').to_string()).unwrap_or_default();
    let mut table = TableDefinition {
        name,
        columns: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        partitioned_by: Vec::new(),
        options: Vec::new(),
        if_not_exists,
        temporary,
    };
    parser.expect_token(&Token::LParen)?;
    loop {
        element(parser, &mut table)?;
        if parser.consume_token(&Token::Comma) {
            continue;
        }
        parser.expect_token(&Token::RParen)?;
        break;
    }
    if parser.parse_keyword(Keyword::COMMENT) {
        parser.parse_literal_string()?;
    }
    if parser.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
        table.partitioned_by = idents(parser)?;
    }
    if parser.parse_keyword(Keyword::WITH) {
        parser.expect_token(&Token::LParen)?;
        table.options = parser.parse_comma_separated(|p| {
            let key = p.parse_literal_string()?;
            p.expect_token(&Token::Eq)?;
            let value = p.parse_literal_string()?;
            Ok((key, value))
        })?;
        parser.expect_token(&Token::RParen)?;
    }
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(error_at(&rest, format!("expected the end of CREATE TABLE, found {}", rest.token)));
    }
    check(&table, parser)?;
    Ok(table)
}

/// Consumes the next token if it is the word `word` (one sqlparser has no keyword for).
fn parse_word(parser: &mut Parser<'_>, word: &str) -> bool {
    let is_it = matches!(&parser.peek_token().token, Token::Word(w) if w.value.eq_ignore_ascii_case(word));
    if is_it {
        parser.next_token();
    }
    is_it
}

/// One element of the column list.
fn element(parser: &mut Parser<'_>, table: &mut TableDefinition) -> Result<(), ParserError> {
    let start = parser.peek_token();
    if parse_word(parser, "WATERMARK") {
        parser.expect_keyword(Keyword::FOR)?;
        let column = parser.parse_identifier()?.value;
        parser.expect_keyword(Keyword::AS)?;
        let expression = parser.parse_expr()?;
        if table.watermark.is_some() {
            return Err(error_at(&start, "a table has one WATERMARK at most"));
        }
        table.watermark = Some(Watermark { column, expression });
        return Ok(());
    }
    if parser.parse_keyword(Keyword::CONSTRAINT) {
        parser.parse_identifier()?;
    }
    if parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
        let key = idents(parser)?;
        if !parser.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]) {
            let at = parser.peek_token();
            return Err(error_at(
                &at,
                "Flink's primary keys are declared NOT ENFORCED (write PRIMARY KEY (...) NOT ENFORCED)",
            ));
        }
        table.primary_key = key;
        return Ok(());
    }
    let name = parser.parse_identifier()?.value;
    if parser.parse_keyword(Keyword::AS) {
        let expression = parser.parse_expr()?;
        if parser.parse_keyword(Keyword::COMMENT) {
            parser.parse_literal_string()?;
        }
        table.columns.push(Column { name, sql_type: None, kind: ColumnKind::Computed(Box::new(expression)) });
        return Ok(());
    }
    let sql_type = TypeReader::new(parser).read()?;
    let kind = if parser.parse_keyword(Keyword::METADATA) {
        let key = match parser.parse_keyword(Keyword::FROM) {
            true => Some(parser.parse_literal_string()?),
            false => None,
        };
        ColumnKind::Metadata { key, is_virtual: parser.parse_keyword(Keyword::VIRTUAL) }
    } else {
        ColumnKind::Physical
    };
    if parser.parse_keyword(Keyword::COMMENT) {
        parser.parse_literal_string()?;
    }
    table.columns.push(Column { name, sql_type: Some(sql_type), kind });
    Ok(())
}

/// The names a table's watermark, key and partitioning use must be its columns'.
fn check(table: &TableDefinition, parser: &Parser<'_>) -> Result<(), ParserError> {
    let at = parser.peek_token();
    let has = |name: &str| table.columns.iter().any(|c| c.name.eq_ignore_ascii_case(name));
    let mut seen = std::collections::HashSet::new();
    for column in &table.columns {
        if !seen.insert(column.name.to_ascii_lowercase()) {
            return Err(error_at(&at, format!("table {}: column {} is declared twice", table.name, column.name)));
        }
    }
    if let Some(watermark) = &table.watermark {
        if !has(&watermark.column) {
            return Err(error_at(
                &at,
                format!("table {}: WATERMARK FOR {}: there is no such column", table.name, watermark.column),
            ));
        }
    }
    for name in table.primary_key.iter().chain(&table.partitioned_by) {
        if !has(name) {
            return Err(error_at(&at, format!("table {}: {name} is not a column", table.name)));
        }
    }
    Ok(())
}
