//! Socket addresses: parsing `IP:PORT` text into the `sockaddr` forms the
//! kernel takes, and reading the port back. nix's address types already
//! print themselves the usual way (`127.0.0.1:80`, `[::1]:80`, a Unix path),
//! so formatting is `to_string()`; chapter 1 builds both by hand.

use std::net::SocketAddr;

use nix::sys::socket::{AddressFamily, SockaddrIn, SockaddrLike, SockaddrStorage};

use super::error::{Error, Result};

/// Parse `a.b.c.d:port` or `[v6]:port` into a `sockaddr_in` or
/// `sockaddr_in6`, held in a `SockaddrStorage`.
pub fn parse(text: &str) -> Result<SockaddrStorage> {
    let addr: SocketAddr = text
        .trim()
        .parse()
        .map_err(|_| Error::msg(format!("not an IP:PORT address: {text:?}")))?;
    Ok(SockaddrStorage::from(addr))
}

/// Parse an IPv4 `a.b.c.d:port` only.
pub fn parse_v4(text: &str) -> Result<SockaddrIn> {
    match parse(text)?.as_sockaddr_in() {
        Some(sin) => Ok(*sin),
        None => Err(Error::msg(format!(
            "not an IPv4 a.b.c.d:port address: {text:?}"
        ))),
    }
}

/// The port of an IPv4 or IPv6 address, in host byte order.
pub fn port(addr: &SockaddrStorage) -> Option<u16> {
    match addr.family() {
        Some(AddressFamily::Inet) => addr.as_sockaddr_in().map(|a| a.port()),
        Some(AddressFamily::Inet6) => addr.as_sockaddr_in6().map(|a| a.port()),
        _ => None,
    }
}

/// The address as a `std::net::SocketAddr`, for IPv4 and IPv6.
pub fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    addr.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() -> Result<()> {
        for text in ["127.0.0.1:80", "[::1]:8080", "10.1.2.3:0"] {
            assert_eq!(parse(text)?.to_string(), text);
        }
        assert_eq!(port(&parse("127.0.0.1:7007")?), Some(7007));
        assert!(parse("localhost:80").is_err());
        assert!(parse_v4("[::1]:80").is_err());
        Ok(())
    }
}
