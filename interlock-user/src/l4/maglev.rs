//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size in
//! which every backend owns a share of slots proportional to its weight, and a change of the
//! backend set moves few slots. Pure: the table is computed here and written by `maps`.
//!
//! Written by hand on purpose: the crates on crates.io either lack weights or hash with
//! process-random keys; the table must be the same for the same backends in every run.

/// A backend as the table sees it: a stable identity to hash, the id written into the
/// table, and its relative weight (0: no new flows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevBackend {
    pub key: String,
    pub id: u32,
    pub weight: u32,
}

/// FNV-1a, 64 bit, with a seed folded in first: stable across runs and builds.
fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV mixes the last bytes poorly into the high bits: finish with a murmur3 avalanche.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Builds the table of `size` (a prime) slots holding backend ids; `empty` fills it when no
/// backend has a positive weight. Backends with weight w get about `size * w / sum(w)` slots.
pub fn build(backends: &[MaglevBackend], size: u32, empty: u32) -> Vec<u32> {
    let m = size as u64;
    let mut live: Vec<&MaglevBackend> = backends.iter().filter(|b| b.weight > 0).collect();
    if live.is_empty() || size < 2 {
        return vec![empty; size as usize];
    }
    // Sorted by identity: the table depends on the set, not on the order it came in.
    live.sort_by(|a, b| a.key.cmp(&b.key));
    let perms: Vec<(u64, u64)> = live
        .iter()
        .map(|b| {
            let offset = fnv1a(0x6d61_676c, b.key.as_bytes()) % m;
            let skip = fnv1a(0x6576_3031, b.key.as_bytes()) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let max_weight = live.iter().map(|b| b.weight).max().unwrap_or(1) as u64;
    let mut next = vec![0u64; live.len()];
    // Weighted turns: each round a backend earns weight/max_weight of a turn.
    let mut credit = vec![0u64; live.len()];
    let mut table = vec![empty; size as usize];
    let mut filled = 0u64;
    while filled < m {
        for (i, b) in live.iter().enumerate() {
            credit[i] += b.weight as u64;
            if credit[i] < max_weight {
                continue;
            }
            credit[i] -= max_weight;
            let (offset, skip) = perms[i];
            // The permutation visits every slot (size is prime), so this ends.
            loop {
                let slot = ((offset + next[i] * skip) % m) as usize;
                next[i] += 1;
                if table[slot] == empty {
                    table[slot] = b.id;
                    filled += 1;
                    break;
                }
            }
            if filled == m {
                break;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 65537;
    const EMPTY: u32 = u32::MAX;

    fn backends(n: u32) -> Vec<MaglevBackend> {
        (0..n)
            .map(|i| MaglevBackend {
                key: format!("10.0.{}.{}:8080", i / 250, i % 250 + 1),
                id: i,
                weight: 1,
            })
            .collect()
    }

    fn counts(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for id in table {
            c[*id as usize] += 1;
        }
        c
    }

    #[test]
    fn load_is_within_one_percent_of_even_for_10_to_100_backends() {
        for n in [10u32, 25, 50, 100] {
            let table = build(&backends(n), M, EMPTY);
            assert!(table.iter().all(|id| *id < n), "every slot is filled");
            let even = M as f64 / n as f64;
            for (id, c) in counts(&table, n as usize).into_iter().enumerate() {
                let dev = (c as f64 - even).abs() / even;
                assert!(dev <= 0.01, "n={n} backend {id}: {c} slots, {dev:.4} off even");
            }
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        for n in [10u32, 50, 100] {
            let all = backends(n);
            let before = build(&all, M, EMPTY);
            let after = build(&all[1..], M, EMPTY);
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let owned_by_removed = before.iter().filter(|id| **id == 0).count();
            // Slots of the removed backend must move; Maglev moves some others too (the paper
            // reports up to about twice the minimum for small tables relative to N).
            assert!(moved >= owned_by_removed);
            let frac = moved as f64 / M as f64;
            let ideal = 1.0 / n as f64;
            assert!(frac <= ideal * 2.0, "n={n}: {frac:.4} of slots moved, ideal {ideal:.4}");
        }
    }

    #[test]
    fn weights_give_proportional_shares() {
        let mut b = backends(3);
        b[0].weight = 2;
        let table = build(&b, M, EMPTY);
        let c = counts(&table, 3);
        let share = c[0] as f64 / M as f64;
        assert!((share - 0.5).abs() < 0.01, "weight 2 of 4 gets {share:.4}");
    }

    #[test]
    fn order_does_not_matter_and_empty_sets_give_empty_tables() {
        let b = backends(5);
        let mut rev = b.clone();
        rev.reverse();
        assert_eq!(build(&b, M, EMPTY), build(&rev, M, EMPTY));
        assert!(build(&[], M, EMPTY).iter().all(|id| *id == EMPTY));
        let mut zero = backends(2);
        zero[0].weight = 0;
        assert!(build(&zero, M, EMPTY).iter().all(|id| *id == 1));
    }
}
