//! The runner of the test binaries that have a `main` of their own (`harness = false`: each is
//! also the upstream its tests start): each test on a multi-thread runtime, within a deadline;
//! the first argument that is not a flag picks the tests whose names contain it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A test's body.
pub(crate) type TestFuture = Pin<Box<dyn Future<Output = ()>>>;
/// A test: its name, and its body.
pub(crate) type Test = (&'static str, fn() -> TestFuture);

/// Runs `tests`, each within `deadline`; a failure panics (the binary fails).
pub(crate) fn run(tests: &[Test], deadline: Duration) {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut ran = 0;
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        rt.block_on(async {
            tokio::time::timeout(deadline, test())
                .await
                .unwrap_or_else(|_| panic!("{name} did not end within {deadline:?}"));
        });
        println!("test {name} ... ok");
        ran += 1;
    }
    println!("\ntest result: ok. {ran} passed; 0 failed");
}
