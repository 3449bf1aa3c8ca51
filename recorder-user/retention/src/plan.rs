//! Which segments may go: a closed segment is read whole, each record judged by the rules (its
//! own time plus its rule's days), and the segment is due only when every record in it is past
//! its time, no legal hold covers any of them, and every exporter has delivered past it. A
//! segment is the unit deleted, so a record kept longer keeps its whole segment.
use std::{collections::HashMap, io::Read, path::Path};

use recorder_record::{Record, hex, time::rfc3339_nanos};
use recorder_store::{
    integrity::Hash,
    pruned::{PrunedSegment, PrunedStream},
    segment::{self, HEADER},
};

use crate::config::RetentionConfig;

const NS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// A closed segment as retention sees it.
#[derive(Debug)]
pub struct SegmentFacts {
    pub segment: u32,
    pub first_index: u64,
    pub end_index: u64,
    pub oldest_ns: i128,
    pub newest_ns: i128,
    pub leaves: Vec<Hash>,
    pub streams: Vec<PrunedStream>,
    /// When its last record's time runs out (None: some record is kept until a rule names it).
    pub expires_ns: Option<i128>,
    /// The rule of the record that runs out last.
    pub rule: String,
    /// Why it must stay whatever its age (a legal hold, an unreadable record).
    pub pinned: Option<String>,
    /// The (host, session) pairs with records in it.
    pub sessions: std::collections::BTreeSet<(String, String)>,
}

/// What to do with a segment now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Due,
    Keep(String),
}

/// Reads segment `segment` (the file at `path`) and judges its records by `config`.
pub fn read_segment(
    path: &Path,
    segment: u32,
    config: &RetentionConfig,
) -> Result<SegmentFacts, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Read frame by frame: memory holds one record and the leaf hashes, not the segment.
    judge(
        std::io::BufReader::new(file),
        &path.display().to_string(),
        segment,
        config,
    )
}

/// Judges the records of a segment image (the PostgreSQL store's, made from its rows).
pub fn judge_image(
    bytes: &[u8],
    segment: u32,
    config: &RetentionConfig,
) -> Result<SegmentFacts, String> {
    judge(bytes, &format!("segment {segment}"), segment, config)
}

fn judge(
    mut file: impl Read,
    name: &str,
    segment: u32,
    config: &RetentionConfig,
) -> Result<SegmentFacts, String> {
    let io = |e: std::io::Error| format!("{name}: {e}");
    let mut header = [0u8; HEADER.len()];
    file.read_exact(&mut header).map_err(io)?;
    if &header != HEADER {
        return Err(format!("{name}: not a log segment"));
    }
    let mut facts = SegmentFacts {
        segment,
        first_index: 0,
        end_index: 0,
        oldest_ns: i128::MAX,
        newest_ns: i128::MIN,
        leaves: Vec::new(),
        streams: Vec::new(),
        expires_ns: Some(i128::MIN),
        rule: String::new(),
        pinned: None,
        sessions: std::collections::BTreeSet::new(),
    };
    let mut streams: HashMap<(String, String), PrunedStream> = HashMap::new();
    let mut order = Vec::new();
    let mut offset = HEADER.len();
    let mut buf = Vec::new();
    while next_frame(&mut file, &mut buf).map_err(io)? {
        let frame =
            segment::decode_frame(&buf).map_err(|e| format!("{name} byte offset {offset}: {e}"))?;
        let e = &frame.entry;
        let leaf = frame.computed_leaf();
        if leaf != frame.stored_leaf {
            return Err(format!(
                "{name} log index {}: content does not match its stored hash; run `recorder verify`",
                e.index
            ));
        }
        if facts.leaves.is_empty() {
            facts.first_index = e.index;
        }
        facts.leaves.push(leaf);
        facts.end_index = e.index + 1;
        let key = (e.host.to_string(), e.boot.to_string());
        let s = streams.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            PrunedStream {
                host: e.host.to_string(),
                boot: e.boot.to_string(),
                first_sequence: e.sequence,
                last_sequence: e.sequence,
                first_prev: hex::encode(&e.prev),
                last_leaf: String::new(),
                records: 0,
            }
        });
        s.last_sequence = e.sequence;
        s.last_leaf = hex::encode(&leaf);
        s.records += 1;
        match Record::parse(e.line) {
            Ok(record) => facts.judge(&record, config),
            Err(err) => {
                facts.pinned.get_or_insert(format!(
                    "log index {} is not a record line ({err}); kept",
                    e.index
                ));
            }
        }
        offset += frame.len;
    }
    facts.streams = order
        .into_iter()
        .filter_map(|k| streams.remove(&k))
        .collect();
    Ok(facts)
}

/// Reads the next frame (length, entry, leaf hash) into `buf`; false at the end of the file.
fn next_frame(file: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut len = [0u8; 4];
    match file.read_exact(&mut len) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        r => r?,
    }
    let entry = u32::from_le_bytes(len) as usize;
    if entry > segment::MAX_ENTRY {
        return Err(std::io::Error::other(format!(
            "impossible frame length {entry}"
        )));
    }
    buf.clear();
    buf.extend_from_slice(&len);
    buf.resize(4 + entry + 32, 0);
    file.read_exact(&mut buf[4..])?;
    Ok(true)
}

impl SegmentFacts {
    fn judge(&mut self, record: &Record, config: &RetentionConfig) {
        let time = record.time.unix_ns();
        if !record.session.is_empty() {
            self.sessions
                .insert((record.host.clone(), record.session.clone()));
        }
        self.oldest_ns = self.oldest_ns.min(time);
        self.newest_ns = self.newest_ns.max(time);
        if self.pinned.is_none()
            && let Some(hold) = config.hold_on(record)
        {
            let whom = match (&hold.identity, &hold.session) {
                (Some(i), _) => format!("identity {i}"),
                (None, Some(s)) => format!("session {s}"),
                (None, None) => String::new(),
            };
            self.pinned = Some(format!("legal hold on {whom} ({})", hold.reason));
        }
        if let Some((days, rule)) = config.keep_days(record) {
            let until = time.saturating_add(i128::from(days) * NS_PER_DAY);
            if let Some(e) = self.expires_ns
                && until >= e
            {
                self.expires_ns = Some(until);
                self.rule = rule;
            }
        } else {
            self.expires_ns = None;
            self.rule = "no rule names some of its records".into();
        }
    }

    /// Whether it may go at `now_ns`, given the lowest log index any exporter has not yet
    /// delivered (`export_floor`, with the exporter's name).
    pub fn verdict(&self, now_ns: i128, export_floor: Option<(&str, u64)>) -> Verdict {
        if self.leaves.is_empty() {
            return Verdict::Keep("empty".into());
        }
        if let Some(why) = &self.pinned {
            return Verdict::Keep(why.clone());
        }
        match self.expires_ns {
            None => return Verdict::Keep(self.rule.clone()),
            Some(at) if at > now_ns => {
                return Verdict::Keep(format!("kept until {} ({})", rfc3339_nanos(at), self.rule));
            }
            Some(_) => {}
        }
        if let Some((name, next)) = export_floor
            && next < self.end_index
        {
            return Verdict::Keep(format!(
                "exporter {name} has delivered up to log index {next}, not past {}",
                self.end_index - 1
            ));
        }
        Verdict::Due
    }

    /// The ledger entry for its deletion (the store adds the leaves' hash and the signature).
    pub fn entry(&self, time: String, archive: Option<String>) -> PrunedSegment {
        PrunedSegment {
            segment: self.segment,
            first_index: self.first_index,
            end_index: self.end_index,
            oldest: rfc3339_nanos(self.oldest_ns),
            newest: rfc3339_nanos(self.newest_ns),
            rule: self.rule.clone(),
            time,
            archive,
            leaves_sha256: String::new(),
            streams: self.streams.clone(),
            sessions: self.sessions.iter().cloned().collect(),
            signature: String::new(),
        }
    }
}
