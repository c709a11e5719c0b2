//! Defences of the listener against slow or greedy clients: a connection
//! whose response makes no progress for the write timeout is ended
//! ([`WriteTimeout`]), and one address (an IPv6 /64) holds at most so many
//! connections at once ([`PerAddress`]).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::sync::address_group;

/// A stream whose writes fail once they have made no progress (the peer
/// read nothing, so the kernel took nothing) for `limit`: hyper then ends
/// the connection and its slot is free again. A client that reads slowly
/// but steadily is not affected; the timer restarts with every byte taken.
pub struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    /// Running while a write waits; `None` when the last one progressed.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After the inner stream answered `Pending`: an error once the wait
    /// has lasted `limit`.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for the write timeout",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => self.check_stall(cx).map(Err),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, poll)
    }
}

/// Open connections per client address (IPv6 grouped by
/// `IPV6_PREFIX_LENGTH`, /64 by default, since one client commonly holds a
/// whole /64). Addresses in `exempt` (trusted
/// proxies, which carry many clients) are not counted.
#[derive(Clone)]
pub struct PerAddress {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    cap: usize,
    exempt: Arc<Vec<ipnet::IpNet>>,
    ipv6_prefix: u8,
}

/// One counted connection; dropping it frees its place.
pub struct Counted {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    group: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.group) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.group);
            }
        }
    }
}

/// A connection [`PerAddress::admit`] let in: counted until dropped, or
/// `None` for a trusted proxy, which is not counted.
pub type Admitted = Option<Counted>;

impl PerAddress {
    pub fn new(cap: usize, exempt: Vec<ipnet::IpNet>, ipv6_prefix: u8) -> Self {
        Self {
            open: Arc::new(Mutex::new(HashMap::new())),
            cap: cap.max(1),
            exempt: Arc::new(exempt),
            ipv6_prefix,
        }
    }

    /// A place for one more connection from `ip`, or `None` when its
    /// address already holds the cap.
    pub fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        if self.exempt.iter().any(|net| net.contains(&ip)) {
            return Some(None);
        }
        let group = address_group(ip, self.ipv6_prefix);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(group).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Some(Counted {
            open: Arc::clone(&self.open),
            group,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_holds_at_most_the_cap_and_another_still_gets_in() {
        let caps = PerAddress::new(2, vec!["10.0.0.0/8".parse().unwrap()], 64);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none(), "over the cap");
        assert!(caps.admit("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(
            caps.admit(a).is_some(),
            "a closed connection frees its place"
        );
        for _ in 0..5 {
            assert!(matches!(
                caps.admit("10.1.2.3".parse().unwrap()),
                Some(None)
            ));
        }
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address() {
        let caps = PerAddress::new(1, Vec::new(), 64);
        let _held = caps.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(caps.admit("2001:db8::ffff:1".parse().unwrap()).is_none());
        assert!(caps.admit("2001:db8:0:1::1".parse().unwrap()).is_some());
    }
}
