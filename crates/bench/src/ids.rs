//! Who each connection is: its user, its organization, its token and its source address.
//! Everything is derived from the connection's global index, so workers agree without talking.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use pushwarden_auth::Minter;
use serde_json::json;

use crate::cli::Common;

/// User `i`: a GUID in the form the server normalizes to (lower case, hyphenated).
pub fn user_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

/// Organization `j`.
pub fn org_id(j: usize) -> String {
    format!("00000000-0000-4000-9000-{j:012x}")
}

/// Source address number `k` (cycling over `--source-ips`), or `None` to let the kernel choose.
pub fn source_ip(common: &Common, k: usize) -> Option<IpAddr> {
    if common.source_ips == 0 {
        return None;
    }
    let base = u32::from(common.first_source_ip);
    let offset = (k % common.source_ips as usize) as u32;
    Some(IpAddr::V4(Ipv4Addr::from(base.wrapping_add(offset))))
}

/// How tokens are signed, and the issuer they name (Vaultwarden requires `<DOMAIN>|login`).
pub struct Signer {
    pub minter: Minter,
    pub issuer: Option<String>,
}

/// The signer of `--rsa-private-key` or `--secret` (and `--issuer`); `None` without either.
pub fn minter(common: &Common) -> Result<Option<Signer>> {
    let minter = if let Some(path) = &common.rsa_private_key {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Minter::Rs256 {
            private_key_pem: pem,
            kid: None,
        }
    } else if let Some(secret) = &common.secret {
        Minter::Hs256(secret.as_bytes().to_vec())
    } else {
        return Ok(None);
    };
    Ok(Some(Signer {
        minter,
        issuer: common.issuer.clone(),
    }))
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A Bitwarden user access token of `user` in `org`, valid for a few hours.
pub fn mint(signer: &Signer, user: usize, org: usize) -> Result<String> {
    let now = unix_seconds();
    let mut claims = json!({
        "sub": user_id(user),
        "amr": ["Application"],
        "scope": ["api"],
        "devicetype": "ChromeBrowser",
        "orguser": [org_id(org)],
        "nbf": now - 60,
        "exp": now + 4 * 3600,
    });
    if let Some(issuer) = &signer.issuer {
        claims["iss"] = json!(issuer);
    }
    signer
        .minter
        .mint(&claims)
        .map_err(|e| anyhow::anyhow!("minting: {e}"))
}

/// Mints one token per distinct `(user, org)` pair of `pairs`, on `threads` OS threads
/// (RS256 signing costs about a millisecond). Returns the tokens in the order of `pairs`
/// and the time minting took.
pub fn mint_all(
    minter: Option<&Signer>,
    pairs: &[(usize, usize)],
    threads: usize,
) -> Result<(Vec<Option<String>>, Duration)> {
    let started = Instant::now();
    let Some(minter) = minter else {
        return Ok((vec![None; pairs.len()], started.elapsed()));
    };
    let mut distinct: Vec<(usize, usize)> = pairs.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let threads = threads.clamp(1, 16);
    let chunk = distinct.len().div_ceil(threads).max(1);
    let minted: Vec<Result<Vec<String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = distinct
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&(user, org)| mint(minter, user, org))
                        .collect::<Result<Vec<String>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("minting panicked")))
            })
            .collect()
    });
    let mut by_pair = HashMap::with_capacity(distinct.len());
    let mut tokens_in_order = distinct.iter();
    for part in minted {
        for token in part? {
            if let Some(pair) = tokens_in_order.next() {
                by_pair.insert(*pair, token);
            }
        }
    }
    let tokens = pairs.iter().map(|p| by_pair.get(p).cloned()).collect();
    Ok((tokens, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_normalized_guids() {
        assert_eq!(user_id(255), "00000000-0000-4000-8000-0000000000ff");
        assert_eq!(org_id(0), "00000000-0000-4000-9000-000000000000");
    }

    #[test]
    fn tokens_follow_pairs() {
        let minter = Signer {
            minter: Minter::Hs256(b"s".to_vec()),
            issuer: None,
        };
        let pairs = [(0, 0), (1, 0), (0, 0), (2, 1)];
        let (tokens, _) = mint_all(Some(&minter), &pairs, 2).unwrap();
        assert_eq!(tokens.len(), 4);
        assert_eq!(tokens[0], tokens[2]);
        assert_ne!(tokens[0], tokens[1]);
        assert!(tokens.iter().all(Option::is_some));
    }
}
