//! Try-locks on leases (spec 40 §3): the holder of `locks/<name>` does exclusive background
//! work; everyone else skips it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Compare, Kv, LeaseId, Op, Result, Txn};

/// Lease TTL of a lock: a crashed holder releases it within this time.
pub const LOCK_TTL: Duration = Duration::from_secs(5);

/// A held lock. Dropping it stops the keep-alive and releases the lock (best effort);
/// [`LockGuard::unlock`] releases it and reports errors.
#[derive(Debug)]
pub struct LockGuard {
    kv: Arc<dyn Kv>,
    key: String,
    lease: LeaseId,
    keeper: Option<JoinHandle<()>>,
    lost: watch::Receiver<bool>,
}

/// Takes `<prefix>locks/<name>` if nobody holds it; `None` when someone does.
pub async fn try_lock(kv: Arc<dyn Kv>, prefix: &str, name: &str) -> Result<Option<LockGuard>> {
    let key = format!("{prefix}locks/{name}");
    let lease = kv.grant(LOCK_TTL).await?;
    let resp = kv
        .txn(
            Txn::new()
                .when([Compare::absent(key.as_str())])
                .and_then([Op::put_with_lease(key.as_str(), Vec::new(), lease.id)]),
        )
        .await;
    match resp {
        Ok(r) if r.succeeded => {}
        other => {
            let _ = kv.revoke(lease.id).await;
            other?;
            return Ok(None);
        }
    }
    let (lost_tx, lost) = watch::channel(false);
    let keeper = tokio::spawn({
        let kv = kv.clone();
        async move {
            let mut tick = tokio::time::interval(LOCK_TTL / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = kv.keep_alive(lease.id).await {
                    tracing::warn!(error = %e, "lock keep-alive failed: the lock is lost");
                    lost_tx.send_replace(true);
                    return;
                }
            }
        }
    });
    Ok(Some(LockGuard {
        kv,
        key,
        lease: lease.id,
        keeper: Some(keeper),
        lost,
    }))
}

impl LockGuard {
    /// Whether the keep-alive failed: the guarded work must stop.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lock is lost.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Deletes the key and revokes the lease.
    pub async fn unlock(mut self) -> Result<()> {
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
        self.kv
            .txn(Txn::new().and_then([Op::delete(self.key.as_str())]))
            .await?;
        self.kv.revoke(self.lease).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.abort();
            let kv = self.kv.clone();
            let lease = self.lease;
            // Revoking deletes the key; if no runtime is left, the lease simply expires.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = kv.revoke(lease).await;
                });
            }
        }
    }
}
