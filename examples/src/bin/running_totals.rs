//! `running-totals`: reads `{"user": .., "amount": ..}` JSON lines on standard input and
//! writes each user's running total as JSON lines on standard output.
//!
//! ```text
//! printf '{"user":"ada","amount":3}\n{"user":"bob","amount":1}\n{"user":"ada","amount":4}\n' \
//!     | cargo run -p sluice-examples --bin running-totals
//! ```
//!
//! Lines that are not such objects go to standard error as dead letters, with the
//! reason, and the job goes on.

use serde::{Deserialize, Serialize};
use sluice::prelude::*;
use std::process::ExitCode;

#[derive(Clone, Debug, Deserialize, Serialize)]
struct Payment {
    user: String,
    amount: i64,
}

fn main() -> ExitCode {
    let env = StreamEnvironment::new().parallelism(1);
    env.source(StdinSource::<Payment>::new().dead_letters(DeadLetters::stderr()))
        .key_by(|p| p.user.clone())
        .reduce(|total, p| Payment { user: total.user.clone(), amount: total.amount + p.amount })
        .sink(StdoutSink::new());
    match env.execute() {
        Ok(result) => {
            eprintln!(
                "{} lines read, {} totals written, {} dead letters",
                result.metrics.source_records() + result.metrics.dead_letters(),
                result.metrics.sink_records(),
                result.metrics.dead_letters()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("running-totals: error: {error}");
            ExitCode::FAILURE
        }
    }
}
