//! Open connections in all and per address. A connection holds a [`Slot`] for its whole life,
//! WebSockets included (the slot travels with the socket through the upgrade), and gives it
//! back when the socket is dropped.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::peer::peer_key;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerAddress,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerAddress => "per_ip",
        }
    }
}

pub struct ConnectionCaps {
    max_total: usize,
    max_per_address: usize,
    open: AtomicUsize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionCaps {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            open: AtomicUsize::new(0),
            by_address: Mutex::new(HashMap::new()),
        })
    }

    /// The caps for an open-file limit of `nofile`: `configured` values win; otherwise the limit
    /// less a reserve (for the database, the push providers, log files), and a quarter of that
    /// per address.
    pub fn sized(
        nofile: u64,
        configured_total: usize,
        configured_per_address: usize,
    ) -> (usize, usize) {
        let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
        let reserve = (nofile / 8).clamp(64, 256);
        let total = if configured_total > 0 {
            configured_total
        } else {
            nofile.saturating_sub(reserve).max(16)
        };
        let per_address = if configured_per_address > 0 {
            configured_per_address
        } else {
            (total / 4).max(1)
        };
        (total, per_address)
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn max_per_address(&self) -> usize {
        self.max_per_address
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a slot for a connection from `ip`; `exempt` (a trusted proxy, which carries many
    /// clients) counts only toward the total.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr, exempt: bool) -> Result<Slot, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total);
        }
        let mut slot = Slot {
            caps: self.clone(),
            address: None,
        };
        if !exempt {
            let key = peer_key(ip);
            let mut map = self.by_address.lock();
            let count = map.entry(key).or_insert(0);
            if *count >= self.max_per_address {
                return Err(Refusal::PerAddress);
            }
            *count += 1;
            slot.address = Some(key);
        }
        Ok(slot)
    }
}

/// One open connection's place in the caps.
pub struct Slot {
    caps: Arc<ConnectionCaps>,
    address: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.caps.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = self.address {
            let mut map = self.caps.by_address.lock();
            if let Some(count) = map.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
    }
}

/// A socket that holds its [`Slot`] until it is dropped, wherever it goes.
pub struct Counted<S> {
    inner: S,
    _slot: Slot,
}

impl<S> Counted<S> {
    pub fn new(inner: S, slot: Slot) -> Self {
        Self { inner, _slot: slot }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_count_in_all_and_per_address_and_give_back_on_drop() {
        let caps = ConnectionCaps::new(3, 2);
        let a1 = caps.try_open(ip("192.0.2.1"), false).unwrap();
        let _a2 = caps.try_open(ip("192.0.2.1"), false).unwrap();
        assert_eq!(
            caps.try_open(ip("192.0.2.1"), false).err(),
            Some(Refusal::PerAddress)
        );
        // Same /64: the same peer.
        let _b = caps.try_open(ip("2001:db8::1"), false).unwrap();
        assert_eq!(
            caps.try_open(ip("2001:db8::2"), true).err(),
            Some(Refusal::Total)
        );
        drop(a1);
        assert_eq!(caps.open(), 2);
        let _c = caps.try_open(ip("2001:db8::2"), false).unwrap();
        let caps = ConnectionCaps::new(10, 1);
        let _v6 = caps.try_open(ip("2001:db8::1"), false).unwrap();
        assert_eq!(
            caps.try_open(ip("2001:db8::ffff"), false).err(),
            Some(Refusal::PerAddress)
        );
        assert!(caps.try_open(ip("2001:db8:0:1::1"), false).is_ok());
    }

    #[test]
    fn sized_from_the_open_file_limit() {
        assert_eq!(ConnectionCaps::sized(256, 0, 0), (192, 48));
        assert_eq!(ConnectionCaps::sized(20_000, 0, 0), (19_744, 4_936));
        assert_eq!(ConnectionCaps::sized(20_000, 100, 0), (100, 25));
        assert_eq!(ConnectionCaps::sized(1024, 0, 7), (896, 7));
    }
}
