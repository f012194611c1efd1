//! `PACKET_RX_RING` with `TPACKET_V3`: the kernel writes captured packets
//! into memory this process has mapped, in *blocks*, and hands a block over
//! by setting its status to `TP_STATUS_USER`; the program reads every packet
//! in it and gives it back (`TP_STATUS_KERNEL`). No system call per packet:
//! one `poll` when no block is ready. See
//! [`packet(7)`](https://man7.org/linux/man-pages/man7/packet.7.html) and the
//! kernel's `Documentation/networking/packet_mmap.rst`.
//!
//! ```text
//!  mmap'ed ring: block 0          block 1          ...   block N-1
//!               +----------------+----------------+     +----------------+
//!               | block header   | block header   |     |                |
//!               | status, npkts  | status: KERNEL |     |                |
//!               | pkt pkt pkt .. | (being filled) |     |                |
//!               +----------------+----------------+     +----------------+
//!  each packet: tpacket3_hdr { next_offset, snaplen, len, mac, net ... } + bytes
//! ```

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use super::capture::{self, Kind};
use crate::kit::{Error, Result, wait};

/// A packet socket with a `TPACKET_V3` receive ring mapped into memory.
pub struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    block_size: usize,
    blocks: usize,
    /// The block to look at next (the kernel fills them in order).
    next: usize,
}

fn setsockopt_packet<T>(fd: &OwnedFd, opt: libc::c_int, value: &T, name: &str) -> Result<()> {
    // SAFETY: passes a pointer to a T that lives across the call, and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "setsockopt({}, SOL_PACKET, {name})",
            fd.as_raw_fd()
        )));
    }
    Ok(())
}

impl Ring {
    /// `socket(AF_PACKET, SOCK_DGRAM, htons(protocol))` on `ifname`, then
    /// `PACKET_VERSION = TPACKET_V3`, `PACKET_RX_RING` with `blocks` blocks
    /// of `block_size` bytes (a multiple of the page size), a block retired
    /// to user space after `retire_ms` even when not full, and `mmap`.
    pub fn open(
        ifname: &str,
        protocol: u16,
        blocks: usize,
        block_size: usize,
        retire_ms: u32,
    ) -> Result<Ring> {
        let fd = capture::open(Kind::Dgram, protocol, ifname)?;
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt_packet(
            &fd,
            libc::PACKET_VERSION,
            &version,
            "PACKET_VERSION, TPACKET_V3",
        )?;
        let frame_size = 2048usize;
        let req = libc::tpacket_req3 {
            tp_block_size: block_size as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: frame_size as u32,
            tp_frame_nr: (block_size / frame_size * blocks) as u32,
            tp_retire_blk_tov: retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt_packet(
            &fd,
            libc::PACKET_RX_RING,
            &req,
            &format!("PACKET_RX_RING, {blocks} blocks of {block_size} bytes"),
        )?;
        let len = block_size * blocks;
        // SAFETY: maps the ring the kernel just allocated for this socket;
        // checked for MAP_FAILED below, unmapped in Drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(Error::last_os(format!("mmap({len} bytes of the ring)")));
        }
        Ok(Ring {
            fd,
            map: map.cast(),
            block_size,
            blocks,
            next: 0,
        })
    }

    /// The socket (for `PACKET_STATISTICS`, a filter…).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Is the next block already handed over (no wait needed)?
    pub fn ready(&self) -> bool {
        self.status(self.next) & libc::TP_STATUS_USER != 0
    }

    fn block(&self, i: usize) -> *mut libc::tpacket_block_desc {
        // SAFETY: i < blocks, so the offset stays inside the mapping.
        unsafe { self.map.add(i * self.block_size) }.cast()
    }

    fn status(&self, i: usize) -> u32 {
        // SAFETY: the block header lies inside the mapping; the kernel
        // writes it concurrently, hence the volatile read and the fence.
        let s = unsafe {
            std::ptr::read_volatile(std::ptr::addr_of!((*self.block(i)).hdr.bh1.block_status))
        };
        fence(Ordering::Acquire);
        s
    }

    /// Hand the packets of the next ready block to `each` (the bytes from
    /// the network header on, and the length on the wire), give the block
    /// back to the kernel, and return how many packets it held. Waits at
    /// most `timeout` (with `poll`) for a block; `Ok(0)` when none came.
    pub fn next_block(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(&[u8], u32),
    ) -> Result<usize> {
        if self.status(self.next) & libc::TP_STATUS_USER == 0 {
            if wait::wait_readable(&self.fd, timeout).is_err() {
                return Ok(0);
            }
            if self.status(self.next) & libc::TP_STATUS_USER == 0 {
                return Ok(0);
            }
        }
        let block = self.block(self.next);
        // SAFETY: the block is ours until we set its status back; every
        // offset below comes from the kernel and stays inside the block.
        let count = unsafe {
            let h = &(*block).hdr.bh1;
            let n = h.num_pkts as usize;
            let mut at = (block as *const u8).add(h.offset_to_first_pkt as usize);
            for _ in 0..n {
                let p = &*(at as *const libc::tpacket3_hdr);
                let data = std::slice::from_raw_parts(
                    at.add(usize::from(p.tp_net)),
                    p.tp_snaplen as usize,
                );
                each(data, p.tp_len);
                at = at.add(p.tp_next_offset as usize);
            }
            fence(Ordering::Release);
            std::ptr::write_volatile(
                std::ptr::addr_of_mut!((*block).hdr.bh1.block_status),
                libc::TP_STATUS_KERNEL,
            );
            n
        };
        self.next = (self.next + 1) % self.blocks;
        Ok(count)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, once.
        unsafe {
            libc::munmap(self.map.cast(), self.block_size * self.blocks);
        }
    }
}
