//! The gRPC service. Every call first establishes who is calling from the verified client
//! certificate (role = OU, name = CN) and refuses what that role may not do.
use std::{pin::Pin, sync::Arc};

use tokio::sync::{broadcast, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use recorder_api::{
    client_check::ClientCheck,
    pki::{self, Peer, Role},
    proto::v1::{self, collector_server::Collector},
};
use recorder_record::hex;
use recorder_store::{StoredRecord, index::SessionFilter};
use rustls_pki_types::CertificateDer;

use crate::{
    Event,
    alerts::Engine,
    approvals::{self, Approvals},
    log::Log,
    metrics::CollectorMetrics,
    wire::stored_record,
};

pub(crate) struct Service {
    pub log: Log,
    pub events: broadcast::Sender<Arc<Event>>,
    pub alerts: Option<Arc<Engine>>,
    pub approvals: Arc<Approvals>,
    pub metrics: CollectorMetrics,
    /// The check of client certificates: chain, dates, revocation (see `tls::server_config`).
    pub clients: Arc<ClientCheck>,
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Service {
    /// The caller, from its certificate once it is checked against the CA.
    fn peer<T>(&self, req: &Request<T>) -> Result<Peer, Status> {
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated(
                "no client certificate: the collector serves only mutual TLS clients",
            )
        })?;
        self.clients.check(&certs).map_err(|why| {
            tracing::warn!(%why, "refused a client certificate");
            Status::unauthenticated(why)
        })?;
        let first = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate presented"))?;
        pki::peer_of(first).map_err(|e| {
            Status::unauthenticated(format!("the client certificate is not usable: {e}"))
        })
    }

    /// Every call starts here: who is calling, and may that role do this.
    fn require<T>(&self, req: &Request<T>, role: Role, what: &str) -> Result<Peer, Status> {
        let who = self
            .peer(req)
            .inspect_err(|_| CollectorMetrics::rejected("unauthenticated"))?;
        if who.role != role {
            CollectorMetrics::rejected("permission");
            tracing::warn!(name = %who.name, role = %who.role, what, "refused");
            return Err(Status::permission_denied(format!(
                "certificate {:?} has role {}; {what} needs an {role} certificate",
                who.name, who.role
            )));
        }
        Ok(who)
    }

    /// `require`, for a stream: the caller's admission, to be asked again before each message.
    fn admit<T>(
        &self,
        req: &Request<T>,
        role: Role,
        what: &str,
    ) -> Result<(Peer, Admission), Status> {
        // The generation before the check: a list that takes effect meanwhile is checked again.
        let generation = self.clients.generation();
        let who = self.require(req, role, what)?;
        let admission = Admission {
            clients: self.clients.clone(),
            certs: req.peer_certs().unwrap_or_default(),
            generation,
        };
        Ok((who, admission))
    }
}

/// A stream's caller as admitted at one generation of the revocation list. A stream lives for
/// hours (an agent's ingest, an operator's watch): once a newer list is in force, the caller's
/// certificate is checked again, and the stream ends if it is revoked.
struct Admission {
    clients: Arc<ClientCheck>,
    certs: Arc<Vec<CertificateDer<'static>>>,
    generation: u64,
}

impl Admission {
    fn still(&mut self) -> Result<(), Status> {
        let generation = self.clients.generation();
        if generation != self.generation {
            self.clients.check(&self.certs).map_err(|why| {
                tracing::warn!(%why, "ended a stream: its client certificate is refused now");
                CollectorMetrics::rejected("unauthenticated");
                Status::unauthenticated(why)
            })?;
            self.generation = generation;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Collector for Service {
    type IngestStream = Stream_<v1::IngestAck>;

    async fn ingest(
        &self,
        req: Request<Streaming<v1::IngestBatch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let (who, mut admission) = self.admit(&req, Role::Agent, "ingest")?;
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let (log, events, alerts, metrics) = (
            self.log.clone(),
            self.events.clone(),
            self.alerts.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "ingest stream ended");
                        break;
                    }
                };
                if let Err(status) = admission.still() {
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                let reply = ingest_batch(&who, batch, &log, &metrics).await;
                match reply {
                    Ok((ack, stored)) => {
                        for rec in stored {
                            let rec = Arc::new(rec);
                            // The record first, then the alerts it raises. No watcher is not an error.
                            let _ = events.send(Arc::new(Event::Record(rec.clone())));
                            if let Some(engine) = &alerts {
                                engine.evaluate(&rec, &events, true);
                            }
                        }
                        if tx.send(Ok(ack)).await.is_err() {
                            break;
                        }
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_sessions(
        &self,
        req: Request<v1::ListSessionsRequest>,
    ) -> Result<Response<v1::ListSessionsResponse>, Status> {
        self.require(&req, Role::Operator, "listing sessions")?;
        let q = req.into_inner();
        let filter = SessionFilter {
            identity: &q.identity,
            host: &q.host,
            since_unix_ns: q.since_unix_ns,
            namespace: &q.namespace,
            pod: &q.pod,
            until_unix_ns: q.until_unix_ns,
            failed: q.failed,
            gaps: q.gaps,
            ..SessionFilter::default()
        };
        let sessions = self
            .log
            .sessions(&filter, q.limit)
            .await?
            .into_iter()
            .map(|s| v1::Session {
                gaps: s.gaps,
                failed: s.failed,
                host: s.host,
                session: s.session,
                identity: s.identity,
                first_time: s.first_time.to_string(),
                last_time: s.last_time.to_string(),
                commands: s.commands,
                records: s.records,
                namespace: s.namespace,
                pod: s.pod,
            })
            .collect();
        Ok(Response::new(v1::ListSessionsResponse { sessions }))
    }

    type GetSessionStream = Stream_<v1::StoredRecord>;

    async fn get_session(
        &self,
        req: Request<v1::GetSessionRequest>,
    ) -> Result<Response<Self::GetSessionStream>, Status> {
        self.require(&req, Role::Operator, "replay")?;
        let q = req.into_inner();
        let records: Vec<v1::StoredRecord> = self
            .log
            .session(q.session, q.host)
            .await?
            .iter()
            .map(stored_record)
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(
            records.into_iter().map(Ok),
        ))))
    }

    type ExportStream = Stream_<v1::StoredRecord>;

    async fn export(
        &self,
        req: Request<v1::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        self.require(&req, Role::Operator, "export")?;
        let q = req.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let log = self.log.clone();
        tokio::spawn(async move {
            let end = match q.limit {
                0 => u64::MAX,
                n => q.from_index.saturating_add(n),
            };
            let mut next = q.from_index;
            // In chunks, so a long export holds up no ingest; it ends where the log ended when
            // the chunk was read.
            while next < end {
                let chunk = match log.read_range(next, end.min(next + 1000)).await {
                    Ok(c) if c.is_empty() => break,
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                // Pruned records that could not be read back are skipped: go on after the last.
                next = chunk.last().map_or(end, |r| r.index + 1);
                for r in &chunk {
                    if tx.send(Ok(stored_record(r))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchStream = Stream_<v1::WatchEvent>;

    async fn watch(
        &self,
        req: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (_, mut admission) = self.admit(&req, Role::Operator, "watch")?;
        let q = req.into_inner();
        let mut sub = self.events.subscribe();
        let (tx, rx) = mpsc::channel(256);
        let wanted = move |r: &StoredRecord| {
            (q.identities.is_empty() || q.identities.contains(&r.record.identity))
                && (q.kinds.is_empty() || q.kinds.iter().any(|k| k == r.record.kind().as_str()))
        };
        tokio::spawn(async move {
            loop {
                let event = match sub.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let ev = v1::WatchEvent {
                            event: Some(v1::watch_event::Event::Lagged(n)),
                        };
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if let Err(status) = admission.still() {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                let ev = match &*event {
                    Event::Record(r) if wanted(r) => {
                        v1::watch_event::Event::Record(stored_record(r))
                    }
                    Event::Alert(a) if wanted(&a.record) => {
                        v1::watch_event::Event::Alert(a.to_proto())
                    }
                    _ => continue,
                };
                if tx
                    .send(Ok(v1::WatchEvent { event: Some(ev) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_checkpoint(
        &self,
        req: Request<v1::GetCheckpointRequest>,
    ) -> Result<Response<v1::Checkpoint>, Status> {
        self.require(&req, Role::Operator, "reading checkpoints")?;
        let cp = self
            .log
            .latest_checkpoint()
            .await?
            .ok_or_else(|| Status::not_found("no checkpoint yet: nothing stored"))?;
        Ok(Response::new(v1::Checkpoint {
            tree_size: cp.tree_size,
            root: cp.root_hash().map(|h| h.to_vec()).unwrap_or_default(),
            time: cp.time.clone(),
            signature: hex::decode(&cp.signature).unwrap_or_default(),
            public_key: self.log.public_key(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<v1::InclusionProofRequest>,
    ) -> Result<Response<v1::InclusionProof>, Status> {
        self.require(&req, Role::Operator, "reading proofs")?;
        let q = req.into_inner();
        let (leaf, path) = self
            .log
            .inclusion_proof(q.index, q.tree_size)
            .await?
            .ok_or_else(|| {
                Status::out_of_range(format!(
                    "no record {} in a tree of size {}",
                    q.index, q.tree_size
                ))
            })?;
        Ok(Response::new(v1::InclusionProof {
            index: q.index,
            tree_size: q.tree_size,
            leaf_hash: leaf.to_vec(),
            path: path.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<v1::ConsistencyProofRequest>,
    ) -> Result<Response<v1::ConsistencyProof>, Status> {
        self.require(&req, Role::Operator, "reading proofs")?;
        let q = req.into_inner();
        let path = self
            .log
            .consistency_proof(q.old_size, q.new_size)
            .await?
            .ok_or_else(|| {
                Status::out_of_range(format!(
                    "no consistency proof from {} to {}",
                    q.old_size, q.new_size
                ))
            })?;
        Ok(Response::new(v1::ConsistencyProof {
            old_size: q.old_size,
            new_size: q.new_size,
            path: path.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_evidence(
        &self,
        req: Request<v1::GetSessionRequest>,
    ) -> Result<Response<v1::Evidence>, Status> {
        self.require(&req, Role::Operator, "evidence")?;
        let q = req.into_inner();
        let view = crate::console::LogView(self.log.clone(), self.approvals.clone());
        let evidence = recorder_console::assemble(&view, &q.host, &q.session)
            .await
            .map_err(Status::internal)?
            .ok_or_else(|| Status::not_found(format!("no session {:?}", q.session)))?;
        let json = serde_json::to_vec(&evidence).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::Evidence { json }))
    }

    async fn request_approval(
        &self,
        req: Request<v1::ApprovalRequest>,
    ) -> Result<Response<v1::ApprovalDecision>, Status> {
        let who = self.require(&req, Role::Agent, "asking for approval")?;
        let decision = self
            .approvals
            .request(&who.name, req.into_inner(), approvals::now())
            .await?;
        Ok(Response::new(decision))
    }

    async fn list_approvals(
        &self,
        req: Request<v1::ListApprovalsRequest>,
    ) -> Result<Response<v1::ListApprovalsResponse>, Status> {
        self.require(&req, Role::Operator, "listing approvals")?;
        let pending = self.approvals.list(approvals::now());
        Ok(Response::new(v1::ListApprovalsResponse { pending }))
    }

    async fn decide_approval(
        &self,
        req: Request<v1::DecideApprovalRequest>,
    ) -> Result<Response<v1::ApprovalDecision>, Status> {
        let who = self.require(&req, Role::Operator, "deciding approvals")?;
        let q = req.into_inner();
        let decision =
            self.approvals
                .decide(&q.id, q.approve, &q.reason, &who.name, approvals::now())?;
        Ok(Response::new(decision))
    }

    async fn verify(
        &self,
        req: Request<v1::VerifyRequest>,
    ) -> Result<Response<v1::VerifyResponse>, Status> {
        self.require(&req, Role::Operator, "verify")?;
        let v = self.log.verify().await?;
        Ok(Response::new(v1::VerifyResponse {
            ok: v.problems.is_empty(),
            records: v.records,
            checkpoints: v.checkpoints,
            problems: v.problems,
            pruned: v.pruned,
        }))
    }
}

/// Checks and stores one batch; returns the acknowledgement and the newly stored records.
async fn ingest_batch(
    who: &Peer,
    batch: v1::IngestBatch,
    log: &Log,
    metrics: &CollectorMetrics,
) -> Result<(v1::IngestAck, Vec<StoredRecord>), Status> {
    if batch.host != who.name {
        CollectorMetrics::rejected("wrong_host");
        tracing::warn!(cert = %who.name, host = %batch.host, "refused a batch for another host");
        return Err(Status::permission_denied(format!(
            "the agent certificate for host {:?} may not send records for host {:?}",
            who.name, batch.host
        )));
    }
    if batch.boot.is_empty() || batch.boot.len() > 128 {
        CollectorMetrics::rejected("invalid");
        return Err(Status::invalid_argument(
            "the batch's boot (stream id) must be 1 to 128 characters",
        ));
    }
    let n = batch.lines.len() as u64;
    let host = batch.host.clone();
    let out = log
        .append(
            batch.host,
            batch.boot.clone(),
            batch.first_sequence,
            batch.lines,
            move |record| {
                if record.host == host {
                    Ok(())
                } else {
                    Err(format!(
                        "its host is {:?}, not the batch's {host:?}",
                        record.host
                    ))
                }
            },
        )
        .await
        .inspect_err(|e| {
            if e.is_bad_record() {
                CollectorMetrics::rejected("invalid");
            }
        })?;
    metrics.batch(out.stored, out.duplicates, out.placed.len() as u64);
    debug_assert_eq!(out.stored + out.duplicates, n);
    let ack = v1::IngestAck {
        boot: batch.boot,
        acked_sequence: out.acked.unwrap_or(0),
        stored_any: out.acked.is_some(),
        stored: out.stored,
        duplicates: out.duplicates,
    };
    Ok((ack, out.placed))
}
