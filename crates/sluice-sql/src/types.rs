//! Flink's SQL types, read from a statement and mapped to Arrow's.
//!
//! | Flink | Arrow |
//! |---|---|
//! | `CHAR(n)`, `VARCHAR(n)`, `STRING` | `Utf8` |
//! | `BOOLEAN` | `Boolean` |
//! | `BINARY(n)`, `VARBINARY(n)`, `BYTES` | `Binary` |
//! | `DECIMAL(p, s)` (`DEC`, `NUMERIC`; default 10, 0) | `Decimal128(p, s)` |
//! | `TINYINT`, `SMALLINT`, `INT`, `BIGINT` | `Int8` ... `Int64` |
//! | `FLOAT`, `DOUBLE [PRECISION]` | `Float32`, `Float64` |
//! | `DATE` | `Date32` |
//! | `TIME(p)` | `Time32(ms)` up to 3, else `Time64(ns)` |
//! | `TIMESTAMP(p)` (default 6) | `Timestamp(ms, µs or ns)` |
//! | `TIMESTAMP_LTZ(p)`, `TIMESTAMP(p) WITH LOCAL TIME ZONE` | the same, in `UTC` |
//! | `ARRAY<T>` | `List(T)` |
//! | `MAP<K, V>` | `Map(K, V)` |
//! | `ROW<name T, ...>`, `ROW(name T, ...)` | `Struct` |
//!
//! `NOT NULL` after a type makes the column or field non-nullable.

use arrow_schema::{DataType, Field, Fields, TimeUnit};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan};
use std::sync::Arc;

/// A type and whether values may be NULL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlType {
    /// The Arrow type.
    pub data_type: DataType,
    /// Whether NULL is allowed.
    pub nullable: bool,
}

/// Reads a Flink type from `parser`, with the `>` left over when `>>` closed two.
pub(crate) struct TypeReader<'p, 'a> {
    parser: &'p mut Parser<'a>,
    pending_gt: bool,
}

pub(crate) fn error_at(token: &TokenWithSpan, message: impl std::fmt::Display) -> ParserError {
    let at = token.span.start;
    ParserError::ParserError(format!("{message} at Line: {}, Column: {}", at.line, at.column))
}

impl<'p, 'a> TypeReader<'p, 'a> {
    pub(crate) fn new(parser: &'p mut Parser<'a>) -> Self {
        TypeReader { parser, pending_gt: false }
    }

    /// A type, then `NOT NULL` or `NULL` if there.
    pub(crate) fn read(&mut self) -> Result<SqlType, ParserError> {
        let data_type = self.data_type()?;
        // After `>>`, what follows belongs to the type the second `>` closes.
        if self.pending_gt {
            return Ok(SqlType { data_type, nullable: true });
        }
        let nullable = if self.parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
            false
        } else {
            let _ = self.parser.parse_keyword(Keyword::NULL);
            true
        };
        Ok(SqlType { data_type, nullable })
    }

    fn close_angle(&mut self) -> Result<(), ParserError> {
        if std::mem::take(&mut self.pending_gt) {
            return Ok(());
        }
        let token = self.parser.next_token();
        match token.token {
            Token::Gt => Ok(()),
            Token::ShiftRight => {
                self.pending_gt = true;
                Ok(())
            }
            _ => Err(error_at(&token, format!("expected '>', found {}", token.token))),
        }
    }

    /// `(n)` or `(p, s)` after a type name, if there.
    fn arguments(&mut self) -> Result<Vec<u64>, ParserError> {
        if !self.parser.consume_token(&Token::LParen) {
            return Ok(Vec::new());
        }
        let arguments = self.parser.parse_comma_separated(Parser::parse_literal_uint)?;
        self.parser.expect_token(&Token::RParen)?;
        Ok(arguments)
    }

    fn precision_unit(&mut self, default: u64) -> Result<TimeUnit, ParserError> {
        let precision = self.arguments()?.first().copied().unwrap_or(default);
        Ok(match precision {
            0..=3 => TimeUnit::Millisecond,
            4..=6 => TimeUnit::Microsecond,
            _ => TimeUnit::Nanosecond,
        })
    }

    fn fields(&mut self, close: Token) -> Result<Fields, ParserError> {
        let mut fields = Vec::new();
        loop {
            let name = self.parser.parse_identifier()?;
            let field_type = self.read()?;
            if !self.pending_gt && self.parser.parse_keyword(Keyword::COMMENT) {
                self.parser.parse_literal_string()?;
            }
            fields.push(Field::new(name.value, field_type.data_type, field_type.nullable));
            if self.pending_gt || !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        match close {
            Token::Gt => self.close_angle()?,
            other => {
                self.parser.expect_token(&other)?;
            }
        }
        Ok(Fields::from(fields))
    }

    fn data_type(&mut self) -> Result<DataType, ParserError> {
        let token = self.parser.next_token();
        let Token::Word(word) = &token.token else {
            return Err(error_at(&token, format!("expected a type, found {}", token.token)));
        };
        let name = word.value.to_ascii_uppercase();
        Ok(match name.as_str() {
            "CHAR" | "VARCHAR" => {
                self.arguments()?;
                DataType::Utf8
            }
            "STRING" => DataType::Utf8,
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "BINARY" | "VARBINARY" => {
                self.arguments()?;
                DataType::Binary
            }
            "BYTES" => DataType::Binary,
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let arguments = self.arguments()?;
                let precision = arguments.first().copied().unwrap_or(10);
                let scale = arguments.get(1).copied().unwrap_or(0);
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(error_at(&token, format!("DECIMAL({precision}, {scale}): the precision is 1 to 38 and the scale at most the precision")));
                }
                DataType::Decimal128(precision as u8, scale as i8)
            }
            "TINYINT" => DataType::Int8,
            "SMALLINT" => DataType::Int16,
            "INT" | "INTEGER" => DataType::Int32,
            "BIGINT" => DataType::Int64,
            "FLOAT" => DataType::Float32,
            "DOUBLE" => {
                let _ = self.parser.parse_keyword(Keyword::PRECISION);
                DataType::Float64
            }
            "DATE" => DataType::Date32,
            "TIME" => {
                let unit = self.precision_unit(0)?;
                let _ = self.parser.parse_keywords(&[Keyword::WITHOUT, Keyword::TIME, Keyword::ZONE]);
                match unit {
                    TimeUnit::Millisecond => DataType::Time32(TimeUnit::Millisecond),
                    _ => DataType::Time64(TimeUnit::Nanosecond),
                }
            }
            "TIMESTAMP" => {
                let unit = self.precision_unit(6)?;
                if self.parser.parse_keywords(&[Keyword::WITH, Keyword::LOCAL, Keyword::TIME, Keyword::ZONE]) {
                    DataType::Timestamp(unit, Some("UTC".into()))
                } else {
                    let _ = self.parser.parse_keywords(&[Keyword::WITHOUT, Keyword::TIME, Keyword::ZONE]);
                    DataType::Timestamp(unit, None)
                }
            }
            "TIMESTAMP_LTZ" => DataType::Timestamp(self.precision_unit(6)?, Some("UTC".into())),
            "ARRAY" => {
                self.parser.expect_token(&Token::Lt)?;
                let element = self.read()?;
                self.close_angle()?;
                DataType::List(Arc::new(Field::new("item", element.data_type, element.nullable)))
            }
            "MAP" => {
                self.parser.expect_token(&Token::Lt)?;
                let key = self.read()?;
                self.parser.expect_token(&Token::Comma)?;
                let value = self.read()?;
                self.close_angle()?;
                let entries = Fields::from(vec![
                    Field::new("key", key.data_type, false),
                    Field::new("value", value.data_type, value.nullable),
                ]);
                DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
            }
            "ROW" => {
                if self.parser.consume_token(&Token::Lt) {
                    DataType::Struct(self.fields(Token::Gt)?)
                } else {
                    self.parser.expect_token(&Token::LParen)?;
                    DataType::Struct(self.fields(Token::RParen)?)
                }
            }
            other => {
                let known = "STRING, VARCHAR(n), CHAR(n), BOOLEAN, BYTES, DECIMAL(p, s), TINYINT, SMALLINT, INT, \
                             BIGINT, FLOAT, DOUBLE, DATE, TIME(p), TIMESTAMP(p), TIMESTAMP_LTZ(p), ARRAY<T>, \
                             MAP<K, V>, ROW<...>";
                return Err(error_at(&token, format!("unknown or unsupported type {other} (supported: {known})")));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::FlinkDialect;

    fn parse(text: &str) -> Result<SqlType, ParserError> {
        let mut parser = Parser::new(&FlinkDialect).try_with_sql(text)?;
        let parsed = TypeReader::new(&mut parser).read()?;
        assert_eq!(parser.peek_token().token, Token::EOF, "all of {text} read");
        Ok(parsed)
    }

    #[test]
    fn flink_types_map_to_arrow_types() {
        let decimal = parse("DECIMAL(12, 2) NOT NULL").unwrap();
        assert_eq!((decimal.data_type, decimal.nullable), (DataType::Decimal128(12, 2), false));
        assert_eq!(
            parse("TIMESTAMP_LTZ(3)").unwrap().data_type,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(
            parse("TIMESTAMP(9) WITH LOCAL TIME ZONE").unwrap().data_type,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
        );
        assert_eq!(parse("TIMESTAMP").unwrap().data_type, DataType::Timestamp(TimeUnit::Microsecond, None));
        // Nested closing brackets come as `>>` tokens.
        let nested =
            parse("ARRAY<ROW<a MAP<STRING, ARRAY<INT>>, b ROW(c DOUBLE PRECISION NOT NULL)>> NOT NULL").unwrap();
        assert!(!nested.nullable);
        let DataType::List(item) = &nested.data_type else { panic!("{nested:?}") };
        let DataType::Struct(fields) = item.data_type() else { panic!("{item:?}") };
        assert_eq!(fields.len(), 2);
        let DataType::Struct(inner) = fields[1].data_type() else { panic!("{fields:?}") };
        assert!(!inner[0].is_nullable());
        assert!(parse("DECIMAL(40, 2)").unwrap_err().to_string().contains("precision is 1 to 38"));
        assert!(parse("MULTISET<INT>").unwrap_err().to_string().contains("unsupported type MULTISET"));
    }
}
