//! The Internet checksum ([RFC 1071](https://www.rfc-editor.org/rfc/rfc1071)):
//! the 16-bit one's complement of the one's complement sum of the data taken
//! as 16-bit big-endian words. IPv4 headers, ICMP, UDP and TCP all carry one.

// ANCHOR: ch11_internet_checksum
/// The Internet checksum of `data`, as the number to store big-endian in
/// the packet's checksum field (which must be zero while you compute it).
///
/// - Add the data as 16-bit **big-endian** words (network byte order).
/// - An odd last byte is the high byte of a final word whose low byte is 0
///   (RFC 1071 §4.1: "if a byte remains, add it padded").
/// - Add with end-around carry: fold the carries above bit 15 back into
///   the low 16 bits until none is left.
/// - Return the one's complement (`!sum`).
///
/// A packet whose checksum field is right sums (with the field included) to
/// `0xffff`, so `internet_checksum(packet) == 0` checks one.
///
/// Hints: sum into a `u64`, then fold; `u16::from_be_bytes`.
pub fn internet_checksum(data: &[u8]) -> u16 {
    // BEGIN SOLUTION
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
    // END SOLUTION
}
// ANCHOR_END: ch11_internet_checksum
