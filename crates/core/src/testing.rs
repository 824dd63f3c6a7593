//! Helpers for the unit tests of this crate.

use std::sync::Barrier;

/// Runs `run` on `n` threads released together, each after its own
/// `prepare` (done before the start, so the runs overlap as much as they
/// can); returns their results. For races: first runs, fresh files.
pub(crate) fn at_once<P, T: Send>(
    n: usize,
    prepare: impl Fn() -> P + Sync,
    run: impl Fn(P) -> T + Sync,
) -> Vec<T> {
    let barrier = Barrier::new(n);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    let prepared = prepare();
                    barrier.wait();
                    run(prepared)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a racing thread panicked"))
            .collect()
    })
}
