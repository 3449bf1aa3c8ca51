//! The live view of a running session: server-sent events, one `record` event per record
//! stored for it (the same JSON as the evidence's records, without a proof yet) and one `alert`
//! event per alert it raises; `lagged` when the console fell behind and some were skipped (the
//! page then reloads the session).
use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Query, State},
    response::sse::{Event, KeepAlive, Sse},
};
use futures::Stream;
use recorder_session::EvidenceRecord;
use tokio::sync::broadcast::error::RecvError;

use crate::{Live, api::SessionQuery, server::Shared};

pub(crate) async fn stream(
    State(console): State<Shared>,
    Query(q): Query<SessionQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut live = console.live.subscribe();
    let events = async_stream(move |tx| async move {
        loop {
            let event = match live.recv().await {
                Ok(Live::Record(r)) if r.host == q.host && r.record.session == q.session => {
                    Event::default()
                        .event("record")
                        .json_data(EvidenceRecord::new(&r, None))
                }
                Ok(Live::Alert(a)) if a.host == q.host && a.session == q.session => {
                    Event::default().event("alert").json_data(&*a)
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    Ok(Event::default().event("lagged").data(n.to_string()))
                }
                Err(RecvError::Closed) => return,
            };
            let Ok(event) = event else { continue };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A stream fed by a task (the task ends when the client goes away).
fn async_stream<T: Send + 'static, F>(
    task: impl FnOnce(tokio::sync::mpsc::Sender<T>) -> F,
) -> tokio_stream::wrappers::ReceiverStream<T>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(task(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
