//! The live view of a running session: server-sent events, one `record` event per record
//! stored for it (the same JSON as the evidence's records, without a proof yet) and one `alert`
//! event per alert it raises; `lagged` when the console fell behind and some were skipped (the
//! page then reloads the session). A stream lasts as long as the page is open: when a new
//! revocation list takes effect, the operator's credentials are checked again, and a stream
//! whose operator is refused now ends with a `refused` event saying why.
use std::{convert::Infallible, time::Duration};

use axum::{
    Extension,
    extract::{Query, State},
    response::sse::{Event, KeepAlive, Sse},
};
use futures::Stream;
use http::HeaderMap;
use recorder_session::EvidenceRecord;
use tokio::sync::broadcast::error::RecvError;

use crate::{Live, api::SessionQuery, auth::PeerCerts, server::Shared};

pub(crate) async fn stream(
    State(console): State<Shared>,
    certs: Option<Extension<PeerCerts>>,
    headers: HeaderMap,
    Query(q): Query<SessionQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let certs = certs.map(|Extension(c)| c).unwrap_or_default();
    let mut live = console.live.subscribe();
    // The generation of the revocation list the operator was last checked at: none yet, as a
    // list may have taken effect since the request was let in; then again at each new one.
    let mut checked_at = None;
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
            let generation = console.auth.generation();
            if checked_at != Some(generation) {
                let why = match console.auth.operator(&certs, &headers) {
                    Ok(Some(_)) => None,
                    Ok(None) => Some("operator credentials required".to_string()),
                    Err(why) => Some(why),
                };
                if let Some(why) = why {
                    tracing::warn!(%why, "console: ended a live view");
                    let _ = tx
                        .send(Ok(Event::default().event("refused").data(why)))
                        .await;
                    return;
                }
                checked_at = Some(generation);
            }
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
