//! One body run as several named tests (a queue or a server each), so that
//! a test per case stays a one-line entry rather than a copied function.

/// `cases! { #[attr] name => body(args); … }` writes, for each entry, an
/// `async fn name()` under `#[attr]` (the runtime the crate's tests use)
/// that awaits `body(args)`; the test keeps its own name.
#[macro_export]
macro_rules! cases {
    (#[$attr:meta] $($name:ident => $body:ident($($arg:expr),* $(,)?);)+) => {
        $(
            #[$attr]
            async fn $name() {
                $body($($arg),*).await;
            }
        )+
    };
}
