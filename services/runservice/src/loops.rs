//! The runservice's background loops (spec 20 §9): scheduling (on ET changes and as a
//! periodic safety net), pushing ET changes to connected executors, task sync, the ET
//! cleaner, the liveness checker, the fetcher and the archiver. Every loop stops with the shutdown signal.

use std::time::Duration;

use agola_common::Shutdown;
use agola_kv::{EventKind, KeyRange};
use futures::StreamExt;

use crate::blobs::Blobs;
use crate::executors::Hub;
use crate::runs::Runs;
use crate::store::TASKS;
use crate::types::ExecutorTask;

/// Age after which caches and workspace archives are deleted, and how often that is checked.
const EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
const EXPIRY_INTERVAL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Loops {
    pub runs: Runs,
    pub hub: Hub,
    pub blobs: Blobs,
    pub executor_clients: crate::pull::ExecutorClients,
    /// Notified when a log upload completed: run a fetcher pass now.
    pub fetch_kick: std::sync::Arc<tokio::sync::Notify>,
    pub alive_timeout: Duration,
    pub dead_timeout: Duration,
    pub schedule_interval: Duration,
}

/// Starts every loop; they end when `shutdown` fires.
pub fn start(loops: Loops, shutdown: Shutdown) {
    let l = loops.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move { l.push_task_changes(stop).await });
    let l = loops;
    tokio::spawn(async move { l.periodic(shutdown).await });
}

impl Loops {
    async fn schedule_all(&self) {
        let now = chrono::Utc::now();
        let runs = match self.runs.store().list_runs().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "listing runs failed");
                return;
            }
        };
        for (run, _) in runs {
            if let Err(e) = self.hub.schedule(&run.id, now, self.alive_timeout).await {
                tracing::warn!(run_id = %run.id, error = %e, "scheduling failed");
            }
        }
    }

    /// Periodic safety nets: scheduling and fetching (every `schedule_interval`), the ET
    /// cleaner (1 s), liveness (10 s), task sync (10 s), the archiver (2 s), the run events
    /// cleaner (10 min) and the cache and workspace expiry (daily).
    async fn periodic(&self, shutdown: Shutdown) {
        let mut schedule = tokio::time::interval(self.schedule_interval);
        let mut cleaner = tokio::time::interval(Duration::from_secs(1));
        let mut liveness = tokio::time::interval(Duration::from_secs(10));
        let mut sync = tokio::time::interval(Duration::from_secs(10));
        let mut archiver = tokio::time::interval(Duration::from_secs(2));
        let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
        let mut events = tokio::time::interval(Duration::from_secs(600));
        for t in [
            &mut schedule,
            &mut cleaner,
            &mut liveness,
            &mut sync,
            &mut archiver,
            &mut expiry,
            &mut events,
        ] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let start = chrono::Utc::now();
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = schedule.tick() => {
                    if let Err(e) = crate::fetcher::fetch_pass(&self.runs, &self.blobs, &self.executor_clients, chrono::Utc::now()).await {
                        tracing::warn!(error = %e, "fetcher pass failed");
                    }
                    self.schedule_all().await;
                }
                _ = self.fetch_kick.notified() => {
                    // A log completed: its ET may be deletable now; the runs it touched are
                    // scheduled at once (a freed executor slot, a finished run).
                    match crate::fetcher::fetch_pass(&self.runs, &self.blobs, &self.executor_clients, chrono::Utc::now()).await {
                        Ok(runs) => for r in runs {
                            let _ = self.hub.schedule(&r, chrono::Utc::now(), self.alive_timeout).await;
                        },
                        Err(e) => tracing::warn!(error = %e, "fetcher pass failed"),
                    }
                }
                _ = cleaner.tick() => {
                    match self.hub.clean_tasks(chrono::Utc::now()).await {
                        Ok(runs) => for r in runs {
                            let _ = self.hub.schedule(&r, chrono::Utc::now(), self.alive_timeout).await;
                        },
                        Err(e) => tracing::warn!(error = %e, "executor tasks cleaner failed"),
                    }
                }
                _ = liveness.tick() => {
                    match self.hub.check_liveness(chrono::Utc::now(), start, self.dead_timeout).await {
                        Ok(runs) => for r in runs {
                            let _ = self.hub.schedule(&r, chrono::Utc::now(), self.alive_timeout).await;
                        },
                        Err(e) => tracing::warn!(error = %e, "liveness check failed"),
                    }
                }
                _ = expiry.tick() => {
                    // Caches and workspace archives older than the expiry go (spec 20 §7.4);
                    // several instances may do it at once: deletes are idempotent.
                    let cutoff = std::time::SystemTime::now() - EXPIRY;
                    for prefix in ["caches/", "workspacearchives/"] {
                        match self.blobs.expire(prefix, cutoff).await {
                            Ok(n) if n > 0 => tracing::info!(prefix, deleted = n, "expired objects removed"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(prefix, error = %e, "expiry cleaner failed"),
                        }
                    }
                }
                _ = events.tick() => {
                    let store = self.runs.store();
                    match store.clean_events(chrono::Utc::now(), chrono::TimeDelta::hours(24), 100_000).await {
                        Ok(n) if n > 0 => tracing::info!(removed = n, "old run events removed"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "run events cleaner failed"),
                    }
                }
                _ = archiver.tick() => {
                    if let Err(e) = self.runs.archive_pass(chrono::Utc::now()).await {
                        tracing::warn!(error = %e, "archiver pass failed");
                    }
                }
                _ = sync.tick() => {
                    let executors = self.runs.store().list_executors().await.unwrap_or_default();
                    for e in executors {
                        let _ = self.hub.sync_tasks(&e.id, chrono::Utc::now()).await;
                    }
                }
            }
        }
    }

    /// Watches ETs: a put is pushed to its executor when connected here; a finished task is
    /// fetched and its run scheduled at once instead of waiting for the next tick.
    async fn push_task_changes(&self, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            let stream = self
                .runs
                .store()
                .kv()
                .watch(KeyRange::Prefix(TASKS.to_owned()), 0)
                .await;
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "watching executor tasks failed");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    _ = &mut stop => return,
                    n = stream.next() => n,
                };
                let Some(Ok(resp)) = next else { break };
                for ev in resp.events {
                    match ev.kind {
                        EventKind::Put => {
                            let Ok(et) = serde_json::from_slice::<ExecutorTask>(&ev.kv.value)
                            else {
                                continue;
                            };
                            // Only the spec matters to the executor: push a new ET and a stop
                            // order; the executor's own status reports are not echoed back.
                            if ev.kv.version == 1
                                && let Err(e) =
                                    self.blobs.write_markers(&et.id, &et.spec.run_id).await
                            {
                                tracing::warn!(task = %et.id, error = %e, "writing runid markers failed (the fetcher retries)");
                            }
                            let stop_order = et.spec.stop && !et.status.phase.is_finished();
                            if (ev.kv.version == 1 || stop_order)
                                && let Err(e) = self.hub.push_task(&et).await
                            {
                                tracing::warn!(task = %et.id, error = %e, "pushing a task failed");
                            }
                            if et.status.phase.is_finished() {
                                let now = chrono::Utc::now();
                                let _ = crate::fetcher::fetch_pass(
                                    &self.runs,
                                    &self.blobs,
                                    &self.executor_clients,
                                    now,
                                )
                                .await;
                                let _ = self
                                    .hub
                                    .schedule(&et.spec.run_id, now, self.alive_timeout)
                                    .await;
                            }
                        }
                        EventKind::Delete => {
                            let id = ev.kv.key.trim_start_matches(TASKS).to_owned();
                            self.hub.broadcast_removed(&id).await;
                        }
                    }
                }
            }
        }
    }
}
