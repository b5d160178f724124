//! Entry point shared by the cargo-fuzz target `webpush` (`fuzz/`) and the crate's tests: a Web
//! Push subscription as a device registers it, through the same checks as a registration.

use crate::providers::parse_subscription;

/// A subscription given as `endpoint \n p256dh \n auth` (the registration's `webPush` fields),
/// checked as registration checks it, with and without private endpoints allowed. What the
/// strict check accepts, the lenient one accepts too, and an accepted subscription carries a
/// 65-byte uncompressed key and a 16-byte secret.
pub fn subscription(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let endpoint = parts.next().unwrap_or_default();
    let p256dh = parts.next().unwrap_or_default();
    let auth = parts.next().unwrap_or_default();
    let lenient = parse_subscription(endpoint, p256dh, auth, true);
    let strict = parse_subscription(endpoint, p256dh, auth, false);
    if let Ok(subscription) = &strict {
        assert!(
            lenient.is_ok(),
            "a subscription allowed with the guard on was refused with it off"
        );
        assert!(
            crate::webpush::check_endpoint(&subscription.endpoint, false).is_ok(),
            "the endpoint of an accepted subscription no longer passes the guard"
        );
    }
    if let Ok(subscription) = &lenient {
        assert_eq!(subscription.p256dh.len(), 65, "p256dh is not uncompressed");
        assert_eq!(subscription.auth.len(), 16, "auth is not 16 bytes");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzz_corpus_runs_clean() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/webpush");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("the fuzz corpus") {
            let input = std::fs::read(entry.expect("entry").path()).expect("input");
            if input.first() != Some(&b'{') {
                super::subscription(&input);
                n += 1;
            }
        }
        assert!(n > 0, "{} is empty", dir.display());
    }
}
