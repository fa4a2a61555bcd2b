//! Flink SQL's lexical rules for sqlparser: identifiers quoted with backticks, the
//! clauses Flink has (`FILTER (WHERE ...)` on aggregates), and the `TABLE name
//! [PARTITION BY keys]` argument of window table functions (`TUMBLE(TABLE bid,
//! DESCRIPTOR(ts), ...)`), read as a call `TABLE(name, keys...)` that the planner
//! recognises.

use sqlparser::ast::{Expr, Ident, ObjectName};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// The name of the call a `TABLE name` argument becomes.
pub const TABLE_ARGUMENT: &str = "TABLE";

/// The dialect the queries and inserts of a job file are parsed with.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_ascii_alphabetic() || ch == '_' || ch == '$'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    /// `FOR SYSTEM_TIME AS OF`, of temporal joins.
    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let [first, second] = parser.peek_tokens();
        let is_table_argument =
            matches!(&first, Token::Word(w) if w.keyword == Keyword::TABLE) && matches!(&second, Token::Word(_));
        if !is_table_argument {
            return None;
        }
        parser.next_token();
        Some(parse_table_argument(parser))
    }
}

/// `name [PARTITION BY key | PARTITION BY (key, ...)]`, after `TABLE`.
fn parse_table_argument(parser: &mut Parser) -> Result<Expr, ParserError> {
    let name = parser.parse_object_name(false)?;
    let mut keys = Vec::new();
    if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        keys = match parser.consume_token(&Token::LParen) {
            true => {
                let keys = parser.parse_comma_separated(Parser::parse_expr)?;
                parser.expect_token(&Token::RParen)?;
                keys
            }
            false => vec![parser.parse_expr()?],
        };
    }
    Ok(table_argument(name, keys))
}

/// `TABLE name PARTITION BY keys` as the call `TABLE(name, keys...)`.
fn table_argument(name: ObjectName, keys: Vec<Expr>) -> Expr {
    let parts: Vec<Ident> = name.0.iter().filter_map(|part| part.as_ident().cloned()).collect();
    let reference = match parts.len() {
        1 => Expr::Identifier(parts[0].clone()),
        _ => Expr::CompoundIdentifier(parts),
    };
    crate::rewrite::call(TABLE_ARGUMENT, std::iter::once(reference).chain(keys).collect())
}
