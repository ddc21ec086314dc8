//! Pure balancing logic: the consistent-hash ring for prefix affinity, least-outstanding
//! ordering, and the per-replica circuit breaker. No IO and no clock of its own, so each is
//! unit-tested directly.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Virtual nodes per replica on the ring: enough that keys spread evenly over a handful of
/// replicas, few enough that building the ring is trivial.
const VIRTUAL_NODES: usize = 64;

/// A 64-bit hash of some bytes, stable across processes and versions (unlike `DefaultHasher`),
/// so affinity survives restarts and is the same on every gateway node.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A consistent-hash ring over replica indices. Removing (skipping) one replica moves only the
/// keys that landed on it; every other key keeps its replica.
#[derive(Debug, Clone)]
pub struct HashRing {
    points: Vec<(u64, usize)>,
    n_replicas: usize,
}

impl HashRing {
    /// A ring for replicas known by these labels (their index is their position).
    pub fn new(labels: &[String]) -> Self {
        let mut points = Vec::with_capacity(labels.len() * VIRTUAL_NODES);
        for (index, label) in labels.iter().enumerate() {
            for node in 0..VIRTUAL_NODES {
                points.push((stable_hash(format!("{label}#{node}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Self {
            points,
            n_replicas: labels.len(),
        }
    }

    /// Every replica index in the order the ring visits them from `key`'s hash clockwise: the
    /// first is the key's home, the next ones where it goes when the earlier ones are skipped.
    pub fn preference(&self, key: u64) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.n_replicas);
        if self.points.is_empty() {
            return order;
        }
        let start = self.points.partition_point(|&(point, _)| point < key);
        for step in 0..self.points.len() {
            let (_, index) = self.points[(start + step) % self.points.len()];
            if !order.contains(&index) {
                order.push(index);
                if order.len() == self.n_replicas {
                    break;
                }
            }
        }
        order
    }
}

/// Orders replica indices by outstanding requests, fewest first; ties go round-robin from
/// `rotation`, so idle replicas share the load instead of the first one taking everything.
pub fn least_outstanding(outstanding: &[usize], rotation: usize) -> Vec<usize> {
    let n = outstanding.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&index| {
        (
            outstanding[index],
            (index + n - rotation % n.max(1)) % n.max(1),
        )
    });
    order
}

/// A circuit breaker: closed until `threshold` consecutive failures, then open for `cooldown`,
/// then half-open: requests go through again, a success closes it and a failure opens it again.
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    /// Whether a request may go through at `now`.
    pub fn allows(&self, now: Instant) -> bool {
        self.open_until.is_none_or(|until| now >= until)
    }

    /// Records a success: the circuit closes.
    pub fn record_success(&mut self) {
        self.consecutive_failures = 0;
        self.open_until = None;
    }

    /// Opens the circuit until `now + wait` at least, whatever the failure count: an upstream
    /// that said "retry after 20 s" is left alone that long.
    pub fn open_for(&mut self, now: Instant, wait: Duration) {
        let until = now + wait;
        self.open_until = Some(self.open_until.map_or(until, |current| current.max(until)));
    }

    /// Records a failure at `now`; opens the circuit once `threshold` failures follow each other.
    pub fn record_failure(&mut self, now: Instant, threshold: u32, cooldown: Duration) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures >= threshold.max(1) {
            self.open_until = Some(now + cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://replica-{i}/v1")).collect()
    }

    #[test]
    fn skipping_a_replica_moves_only_its_keys() {
        let ring = HashRing::new(&labels(4));
        let mut moved_elsewhere = 0;
        let mut homes = [0usize; 4];
        for key in 0..2000u64 {
            let order = ring.preference(stable_hash(&key.to_be_bytes()));
            assert_eq!(order.len(), 4);
            homes[order[0]] += 1;
            // With replica 2 dead, the key goes to the first live one in its order.
            let with_dead = order.iter().copied().find(|&i| i != 2).unwrap();
            if order[0] != 2 && with_dead != order[0] {
                moved_elsewhere += 1;
            }
        }
        assert_eq!(
            moved_elsewhere, 0,
            "keys not on the dead replica must stay put"
        );
        assert!(
            homes.iter().all(|&n| n > 200),
            "keys spread over replicas: {homes:?}"
        );
    }

    #[test]
    fn least_outstanding_prefers_idle_and_rotates_ties() {
        assert_eq!(least_outstanding(&[3, 0, 1], 0), vec![1, 2, 0]);
        assert_eq!(least_outstanding(&[0, 0, 0], 0)[0], 0);
        assert_eq!(least_outstanding(&[0, 0, 0], 1)[0], 1);
        assert_eq!(least_outstanding(&[0, 0, 0], 5)[0], 2);
        assert!(least_outstanding(&[], 3).is_empty());
    }

    #[test]
    fn breaker_opens_after_threshold_and_half_opens_after_cooldown() {
        let start = Instant::now();
        let cooldown = Duration::from_secs(30);
        let mut breaker = Breaker::default();
        breaker.record_failure(start, 2, cooldown);
        assert!(breaker.allows(start), "one failure of two keeps it closed");
        breaker.record_failure(start, 2, cooldown);
        assert!(!breaker.allows(start + Duration::from_secs(29)));
        assert!(breaker.allows(start + cooldown));
        breaker.record_success();
        assert!(breaker.allows(start));
        breaker.open_for(start, Duration::from_secs(90));
        assert!(!breaker.allows(start + Duration::from_secs(60)));
        assert!(breaker.allows(start + Duration::from_secs(90)));
    }
}
