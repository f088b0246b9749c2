//! A TCP proxy on 127.0.0.1 that can delay and black-hole what it forwards.
//!
//! Job: stand between two processes (an app and its SLIM node) so a test can inject the
//! network faults a TCP link can have: latency (every chunk is held for a delay, in
//! order, without limiting throughput) and a black hole (nothing is forwarded in either
//! direction while stalled, but connections stay open, as with a dead route or a frozen
//! middlebox). TCP never loses bytes, so loss shows up to the layers above exactly as
//! this does: delay, then silence. No root, no namespaces, no nftables.
//! Must not: be used outside tests, or bind anything but loopback.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How often blocked threads look at the proxy's switches.
const POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Switches {
    delay_us: AtomicU64,
    stalled: AtomicBool,
    closed: AtomicBool,
}

/// A running proxy; stops accepting and closes its connections when dropped.
pub struct Proxy {
    addr: SocketAddr,
    switches: Arc<Switches>,
}

impl Proxy {
    /// Forwards every connection made to [`Proxy::addr`] to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let switches = Arc::new(Switches::default());
        let s = switches.clone();
        thread::spawn(move || {
            while !s.closed.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        for (from, to) in [(&client, &server), (&server, &client)] {
                            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                                continue;
                            };
                            pump(from, to, s.clone());
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
                    Err(_) => thread::sleep(POLL),
                }
            }
        });
        Proxy { addr, switches }
    }

    /// Where to connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An `http://127.0.0.1:<port>` URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds every chunk for `delay` (each direction) from now on.
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.switches.delay_us.store(us, Ordering::SeqCst);
    }

    /// Forwards nothing, either way, until [`Proxy::resume`]; connections stay open.
    pub fn stall(&self) {
        self.switches.stalled.store(true, Ordering::SeqCst);
    }

    /// Forwards again, starting with what was held.
    pub fn resume(&self) {
        self.switches.stalled.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.switches.closed.store(true, Ordering::SeqCst);
    }
}

/// One direction: a reader thread stamps each chunk with when it is due, a writer
/// thread writes it then (or once the stall ends), so the delay adds latency without
/// limiting throughput and order is kept.
fn pump(mut from: TcpStream, mut to: TcpStream, s: Arc<Switches>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader_switches = s.clone();
    thread::spawn(move || {
        let _ = from.set_read_timeout(Some(POLL * 10));
        let mut buf = vec![0u8; 16 * 1024];
        while !reader_switches.closed.load(Ordering::SeqCst) {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let delay =
                        Duration::from_micros(reader_switches.delay_us.load(Ordering::SeqCst));
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        // Dropping `tx` lets the writer finish what is queued, then close.
    });
    thread::spawn(move || {
        for (due, chunk) in rx {
            loop {
                if s.closed.load(Ordering::SeqCst) {
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
                let now = Instant::now();
                if s.stalled.load(Ordering::SeqCst) {
                    thread::sleep(POLL);
                } else if now < due {
                    thread::sleep((due - now).min(POLL));
                } else {
                    break;
                }
            }
            if to.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                thread::spawn(move || {
                    let mut r = c.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut c);
                });
            }
        });
        addr
    }

    fn read_exact_within(c: &mut TcpStream, n: usize) -> Vec<u8> {
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = vec![0u8; n];
        c.read_exact(&mut buf).expect("bytes arrive");
        buf
    }

    #[test]
    fn the_proxy_forwards_in_order_with_a_delay_and_holds_everything_while_stalled() {
        let proxy = Proxy::start(echo_server());
        proxy.set_delay(Duration::from_millis(5));
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        c.write_all(&data).unwrap();
        assert_eq!(read_exact_within(&mut c, data.len()), data);

        proxy.stall();
        c.write_all(b"held").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut one = [0u8; 1];
        assert!(c.read(&mut one).is_err(), "nothing passes a stalled proxy");
        proxy.resume();
        assert_eq!(read_exact_within(&mut c, 4), b"held");
    }
}
