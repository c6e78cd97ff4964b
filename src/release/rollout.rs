//! Server-side staged rollouts for the JSON protocol (SPEC §2.3): the same client id and
//! version give the same answer on every node, with no shared state.

/// True when the client is inside a rollout of `percentage` percent of `version`.
///
/// `bucket = BLAKE3(client_id, 0x00, version)[..8] as u64 mod 100`; the client is in when
/// `bucket < percentage`. Hashing the version too means a different 10% get each release
/// first, instead of the same unlucky users every time.
pub fn in_rollout(client_id: &str, version: &str, percentage: f64) -> bool {
    if percentage >= 100.0 {
        return true;
    }
    if percentage.is_nan() || percentage <= 0.0 {
        return false;
    }
    (bucket(client_id, version) as f64) < percentage
}

/// The client's bucket, 0 to 99.
pub fn bucket(client_id: &str, version: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(client_id.as_bytes());
    hasher.update(&[0]);
    hasher.update(version.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first) % 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_proportional() {
        assert_eq!(bucket("client-1", "1.2.0"), bucket("client-1", "1.2.0"));
        let inside = (0..10_000)
            .filter(|i| in_rollout(&format!("client-{i}"), "1.2.0", 25.0))
            .count();
        assert!(
            (2_200..2_800).contains(&inside),
            "{inside} of 10000 in a 25% rollout"
        );
        assert!(in_rollout("anyone", "1.0.0", 100.0));
        assert!(!in_rollout("anyone", "1.0.0", 0.0));
        assert!(!in_rollout("anyone", "1.0.0", f64::NAN));
        let moved = (0..1000)
            .filter(|i| {
                let id = format!("client-{i}");
                in_rollout(&id, "1.2.0", 10.0) != in_rollout(&id, "1.3.0", 10.0)
            })
            .count();
        assert!(
            moved > 50,
            "different releases pick different clients first"
        );
    }

    #[test]
    fn growing_the_percentage_never_drops_a_client() {
        for i in 0..500 {
            let id = format!("c{i}");
            if in_rollout(&id, "2.0.0", 10.0) {
                assert!(in_rollout(&id, "2.0.0", 50.0));
            }
        }
    }
}
