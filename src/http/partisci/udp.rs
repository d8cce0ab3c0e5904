//! Partisci version updates over UDP: one JSON update per datagram, from the sender's address.
//! A datagram is never answered; a bad one is dropped and counted, and logged at most once per
//! interval so that a broken client cannot flood the log. The receive loop never waits on the
//! log: each update is recorded by its own task, up to a bound past which datagrams are
//! dropped and counted rather than left to overflow the socket's buffer unseen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::actors::inventory::{Inventory, VersionReport, Via};
use crate::events::{Metadata, Origin};
use crate::metrics::PARTISCI_DATAGRAMS;

/// The largest datagram read, as a Partisci server reads them; longer ones are invalid.
pub const MAX_DATAGRAM: usize = 2048;

/// Updates being recorded at once; past this, datagrams are dropped as `overloaded`.
const MAX_IN_FLIGHT: usize = 16_384;

/// At most one log line about bad datagrams per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Receives updates on `socket` until the task is aborted.
pub async fn serve(socket: UdpSocket, inventory: Inventory) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buffer = vec![0u8; MAX_DATAGRAM + 1];
    let mut warnings = Warnings::default();
    loop {
        let (length, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // Errors such as ICMP port unreachable reports concern one peer, not the socket.
                warnings.note(|| tracing::warn!(%error, "a UDP receive failed"));
                continue;
            }
        };
        let report = if length > MAX_DATAGRAM {
            Err(format!("the datagram is over {MAX_DATAGRAM} bytes"))
        } else {
            VersionReport::parse(&buffer[..length]).map_err(|e| e.to_string())
        };
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
        tokio::spawn(async move {
            let _permit = permit;
            match inventory
                .record(report, peer.ip().to_string(), Via::Udp, metadata(peer))
                .await
            {
                Ok(_) => count("accepted"),
                Err(error) => {
                    count("failed");
                    tracing::warn!(%peer, %error, "a Partisci datagram was not recorded");
                }
            }
        });
    }
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
