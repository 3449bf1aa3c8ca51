//! Asking the collector: one task per held action, on a thread and runtime of their own (the
//! capture thread never waits on the network). A task asks `RequestApproval` until an operator
//! decided or the hold's deadline passed; a failed call moves to the next collector and asks
//! again with the same id (the request is idempotent at the collector).
use std::{sync::mpsc as std_mpsc, time::Duration};

use recorder_api::{
    proto::v1::{ApprovalRequest, collector_client::CollectorClient},
    tls::ClientTls,
};
use tokio::sync::mpsc;

/// An operator's decision, for the capture thread.
#[derive(Debug)]
pub(crate) struct Decided {
    pub id: String,
    pub approved: bool,
    pub approver: String,
    pub reason: String,
}

/// How long one call may wait at the collector before it answers "pending".
const WAIT_MS: u32 = 20_000;
const RETRY: Duration = Duration::from_secs(1);

/// Starts the asking thread. Requests go in; decisions come out on `decided`.
pub(crate) fn spawn(
    targets: Vec<ClientTls>,
    decided: std_mpsc::Sender<Decided>,
) -> std::io::Result<mpsc::UnboundedSender<ApprovalRequest>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ApprovalRequest>();
    std::thread::Builder::new()
        .name("recorder-approvals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the approvals runtime: held actions will time out and be denied");
                    return;
                }
            };
            runtime.block_on(async move {
                while let Some(request) = rx.recv().await {
                    tokio::spawn(ask(targets.clone(), request, decided.clone()));
                }
            });
        })?;
    Ok(tx)
}

/// Asks until decided, or until the deadline (the capture thread then denies by itself).
async fn ask(
    targets: Vec<ClientTls>,
    request: ApprovalRequest,
    decided: std_mpsc::Sender<Decided>,
) {
    let mut at = 0usize;
    loop {
        if now_unix_ns() >= request.deadline_unix_ns {
            return;
        }
        let target = &targets[at % targets.len()];
        let answer = async {
            let channel = target.connect().await.map_err(|e| e.to_string())?;
            let mut client = CollectorClient::new(channel);
            client
                .request_approval(ApprovalRequest {
                    wait_ms: WAIT_MS,
                    ..request.clone()
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| format!("{}: {}", s.code(), s.message()))
        }
        .await;
        match answer {
            Ok(d) if d.state == "approved" || d.state == "denied" => {
                let _ = decided.send(Decided {
                    id: request.id.clone(),
                    approved: d.state == "approved",
                    approver: d.approver,
                    reason: d.reason,
                });
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(id = %request.id, collector = %target.url, error = %e, "asking for an approval failed; asking again");
                at += 1;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Now as Unix nanoseconds, as the approval messages carry times.
pub(crate) fn now_unix_ns() -> i64 {
    recorder_record::time::now_unix_ns() as i64
}
