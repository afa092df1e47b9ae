//! The fetcher (spec 20 §7.2), for finished run tasks that still have an ET: stores each
//! log (composing the uploaded parts), marks it `finished`, or `lost` (keeping whatever
//! partial content arrived) when the executor is gone; once every log and archive of the task
//! is done, deletes the ET (freeing the executor's slot).
//!
//! Workspace archives are pulled from the executor's `ExecutorService` (the executor keeps
//! them on its disk); a log the live upload did not complete within [`LOG_UPLOAD_GRACE`] of
//! the task's end (the executor restarted, say) is pulled too.
//!
//! The runid markers of a task are written again before its ET is deleted (spec 20 §8).

use crate::blobs::{Blobs, LogKind, log_path};
use crate::pull::{ExecutorClients, Pulled};
use crate::runs::{Result, RunError, Runs};
use crate::store::StoreError;
use crate::types::{ExecutorTaskPhase, FetchPhase, Run, RunTask, Time};

/// How long after an ET ended its logs are left to the live upload before being pulled.
const LOG_UPLOAD_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// Where the data of a finished ET can be pulled from.
pub struct Source<'a> {
    pub clients: &'a ExecutorClients,
    /// The executor's `ExecutorService` URL; None when the executor is gone.
    pub url: Option<&'a str>,
    /// Pull logs too (the live upload had its chance).
    pub pull_logs: bool,
}

/// What to do with one log.
async fn fetch_log(
    blobs: &Blobs,
    task_id: &str,
    kind: LogKind,
    ran: bool,
    source: &Source<'_>,
) -> Result<FetchPhase> {
    let executor_gone = source.url.is_none();
    if !ran {
        return Ok(FetchPhase::Finished);
    }
    if blobs.storage().stat(&log_path(task_id, kind)).await.is_ok() {
        return Ok(FetchPhase::Finished);
    }
    if executor_gone {
        // Keep what was uploaded, with a marker line, and say it was lost.
        let acked = blobs.acked_offset(task_id, kind).await?;
        if acked > 0 {
            blobs.complete_log(task_id, kind, acked).await?;
            let path = log_path(task_id, kind);
            let mut content = blobs
                .storage()
                .read_to_vec(&path)
                .await
                .map_err(|e| RunError::Unavailable(e.to_string()))?;
            content.extend_from_slice(b"\n[log truncated: executor lost]\n");
            blobs
                .storage()
                .write_bytes(&path, &content, false)
                .await
                .map_err(|e| RunError::Unavailable(e.to_string()))?;
        }
        tracing::warn!(task_id, ?kind, "log lost: the executor is gone");
        return Ok(FetchPhase::Lost);
    }
    if let (true, Some(url)) = (source.pull_logs, source.url) {
        match source.clients.pull_log(blobs, url, task_id, kind).await {
            Ok(Pulled::Stored) => return Ok(FetchPhase::Finished),
            // The executor lost its data: keep what the upload stored.
            Ok(Pulled::NotFound) => {
                let acked = blobs.acked_offset(task_id, kind).await?;
                if acked > 0 {
                    blobs.complete_log(task_id, kind, acked).await?;
                }
                return Ok(FetchPhase::Lost);
            }
            Err(e) => tracing::debug!(task_id, ?kind, error = %e, "log pull failed; retried"),
        }
    }
    Ok(FetchPhase::Notstarted)
}

/// Fetches what it can for `task`; returns the updated task.
async fn fetch_task(blobs: &Blobs, task: &RunTask, source: &Source<'_>) -> Result<RunTask> {
    let mut t = task.clone();
    if t.setup_step.log_phase == FetchPhase::Notstarted {
        let ran = t.setup_step.phase != ExecutorTaskPhase::Notstarted;
        t.setup_step.log_phase = fetch_log(blobs, &t.id, LogKind::Setup, ran, source).await?;
    }
    for i in 0..t.steps.len() {
        if t.steps[i].log_phase == FetchPhase::Notstarted {
            let ran = t.steps[i].phase != ExecutorTaskPhase::Notstarted;
            let phase = fetch_log(blobs, &t.id, LogKind::Step(i), ran, source).await?;
            t.steps[i].log_phase = phase;
        }
    }
    for (i, step) in t.workspace_archives.clone().into_iter().enumerate() {
        if t.workspace_archives_phase.get(i) != Some(&FetchPhase::Notstarted) {
            continue;
        }
        let succeeded = t
            .steps
            .get(step)
            .is_some_and(|s| s.phase == ExecutorTaskPhase::Success);
        let stored = blobs
            .storage()
            .stat(&crate::blobs::archive_path(&t.id, step))
            .await
            .is_ok();
        let phase = if !succeeded || stored {
            FetchPhase::Finished
        } else if let Some(url) = source.url {
            match source.clients.pull_archive(blobs, url, &t.id, step).await {
                Ok(Pulled::Stored) => FetchPhase::Finished,
                Ok(Pulled::NotFound) => FetchPhase::Lost,
                Err(e) => {
                    tracing::debug!(task_id = %t.id, step, error = %e, "archive pull failed; retried");
                    FetchPhase::Notstarted
                }
            }
        } else {
            FetchPhase::Lost
        };
        t.workspace_archives_phase[i] = phase;
    }
    Ok(t)
}

/// One fetcher pass over every live run; returns the runs whose state changed.
pub async fn fetch_pass(
    runs: &Runs,
    blobs: &Blobs,
    clients: &ExecutorClients,
    now: Time,
) -> Result<Vec<String>> {
    let store = runs.store();
    let executors: std::collections::HashMap<String, String> = store
        .list_executors()
        .await?
        .into_iter()
        .map(|e| (e.id, e.listen_url))
        .collect();
    let mut touched = Vec::new();
    for (run, _) in store.list_runs().await? {
        for task in run.tasks.values() {
            if !task.status.is_finished() {
                continue;
            }
            let Some((et, et_rev)) = store.get_executor_task(&task.id).await? else {
                continue;
            };
            if !et.status.phase.is_finished() {
                continue;
            }
            let source = Source {
                clients,
                url: executors.get(&et.spec.executor_id).map(String::as_str),
                pull_logs: et
                    .status
                    .end_time
                    .is_none_or(|end| now - end >= LOG_UPLOAD_GRACE),
            };
            let fetched = fetch_task(blobs, task, &source).await?;
            if &fetched != task {
                save_task(runs, &run.id, &fetched, now).await?;
                touched.push(run.id.clone());
            }
            if fetched.fetch_done() {
                // The markers were written when the ET was created; write them again (once,
                // idempotently) before the ET goes, so no stored data is left unreferenced.
                blobs.write_markers(&task.id, &run.id).await?;
                match store.delete_executor_task(&et.id, et_rev).await {
                    Ok(()) | Err(StoreError::Concurrency(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                touched.push(run.id.clone());
            }
        }
    }
    touched.dedup();
    Ok(touched)
}

async fn save_task(runs: &Runs, run_id: &str, task: &RunTask, now: Time) -> Result<()> {
    let store = runs.store();
    loop {
        let Some((run, rev)) = store.get_run(run_id).await? else {
            return Ok(());
        };
        let mut next: Run = run.clone();
        let Some(t) = next.tasks.get_mut(&task.id) else {
            return Ok(());
        };
        t.setup_step.log_phase = task.setup_step.log_phase;
        for (a, b) in t.steps.iter_mut().zip(&task.steps) {
            a.log_phase = b.log_phase;
        }
        t.workspace_archives_phase
            .clone_from(&task.workspace_archives_phase);
        match store.save_run(&next, &run, rev, now, vec![], vec![]).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Concurrency(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
