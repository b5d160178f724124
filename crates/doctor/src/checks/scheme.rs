//! `scheme`: the official clients connect to `https://` only.

use crate::net::Net;
use crate::verdict::{Check, Problem};

pub(super) fn check(net: &Net) -> Check {
    if net.target.is_https() {
        Check::pass("scheme", "https")
    } else {
        Check::warn(
            "scheme",
            "plain http: fine for trying a local setup, but the official clients need https",
            Some(Problem::Https),
        )
    }
}
