//! The chapter's benchmark (`ch08_udp bench`): datagrams per second with
//! one call per datagram against `sendmmsg`/`recvmmsg` batches, and the
//! reliable transfer's goodput at 0 %, 1 % and 5 % loss against
//! stop-and-wait. Every ratio comes from one run, measured side by side.
//! It lives in a module, not in the binary, so a shared harness can call it.

use std::time::Duration;

use super::batch;
use super::dgram::{loopback_any, udp_bind};
use super::relay::{Impairment, spawn_relay};
use super::transfer::{self, TransferConfig};
use crate::kit::{Error, Result, narrate};
use crate::say;

/// One row of the goodput table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goodput {
    /// Loss each way, in percent.
    pub loss_percent: u32,
    /// Stop-and-wait, bytes per second.
    pub stop_and_wait: f64,
    /// The sliding window, bytes per second.
    pub window: f64,
}

/// Move `data` once through a relay with `how`: the window sender and
/// receiver of this chapter when `window > 1`, the stop-and-wait baseline
/// when it is 1. Returns bytes per second (from the sender's first send to
/// its last ACK); an error if the file did not arrive intact.
pub fn transfer_rate(data: &[u8], how: &Impairment, window: u32) -> Result<f64> {
    let config = TransferConfig {
        window,
        ..TransferConfig::default()
    };
    let quiet = narrate::is_quiet();
    narrate::set_quiet(true);
    let pair = udp_bind("", &loopback_any()).and_then(|r| Ok((r, udp_bind("", &loopback_any())?)));
    narrate::set_quiet(quiet);
    let ((rx, rx_addr), (tx, _)) = pair?;
    let relay = spawn_relay(rx_addr, how.clone())?;
    let receiver = std::thread::spawn(move || {
        if window == 1 {
            transfer::receive_in_order(rx, config)
        } else {
            transfer::receive_file(rx, config)
        }
    });
    let sent = if window == 1 {
        transfer::send_stop_and_wait(&tx, &relay.addr, data, config)
    } else {
        transfer::send_file(&tx, &relay.addr, data, config)
    };
    let got = receiver
        .join()
        .map_err(|_| Error::msg("receiver panicked"))??;
    relay.stop()?;
    let sent = sent?;
    if got.data != data {
        return Err(Error::msg(format!(
            "window {window}: the file arrived damaged ({} of {} bytes)",
            got.data.len(),
            data.len()
        )));
    }
    Ok(data.len() as f64 / sent.elapsed.as_secs_f64().max(1e-9))
}

/// Run the benchmark and print its tables.
pub fn run(datagrams: usize, file_kib: usize) -> Result<()> {
    say!(
        "",
        "ch08_udp bench: {datagrams} datagrams of 64 bytes over loopback; a {file_kib} KiB file through the relay (2 ms each way)"
    );
    let one = batch::measure(datagrams, 64, 1)?;
    let many = batch::measure(datagrams, 64, 32)?;
    say!(
        "",
        "\n| calls | datagrams/s | system calls (poll included) | ratio |\n|---|---|---|---|"
    );
    say!(
        "",
        "| sendto + recv, one per datagram | {:.0} | {} | 1.00 |",
        one.per_second(),
        one.calls
    );
    say!(
        "",
        "| sendmmsg + recvmmsg, batches of 32 | {:.0} | {} | {:.2} |",
        many.per_second(),
        many.calls,
        many.per_second() / one.per_second()
    );
    let data: Vec<u8> = (0..file_kib * 1024).map(|i| (i % 253) as u8).collect();
    say!(
        "",
        "\n| loss each way | stop-and-wait KB/s | window of 32 KB/s | ratio |\n|---|---|---|---|"
    );
    for loss_percent in [0u32, 1, 5] {
        let how = Impairment {
            loss: f64::from(loss_percent) / 100.0,
            delay: Duration::from_millis(2),
            seed: 42 + u64::from(loss_percent),
            ..Impairment::default()
        };
        let row = Goodput {
            loss_percent,
            stop_and_wait: transfer_rate(&data, &how, 1)?,
            window: transfer_rate(&data, &how, 32)?,
        };
        say!(
            "",
            "| {} % | {:.0} | {:.0} | {:.1} |",
            row.loss_percent,
            row.stop_and_wait / 1024.0,
            row.window / 1024.0,
            row.window / row.stop_and_wait
        );
    }
    Ok(())
}
