//! Partisci version updates over UDP: one JSON update per datagram, from the sender's address.
//! A datagram is never answered; a bad one is dropped and counted, and logged at most once per
//! interval so that a broken client cannot flood the log.
//!
//! Datagrams are received on a thread of their own, so that a busy server still empties the
//! socket promptly; each valid update is then recorded by a task on the actor system, up to a
//! bound past which datagrams are dropped and counted as `overloaded`. What the kernel itself
//! drops when the socket's buffer overflows is read from `/proc/net/udp` and exported too, so
//! that every datagram sent is either accepted or counted.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::ArbiterHandle;
use tokio::sync::Semaphore;

use crate::domain::inventory::{Inventory, VersionReport, Via};
use crate::events::{Metadata, Origin};
use crate::metrics::{PARTISCI_DATAGRAMS, PARTISCI_KERNEL_DROPS};

/// The largest datagram read, as a Partisci server reads them; longer ones are invalid.
pub const MAX_DATAGRAM: usize = 2048;

/// Updates being recorded at once; past this, datagrams are dropped as `overloaded`.
const MAX_IN_FLIGHT: usize = 16_384;

/// The receive buffer asked of the kernel, so that bursts wait in the socket rather than
/// being dropped while the receiver is descheduled.
const RECEIVE_BUFFER: usize = 8 << 20;

/// How often the receiver looks at its stop flag and the kernel's drop counter.
const TICK: Duration = Duration::from_millis(200);

/// At most one log line about bad datagrams per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The receiving thread; stopped by [`Receiver::stop`] or when dropped.
pub struct Receiver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Receives updates on `socket` on a new thread, recording them on `arbiter`.
    pub fn start(
        socket: UdpSocket,
        inventory: Inventory,
        arbiter: ArbiterHandle,
    ) -> std::io::Result<Receiver> {
        socket.set_read_timeout(Some(TICK))?;
        enlarge_receive_buffer(&socket);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("partisci-udp".into())
            .spawn({
                let stop = stop.clone();
                move || receive(socket, inventory, arbiter, stop)
            })?;
        Ok(Receiver {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops receiving; updates already handed to the actors still complete.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn receive(socket: UdpSocket, inventory: Inventory, arbiter: ArbiterHandle, stop: Arc<AtomicBool>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buffer = vec![0u8; MAX_DATAGRAM + 1];
    let mut warnings = Warnings::default();
    let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut drops = KernelDrops::default();
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_tick.elapsed() >= TICK {
            drops.update(port);
            last_tick = Instant::now();
        }
        let (length, peer) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(error) => {
                // Errors such as ICMP port unreachable reports concern one peer, not the socket.
                warnings.note(|| tracing::warn!(%error, "a UDP receive failed"));
                continue;
            }
        };
        let report = parse_datagram(&buffer[..length]);
        let report = match report {
            Ok(report) => report,
            Err(reason) => {
                count("invalid");
                warnings.note(|| tracing::warn!(%peer, reason, "dropped a bad Partisci datagram"));
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            count("overloaded");
            warnings.note(|| tracing::warn!("dropped Partisci datagrams: too many in flight"));
            continue;
        };
        let inventory = inventory.clone();
        let spawned = arbiter.spawn(async move {
            let _permit = permit;
            match inventory
                .record(report, Some(peer.ip()), Via::Udp, metadata(peer))
                .await
            {
                Ok(_) => count("accepted"),
                Err(error) => {
                    count("failed");
                    tracing::warn!(%peer, %error, "a Partisci datagram was not recorded");
                }
            }
        });
        if !spawned {
            // The actor system is stopping.
            count("failed");
            return;
        }
    }
}

/// Reads one datagram as received (the receive buffer holds one byte more than
/// [`MAX_DATAGRAM`], so a longer one shows as too long). Public for the fuzz targets.
#[doc(hidden)]
pub fn parse_datagram(datagram: &[u8]) -> Result<VersionReport, String> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(format!("the datagram is over {MAX_DATAGRAM} bytes"));
    }
    VersionReport::parse(datagram).map_err(|e| e.to_string())
}

fn count(outcome: &'static str) {
    metrics::counter!(PARTISCI_DATAGRAMS, "outcome" => outcome).increment(1);
}

fn metadata(peer: SocketAddr) -> Metadata {
    Metadata {
        correlation_id: None,
        causation_id: None,
        origin: Origin::Udp {
            addr: peer.to_string(),
        },
    }
}

/// Asks for a large receive buffer: past the system's `rmem_max` when privileged, else up to
/// it. A refusal only leaves the default.
fn enlarge_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size = RECEIVE_BUFFER as libc::c_int;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket, an int option and its size.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set == 0 {
            return;
        }
    }
}

/// The kernel's count of datagrams dropped on this socket, exported as a counter.
#[derive(Default)]
struct KernelDrops {
    reported: u64,
}

impl KernelDrops {
    fn update(&mut self, port: u16) {
        let Some(drops) = kernel_drops(port) else {
            return;
        };
        if drops > self.reported {
            metrics::counter!(PARTISCI_KERNEL_DROPS).increment(drops - self.reported);
            self.reported = drops;
        }
    }
}

/// The `drops` column of this process's UDP socket bound to `port`, from `/proc/net/udp` and
/// `/proc/net/udp6` (Linux only; elsewhere `None`).
fn kernel_drops(port: u16) -> Option<u64> {
    let local = format!(":{port:04X}");
    let mut total = None;
    for table in ["/proc/self/net/udp", "/proc/self/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields
                .get(1)
                .is_some_and(|address| address.ends_with(&local))
            {
                let drops: u64 = fields.last()?.parse().ok()?;
                *total.get_or_insert(0) += drops;
            }
        }
    }
    total
}

/// Lets one warning through per interval and counts the rest.
#[derive(Default)]
struct Warnings {
    last: Option<Instant>,
    suppressed: u64,
}

impl Warnings {
    fn note(&mut self, warn: impl FnOnce()) {
        let due = self.last.is_none_or(|last| last.elapsed() >= WARN_EVERY);
        if !due {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            tracing::warn!(
                suppressed = self.suppressed,
                "more UDP problems were not logged"
            );
        }
        warn();
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}
