//! The engine's Nexmark results equal the hand-written loops' at any parallelism and
//! batch size.

use sluice::{StreamEnvironment, VecSource};
use sluice_bench::results::Outcome;
use sluice_bench::{baseline, data, queries, Query};

fn engine(query: Query, events: &[sluice::connectors::nexmark::Event], workers: usize, batch: usize) -> Outcome {
    let env = StreamEnvironment::new().parallelism(workers).batch_size(batch);
    let stream = env.source(VecSource::from_records(data::partitions_from(events, workers)));
    let outcome = queries::build(query, &stream);
    env.execute().expect("job runs");
    outcome()
}

#[test]
fn every_query_agrees_with_its_loop() {
    let events = data::events(60_000);
    for query in Query::ALL {
        let expected = baseline::run(query, events.clone().into_iter());
        for (workers, batch) in [(1, 1024), (2, 7), (4, 1024)] {
            let actual = engine(query, &events, workers, batch);
            assert_eq!(actual.count, expected.count, "{} at {workers} workers, batch {batch}: count", query.name());
            assert_eq!(actual.rows, expected.rows, "{} at {workers} workers, batch {batch}: rows", query.name());
            assert_eq!(
                actual.checksum,
                expected.checksum,
                "{} at {workers} workers, batch {batch}: checksum",
                query.name()
            );
        }
    }
}
