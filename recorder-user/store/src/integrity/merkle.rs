//! The RFC 6962 Merkle tree over the whole log: leaf hash = SHA-256(0x00 || entry), node hash =
//! SHA-256(0x01 || left || right), a tree of n leaves split at the largest power of two below n.
//! `Frontier` keeps only the roots of the perfect subtrees of the current size, so appending and
//! computing the root cost O(log n).
//!
//! Proofs: every hash of an RFC 6962 proof is the tree head of a range of leaves, and every such
//! range starts at a multiple of a power of two at least its length, so it is the fold of at most
//! log n perfect subtrees ([`NodeId`]). A store that keeps its perfect subtrees' hashes (the
//! leaves, and each node once both its children exist) serves a proof by reading O(log n) of
//! them: [`inclusion_ranges`]/[`consistency_ranges`] say which ranges, [`nodes_of`] which nodes,
//! [`assemble`] folds what was read into the proof. The slice functions below compute the same
//! from all leaves and are kept as the reference the tests compare with.
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hash of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The compact state of an append-only tree.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first; one per set bit of `size`.
    peaks: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _| {});
    }

    /// Appends a leaf and hands every node it completes (level 1 and up) to `completed`.
    pub fn push_with(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, &Hash)) {
        let mut node = leaf;
        let mut size = self.size;
        let mut level = 0u8;
        // Merge with equal-sized peaks, as a binary counter carries.
        while size & 1 == 1 {
            let left = self.peaks.pop().unwrap_or(node);
            node = node_hash(&left, &node);
            size >>= 1;
            level += 1;
            completed(
                NodeId {
                    level,
                    index: self.size >> level,
                },
                &node,
            );
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// The perfect subtrees a tree of `size` leaves is made of, largest first: what a store reads
    /// back to resume appending without reading every leaf.
    pub fn peak_nodes(size: u64) -> Vec<NodeId> {
        nodes_of(0, size)
    }

    /// The frontier of a tree of `size` leaves from the hashes of its [`Frontier::peak_nodes`].
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<Self> {
        (peaks.len() == size.count_ones() as usize).then_some(Self { size, peaks })
    }

    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// The RFC 6962 tree head of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, peak| node_hash(peak, &acc))
    }
}

/// A perfect subtree: the leaves `index << level .. (index + 1) << level`. Level 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

/// The perfect subtrees that make up the leaves `lo..hi`, left to right. For the ranges of a
/// proof (and for `0..n`) their fold is the range's tree head.
pub fn nodes_of(mut lo: u64, hi: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    while lo < hi {
        let len = hi - lo;
        // The largest power of two that both divides `lo` and fits in what is left.
        let fits = len.ilog2();
        let level = if lo == 0 {
            fits
        } else {
            fits.min(lo.trailing_zeros())
        };
        out.push(NodeId {
            level: level as u8,
            index: lo >> level,
        });
        lo += 1 << level;
    }
    out
}

/// The tree head of perfect subtrees given left to right (the fold `Frontier::root` does).
pub fn fold(nodes: &[Hash]) -> Hash {
    let mut iter = nodes.iter().rev();
    let Some(last) = iter.next() else {
        return empty_root();
    };
    iter.fold(*last, |acc, left| node_hash(left, &acc))
}

/// The leaf ranges whose tree heads make the audit path of leaf `index` in a tree of `size`
/// leaves, in the path's order; None if the leaf is outside the tree.
pub fn inclusion_ranges(index: u64, size: u64) -> Option<Vec<(u64, u64)>> {
    fn rec(lo: u64, hi: u64, m: u64, out: &mut Vec<(u64, u64)>) {
        if hi - lo <= 1 {
            return;
        }
        let k = lo + split(hi - lo);
        if m < k {
            rec(lo, k, m, out);
            out.push((k, hi));
        } else {
            rec(k, hi, m, out);
            out.push((lo, k));
        }
    }
    if index >= size {
        return None;
    }
    let mut out = Vec::new();
    rec(0, size, index, &mut out);
    Some(out)
}

/// The leaf ranges whose tree heads make the consistency proof from `old` to `size` leaves.
pub fn consistency_ranges(old: u64, size: u64) -> Option<Vec<(u64, u64)>> {
    fn rec(lo: u64, hi: u64, m: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
        if m == hi {
            if !complete {
                out.push((lo, hi));
            }
            return;
        }
        let k = lo + split(hi - lo);
        if m <= k {
            rec(lo, k, m, complete, out);
            out.push((k, hi));
        } else {
            rec(k, hi, m, false, out);
            out.push((lo, k));
        }
    }
    if old > size {
        return None;
    }
    let mut out = Vec::new();
    if old > 0 && old < size {
        rec(0, size, old, true, &mut out);
    }
    Some(out)
}

/// Every node the ranges need, each once, sorted.
pub fn nodes_for(ranges: &[(u64, u64)]) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = ranges.iter().flat_map(|&(a, b)| nodes_of(a, b)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The proof from the ranges and the nodes read for them; None if `node` lacks one.
pub fn assemble(ranges: &[(u64, u64)], node: impl Fn(NodeId) -> Option<Hash>) -> Option<Vec<Hash>> {
    ranges
        .iter()
        .map(|&(a, b)| {
            let hashes: Option<Vec<Hash>> = nodes_of(a, b).into_iter().map(&node).collect();
            hashes.map(|h| fold(&h))
        })
        .collect()
}

/// The leaf ranges, outside `first..end`, whose tree heads together with the leaves
/// `first..end` give the head of the tree of `size` leaves: a proof that a run of leaves (an
/// archived segment) sits at that place in a signed tree. None if the run is not in the tree.
pub fn range_ranges(first: u64, end: u64, size: u64) -> Option<Vec<(u64, u64)>> {
    fn rec(lo: u64, hi: u64, first: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        if hi <= first || lo >= end {
            out.push((lo, hi));
        } else if first <= lo && hi <= end {
            // Made from the run's own leaves.
        } else {
            let k = lo + split(hi - lo);
            rec(lo, k, first, end, out);
            rec(k, hi, first, end, out);
        }
    }
    if first >= end || end > size {
        return None;
    }
    let mut out = Vec::new();
    rec(0, size, first, end, &mut out);
    Some(out)
}

/// The head of the tree of `size` leaves from the run `leaves` starting at `first` and the
/// proof `range_ranges` gave (in its order); None if the proof has the wrong length.
pub fn root_from_range(leaves: &[Hash], first: u64, size: u64, proof: &[Hash]) -> Option<Hash> {
    fn rec(
        lo: u64,
        hi: u64,
        first: u64,
        leaves: &[Hash],
        proof: &mut std::slice::Iter<'_, Hash>,
    ) -> Option<Hash> {
        let end = first + leaves.len() as u64;
        if hi <= first || lo >= end {
            proof.next().copied()
        } else if first <= lo && hi <= end {
            Some(subtree_root(
                &leaves[(lo - first) as usize..(hi - first) as usize],
            ))
        } else {
            let k = lo + split(hi - lo);
            let left = rec(lo, k, first, leaves, proof)?;
            let right = rec(k, hi, first, leaves, proof)?;
            Some(node_hash(&left, &right))
        }
    }
    if leaves.is_empty() || first + leaves.len() as u64 > size {
        return None;
    }
    let mut iter = proof.iter();
    let root = rec(0, size, first, leaves, &mut iter)?;
    iter.next().is_none().then_some(root)
}

/// MTH(D[lo..hi]) over stored leaf hashes.
pub fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly below n (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (n - 1).ilog2()
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 6962 section 2.1.1), or None if
/// the index is outside the tree.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Option<Vec<Hash>> {
    if index >= leaves.len() as u64 {
        return None;
    }
    let mut path = Vec::new();
    path_rec(leaves, index as usize, &mut path);
    Some(path)
}

fn path_rec(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n as u64) as usize;
    if m < k {
        path_rec(&leaves[..k], m, out);
        out.push(subtree_root(&leaves[k..]));
    } else {
        path_rec(&leaves[k..], m - k, out);
        out.push(subtree_root(&leaves[..k]));
    }
}

/// Checks an audit path (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// The consistency proof between the first `old` leaves and all of `leaves` (RFC 6962 2.1.2).
pub fn consistency_proof(leaves: &[Hash], old: u64) -> Option<Vec<Hash>> {
    let n = leaves.len() as u64;
    if old > n {
        return None;
    }
    let mut out = Vec::new();
    if old == 0 || old == n {
        return Some(out);
    }
    subproof(leaves, old as usize, true, &mut out);
    Some(out)
}

fn subproof(leaves: &[Hash], m: usize, complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(subtree_root(leaves));
        }
        return;
    }
    let k = split(n as u64) as usize;
    if m <= k {
        subproof(&leaves[..k], m, complete, out);
        out.push(subtree_root(&leaves[k..]));
    } else {
        subproof(&leaves[k..], m - k, false, out);
        out.push(subtree_root(&leaves[..k]));
    }
}

/// Checks a consistency proof (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return path.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return path.is_empty();
    }
    let mut path: Vec<Hash> = path.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;
    use recorder_record::hex;

    /// The leaves and tree heads of the Certificate Transparency reference tests
    /// (certificate-transparency, `merkle_tree_test.cc`).
    const LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES.iter().map(|l| leaf_hash(l)).collect()
    }

    /// Every node of the tree over `leaves`, as a store keeps them.
    fn stored_nodes(leaves: &[Hash]) -> std::collections::HashMap<NodeId, Hash> {
        let mut nodes = std::collections::HashMap::new();
        let mut f = Frontier::default();
        for (i, leaf) in leaves.iter().enumerate() {
            nodes.insert(
                NodeId {
                    level: 0,
                    index: i as u64,
                },
                *leaf,
            );
            f.push_with(*leaf, |id, h| {
                nodes.insert(id, *h);
            });
        }
        nodes
    }

    #[test]
    fn proofs_from_stored_nodes_equal_proofs_from_all_leaves() {
        let all: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let nodes = stored_nodes(&all);
        let read = |id: NodeId| nodes.get(&id).copied();
        for n in 1..=all.len() as u64 {
            let leaves = &all[..n as usize];
            let peaks: Vec<Hash> = Frontier::peak_nodes(n)
                .into_iter()
                .map(|id| read(id).unwrap())
                .collect();
            assert_eq!(fold(&peaks), subtree_root(leaves), "root {n}");
            let resumed = Frontier::from_peaks(n, peaks).unwrap();
            assert_eq!(resumed.root(), subtree_root(leaves));
            for i in 0..n {
                let ranges = inclusion_ranges(i, n).unwrap();
                // O(log n): at most one range is not a single perfect subtree.
                let log = 64 - n.leading_zeros() as usize;
                assert!(nodes_for(&ranges).len() <= 2 * log, "{i}/{n}");
                assert_eq!(
                    assemble(&ranges, read),
                    inclusion_proof(leaves, i),
                    "inclusion {i}/{n}"
                );
            }
            for m in 0..=n {
                let ranges = consistency_ranges(m, n).unwrap();
                assert_eq!(
                    assemble(&ranges, read),
                    consistency_proof(leaves, m),
                    "consistency {m}->{n}"
                );
            }
        }
        assert_eq!(inclusion_ranges(5, 5), None);
        assert_eq!(consistency_ranges(6, 5), None);
    }

    #[test]
    fn tree_heads_match_the_reference_vectors() {
        assert_eq!(
            hex::encode(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut f = Frontier::default();
        for (i, leaf) in leaves().into_iter().enumerate() {
            f.push(leaf);
            assert_eq!(hex::encode(&f.root()), ROOTS[i], "size {}", i + 1);
            assert_eq!(
                hex::encode(&subtree_root(&super::tests::leaves()[..=i])),
                ROOTS[i]
            );
        }
    }

    #[test]
    fn audit_path_matches_the_reference_vector() {
        // Leaf 0 of the 8-leaf tree.
        let path = inclusion_proof(&leaves(), 0).unwrap();
        let expect = [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ];
        assert_eq!(
            path.iter().map(|h| hex::encode(h)).collect::<Vec<_>>(),
            expect
        );
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_tampering_fails() {
        let all = leaves();
        for n in 1..=all.len() {
            let root = subtree_root(&all[..n]);
            for i in 0..n as u64 {
                let path = inclusion_proof(&all[..n], i).unwrap();
                assert!(
                    verify_inclusion(&all[i as usize], i, n as u64, &path, &root),
                    "{i}/{n}"
                );
                let other = all[(i as usize + 1) % n];
                if n > 1 {
                    assert!(
                        !verify_inclusion(&other, i, n as u64, &path, &root),
                        "wrong leaf {i}/{n}"
                    );
                }
            }
            for m in 0..=n as u64 {
                let old_root = subtree_root(&all[..m as usize]);
                let proof = consistency_proof(&all[..n], m).unwrap();
                assert!(
                    verify_consistency(m, n as u64, &old_root, &root, &proof),
                    "{m}->{n}"
                );
                if m > 0 && m < n as u64 {
                    let bad = hex::decode(ROOTS[0]).unwrap();
                    let bad: Hash = bad.try_into().unwrap();
                    assert!(
                        !verify_consistency(m, n as u64, &bad, &root, &proof) || old_root == bad
                    );
                }
            }
        }
    }

    #[test]
    fn a_run_of_leaves_proves_its_place() {
        let leaves: Vec<Hash> = (0..37u8).map(|i| leaf_hash(&[i])).collect();
        for size in [1u64, 2, 5, 8, 13, 37] {
            let root = subtree_root(&leaves[..size as usize]);
            for first in 0..size {
                for end in first + 1..=size {
                    let ranges = range_ranges(first, end, size).unwrap();
                    let proof: Vec<Hash> = ranges
                        .iter()
                        .map(|&(a, b)| subtree_root(&leaves[a as usize..b as usize]))
                        .collect();
                    let run = &leaves[first as usize..end as usize];
                    assert_eq!(root_from_range(run, first, size, &proof), Some(root));
                    let mut other = run.to_vec();
                    other[0][0] ^= 1;
                    assert_ne!(root_from_range(&other, first, size, &proof), Some(root));
                    if first > 0 {
                        assert_ne!(root_from_range(run, first - 1, size, &proof), Some(root));
                    }
                }
            }
        }
    }
}
