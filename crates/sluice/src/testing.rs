//! Helpers for testing jobs: run a pipeline over values and collect its output.

use sluice_api::{CollectSink, Result, Stream, StreamEnvironment, VecSource};

/// Runs `pipeline` over `input` with `parallelism` workers and returns its output values
/// sorted (output order across workers is not deterministic).
///
/// ```
/// let doubled = sluice::testing::run_collect(vec![1, 2, 3], 2, |s| s.map(|n| n * 2)).unwrap();
/// assert_eq!(doubled, vec![2, 4, 6]);
/// ```
pub fn run_collect<T, U>(
    input: Vec<T>,
    parallelism: usize,
    pipeline: impl FnOnce(Stream<T>) -> Stream<U>,
) -> Result<Vec<U>>
where
    T: Clone + Send + 'static,
    U: Clone + Ord + Send + 'static,
{
    let env = StreamEnvironment::new().parallelism(parallelism);
    let out = CollectSink::new();
    pipeline(env.source(VecSource::new(input))).sink(out.clone());
    env.execute()?;
    Ok(out.sorted_values())
}
