//! A panic in one piece of spawned work ends that work with an error, not the service.
//!
//! Services spawn a future per request or per task. Tokio already keeps a panicking task
//! from taking the runtime down, but the work it stood for would then never report back (a
//! task left `running` forever). Wrapping the future with [`catch_panic`] turns the panic
//! into an `Err` carrying its message, which the caller reports as a GZ8001 outcome.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

/// Runs `fut`; a panic inside it becomes `Err(message)`.
pub async fn catch_panic<F: Future>(fut: F) -> Result<F::Output, String> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|payload| panic_message(payload.as_ref()))
}

/// Runs `f`; a panic inside it becomes `Err(message)`.
pub fn catch_panic_sync<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

/// The text a panic was raised with, when it was a string.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_future_becomes_an_error() {
        let result = catch_panic(async {
            let v: Vec<u32> = Vec::new();
            match v.get(3) {
                Some(x) => *x,
                None => panic!("index 3 of nothing"),
            }
        })
        .await;
        assert_eq!(result, Err("index 3 of nothing".to_string()));
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        assert_eq!(catch_panic_sync(|| 8), Ok(8));
        assert!(catch_panic_sync(|| -> u8 { panic!("{}", 5) }).is_err());
    }
}
