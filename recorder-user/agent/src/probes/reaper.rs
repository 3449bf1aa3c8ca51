//! Closing detached uprobe links away from the event loop, and out of the way of attaching.
//!
//! The kernel releases each uprobe under the lock that attaching one also takes, and waits for
//! a grace period while holding it (about 100 ms here). Closing a process's 8 links on the event
//! loop stalled it for 850 ms; closing them on a thread as soon as they come still made the next
//! process's attach wait behind them. So links are closed one at a time, only after attaching has
//! been quiet for a while: a process that exited leaves its probes inert (they are scoped to it),
//! so closing them late costs nothing but file descriptors.
use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use aya::programs::uprobe::UProbeLink;

/// Attaching must have been quiet this long before a link is closed.
const QUIET: Duration = Duration::from_millis(500);

pub(crate) struct Reaper {
    links: mpsc::Sender<Vec<UProbeLink>>,
    /// Milliseconds since `epoch` of the latest attach activity.
    last_attach: Arc<AtomicU64>,
    epoch: Instant,
}

impl Reaper {
    pub(crate) fn start() -> std::io::Result<Self> {
        let (links, detached) = mpsc::channel::<Vec<UProbeLink>>();
        let last_attach = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let seen = last_attach.clone();
        std::thread::Builder::new()
            .name("probe-reaper".into())
            .spawn(move || reap(&detached, &seen, epoch))?;
        Ok(Self {
            links,
            last_attach,
            epoch,
        })
    }

    /// Attaching is going on: closing waits until it has been quiet for a while.
    pub(crate) fn attaching(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_attach.store(now, Ordering::Relaxed);
    }

    /// Links to close once attaching is quiet.
    pub(crate) fn close(&self, links: Vec<UProbeLink>) {
        // The thread only ends with the agent; closing here is the fallback.
        if let Err(mpsc::SendError(links)) = self.links.send(links) {
            drop(links);
        }
    }
}

fn reap(detached: &mpsc::Receiver<Vec<UProbeLink>>, last_attach: &AtomicU64, epoch: Instant) {
    let mut queue: VecDeque<UProbeLink> = VecDeque::new();
    loop {
        let wait = if queue.is_empty() {
            Duration::from_hours(1)
        } else {
            QUIET / 5
        };
        match detached.recv_timeout(wait) {
            Ok(links) => queue.extend(links),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The agent is stopping: close everything now.
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while !queue.is_empty() {
            let since = (epoch.elapsed().as_millis() as u64)
                .saturating_sub(last_attach.load(Ordering::Relaxed));
            if Duration::from_millis(since) < QUIET {
                break;
            }
            drop(queue.pop_front());
        }
    }
}
