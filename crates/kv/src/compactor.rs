//! The KV compactor (spec 40 §2): every pass (10 min by default) each service CASes
//! `compactkey` in its namespace to the revision it sees now; the winner compacts up to the
//! revision stored by the previous pass, so watchers always keep at least one period of
//! history, and several instances never compact twice for one period.

use std::time::Duration;

use crate::{Compare, CompareOp, Kv, KvExt, Op, Result, Txn};

/// Default period between passes.
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(600);

/// One compaction pass on `key`; returns the revision compacted to, if this caller won.
pub async fn compact_pass(kv: &dyn Kv, key: &str) -> Result<Option<i64>> {
    let current = kv.current_revision().await?;
    let prev = kv.get(key).await?;
    let (compare, previous) = match &prev {
        Some(p) => (
            Compare::mod_revision(key, CompareOp::Equal, p.mod_revision),
            std::str::from_utf8(&p.value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok()),
        ),
        None => (Compare::absent(key), None),
    };
    let resp = kv
        .txn(
            Txn::new()
                .when([compare])
                .and_then([Op::put(key, current.to_string().into_bytes())]),
        )
        .await?;
    if !resp.succeeded {
        // Another instance ran this pass.
        return Ok(None);
    }
    match previous {
        Some(rev) if rev > 0 => {
            kv.compact(rev).await?;
            Ok(Some(rev))
        }
        _ => Ok(None),
    }
}

/// Runs [`compact_pass`] every `interval` until the future is dropped.
pub async fn run(kv: std::sync::Arc<dyn Kv>, key: String, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = compact_pass(kv.as_ref(), &key).await {
            tracing::warn!(error = %e, "kv compaction pass failed");
        }
    }
}
