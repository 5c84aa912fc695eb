//! Incremental Internet checksum updates (RFC 1624: HC' = ~(~HC + ~m + m')).
//!
//! The ones' complement sum is byte-order independent, so the 16-bit words are used exactly
//! as they sit in the packet. `bpf_l3/l4_csum_replace` take an skb and are not usable in XDP.

/// Folds a 64-bit accumulated sum into 16 bits (bounded: four folds always suffice).
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Accumulates the change of a 32-bit field into `acc` (start from `!check`, or from 0 for
/// a delta to `apply` later).
#[inline(always)]
pub fn add32(acc: u64, from: u32, to: u32) -> u64 {
    acc + u64::from(!(from as u16))
        + u64::from(!((from >> 16) as u16))
        + u64::from(to as u16)
        + u64::from((to >> 16) as u16)
}

/// Accumulates the change of a 16-bit field into `acc`.
#[inline(always)]
pub fn add16(acc: u64, from: u16, to: u16) -> u64 {
    acc + u64::from(!from) + u64::from(to)
}

/// `check` updated by a folded delta (`fold` of `add32`/`add16` terms started from 0).
/// The same result as accumulating the terms onto `!check`: ones' complement addition is
/// associative, and two 16-bit values need one fold.
#[inline(always)]
pub fn apply(check: u16, delta: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(delta);
    !((sum & 0xffff) + (sum >> 16)) as u16
}
