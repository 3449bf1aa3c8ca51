//! Which identity, if any, the current task's cgroup (or one of its ancestors) belongs to.
use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
use recorder_common::MAX_CGROUP_LEVEL;

use crate::maps::{SETTINGS, WATCHED};

/// The identity of the deepest watched cgroup containing the current task, checking only the
/// levels where the agent registered watched cgroups (so unwatched hosts pay a few lookups).
#[inline(always)]
pub fn watched_identity() -> Option<u32> {
    find(None)
}

/// Whether the current task sits in a cgroup of `identity` (or below one).
#[inline(always)]
pub fn inside_identity(identity: u32) -> bool {
    find(Some(identity)).is_some()
}

#[inline(always)]
fn find(wanted: Option<u32>) -> Option<u32> {
    let settings = SETTINGS.get(0)?;
    let (min, max) = (settings.min_level, settings.max_level);
    let mut level = max;
    for _ in 0..MAX_CGROUP_LEVEL {
        if level < min || level >= MAX_CGROUP_LEVEL {
            break;
        }
        // SAFETY: plain helper call; returns 0 when the task's cgroup is shallower than `level`.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id != 0 {
            // SAFETY: the value is a plain u32 copied out at once.
            if let Some(identity) = unsafe { WATCHED.get(&id) } {
                match wanted {
                    Some(w) if w != *identity => {}
                    _ => return Some(*identity),
                }
            }
        }
        if level == 0 {
            break;
        }
        level -= 1;
    }
    None
}
