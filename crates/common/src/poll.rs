//! Waiting for a condition with a deadline: the one polling loop that tests, benchmarks and
//! start-up checks share (readiness is polled, never assumed after a fixed sleep).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long [`wait_until`] waits between two checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The condition did not hold within the deadline.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {timeout:?} waiting for {what}")]
pub struct TimedOut {
    pub what: String,
    pub timeout: Duration,
}

/// Calls `check` until it returns `Some` (returned), every [`POLL_INTERVAL`]; fails with
/// [`TimedOut`] naming `what` once `timeout` has passed.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(TimedOut {
                what: what.to_owned(),
                timeout,
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let mut n = 0;
        let v = wait_until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            let done = n >= 3;
            async move { done.then_some(n) }
        })
        .await
        .expect("in time");
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn names_what_it_waited_for_on_timeout() {
        let err = wait_until::<(), _, _>("nothing", Duration::from_millis(30), || async { None })
            .await
            .expect_err("times out");
        assert!(err.to_string().contains("waiting for nothing"), "{err}");
    }
}
