//! JSON lines files: a parallel source over files or directories, and a sink.

mod alignment;
mod sink;
mod source;
mod torn;

pub(crate) use sink::encode as sink_encode;
pub use sink::{JsonLinesSink, JsonLinesWriter, LineFiles, LineWriter};
pub use source::{JsonLinesReader, JsonLinesSource, LineDecoder, LineInput, LinesReader, Rejected, SerdeJsonDecoder};
