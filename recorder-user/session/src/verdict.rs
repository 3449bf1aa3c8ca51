//! The completeness verdict of a session: `complete`, or every place where something may be
//! missing and why, in log order.
use recorder_record::{Record, Timestamp, completeness};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub complete: bool,
    pub gaps: Vec<GapAt>,
}

/// One gap: the record that reports it (of the session, or of its host while it ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapAt {
    pub index: u64,
    pub time: Timestamp,
    pub reason: String,
    pub what: String,
}

impl Verdict {
    /// The verdict of a session from its records and the host-wide `loss`/`notice` records of
    /// its time (both with their log indexes).
    pub fn of<'a>(
        records: impl IntoIterator<Item = (u64, &'a Record)>,
        context: impl IntoIterator<Item = (u64, &'a Record)>,
    ) -> Self {
        let mut gaps: Vec<GapAt> = records
            .into_iter()
            .chain(context)
            .filter_map(|(index, r)| {
                completeness::gap_of(r).map(|g| GapAt {
                    index,
                    time: r.time,
                    reason: g.reason,
                    what: g.what,
                })
            })
            .collect();
        gaps.sort_by_key(|g| g.index);
        gaps.dedup_by_key(|g| g.index);
        Verdict {
            complete: gaps.is_empty(),
            gaps,
        }
    }

    /// `complete`, or `incomplete (N gaps)`.
    pub fn label(&self) -> String {
        match self.gaps.len() {
            0 => completeness::label(0),
            n => format!("incomplete ({})", completeness::label(n as u64)),
        }
    }
}
