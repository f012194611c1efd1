//! The narrated tour of chapter 1 (`cargo run`) and its `resolve`
//! subcommand. Nothing here calls the assignments, so the tour runs the
//! same in the student edition.
//!
//! Every line that looks like a call is one the program really made, printed
//! the way `strace -e trace=network` prints it; lines starting with `#`
//! explain.

use std::ffi::{CStr, CString, c_int};
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrLike, SockaddrStorage, sockopt,
};

use super::{
    family_name, gai_error, gai_error_name, getsockopt_int, inet_ntop_v4, inet_ntop_v6,
    inet_pton_v4, inet_pton_v6, protocol_name, socktype_name,
};
use crate::kit::error::errno_text;
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result, net};
use crate::say;

/// What `--help` prints.
pub const USAGE: &str = "\
ch01_sockets: what a socket is (chapter 1 of sockbook, chapters/01-sockets.md)

With no arguments, a narrated tour on this machine (nothing leaves it):
  1. socket(): TCP, UDP, IPv6 and Unix sockets are file descriptors
  2. getsockopt(SO_DOMAIN, SO_TYPE, SO_PROTOCOL): ask the kernel what each is
  3. a struct sockaddr_in byte by byte: byte order, htons, inet_pton/inet_ntop
  4. getaddrinfo(\"localhost\") and freeaddrinfo
  5. connect() and bind() failing on purpose: errno and its name

Usage:
  cargo run --bin ch01_sockets                       the tour
  cargo run --bin ch01_sockets -- resolve HOST [PORT]
        every address getaddrinfo(HOST, PORT) lists, with socket type and
        protocol. This asks your system's resolver: a name that is not in
        /etc/hosts is looked up in DNS, as any program would.
  cargo run --bin ch01_sockets -- dualstack          part 7 alone: IPv6 and dual
        stack ([::] with IPV6_V6ONLY off and on, AI_PASSIVE, getnameinfo),
        in a private network namespace where the kernel allows one
  cargo run --bin ch01_sockets -- --help             this text

Assignments: cargo test --test ch01_sockets
";

/// Run the tour: parts 1 to 5, then close everything.
pub fn tour() -> Result<()> {
    say!(
        "",
        "Chapter 1: what a socket is. (`cargo run -- --help` for more)"
    );
    let sockets = create_sockets()?;
    ask_the_kernel(&sockets)?;
    let tcp = &sockets[0].fd;
    let bound = addresses(tcp)?;
    names()?;
    errors(bound, tcp.as_raw_fd())?;
    heading("6. close()");
    for s in sockets {
        let raw = s.fd.as_raw_fd();
        nix::unistd::close(s.fd).call(format!("close({raw})"))?;
        say!("", "close({raw}) = 0");
    }
    note("an OwnedFd closes itself when dropped; here we closed them one by one to see it.");
    let private = super::dualstack::enter_namespace_if_allowed();
    super::dualstack::demo(private)?;
    note("next: chapter 2 connects two sockets (cargo run --bin ch02_tcp).");
    Ok(())
}

/// The `resolve HOST [PORT]` subcommand: every entry getaddrinfo lists.
pub fn resolve_command(host: &str, port: Option<u16>) -> Result<()> {
    let service = port.map(|p| p.to_string());
    let flags = libc::AI_CANONNAME
        | if port.is_some() {
            libc::AI_NUMERICSERV
        } else {
            0
        };
    let entries = getaddrinfo_all(host, service.as_deref(), flags)?;
    if service.is_none() {
        note("no PORT given: the service is NULL and every port reads 0");
    }
    note(format!(
        "{} entries; one per (address, socket type) because ai_socktype = 0",
        entries.len()
    ));
    Ok(())
}

/// One socket of the tour and what it is meant to be.
struct Socket {
    what: &'static str,
    fd: OwnedFd,
}

/// Part 1: four sockets, three ways of calling socket(2).
fn create_sockets() -> Result<Vec<Socket>> {
    heading("1. socket(domain, type, protocol) returns a file descriptor");
    let mut sockets = Vec::new();

    note("TCP over IPv4, with nix (protocol 0 = \"the usual one for this domain and type\"):");
    let tcp = net::tcp_socket("", AddressFamily::Inet)?;
    sockets.push(Socket {
        what: "TCP over IPv4",
        fd: tcp,
    });

    note("UDP over IPv4, with the raw libc call that nix wraps:");
    // SAFETY: socket(2) takes three integers and returns a new fd or -1.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw == -1 {
        return Err(Error::last_os("socket(AF_INET, SOCK_DGRAM, 0)"));
    }
    // SAFETY: `raw` is the fd socket() just returned; nothing else owns it,
    // so the OwnedFd is its only owner and closes it once.
    let udp = unsafe { OwnedFd::from_raw_fd(raw) };
    say!("", "socket(AF_INET, SOCK_DGRAM, 0) = {raw}");
    sockets.push(Socket {
        what: "UDP over IPv4",
        fd: udp,
    });

    note("TCP over IPv6: same type, another domain:");
    match net::tcp_socket("", AddressFamily::Inet6) {
        Ok(fd) => sockets.push(Socket {
            what: "TCP over IPv6",
            fd,
        }),
        Err(e) if e.errno() == Some(Errno::EAFNOSUPPORT) => {
            note(format!(
                "IPv6 is turned off on this machine ({e}); skipping it"
            ));
        }
        Err(e) => return Err(e),
    }

    note("a Unix-domain stream: same machine only, addressed by a path, not IP:PORT:");
    let unix = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .call("socket(AF_UNIX, SOCK_STREAM, 0)")?;
    say!("", "socket(AF_UNIX, SOCK_STREAM, 0) = {}", unix.as_raw_fd());
    sockets.push(Socket {
        what: "Unix stream",
        fd: unix,
    });

    let first = sockets[0].fd.as_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{first}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("(unreadable: {e})"));
    note(format!(
        "each is a small integer in this process's fd table, like an open file: \
         /proc/self/fd/{first} -> {link}"
    ));
    Ok(sockets)
}

/// Part 2: read each socket's domain, type and protocol back.
fn ask_the_kernel(sockets: &[Socket]) -> Result<()> {
    heading("2. getsockopt(): ask the kernel what each socket is");
    let mut rows = Vec::new();
    for (i, s) in sockets.iter().enumerate() {
        let fd = s.fd.as_raw_fd();
        // nix has no SO_DOMAIN or SO_PROTOCOL: read them with raw libc.
        let domain = getsockopt_int(&s.fd, libc::SOL_SOCKET, libc::SO_DOMAIN, "SO_DOMAIN")?;
        // nix does have SO_TYPE, as sockopt::SockType.
        let socktype = socket::getsockopt(&s.fd, sockopt::SockType)
            .call(format!("getsockopt({fd}, SOL_SOCKET, SO_TYPE)"))?
            as c_int;
        let protocol = getsockopt_int(&s.fd, libc::SOL_SOCKET, libc::SO_PROTOCOL, "SO_PROTOCOL")?;
        if i == 0 {
            let size = mem::size_of::<c_int>();
            say!(
                "",
                "getsockopt({fd}, SOL_SOCKET, SO_DOMAIN, [{domain}], [{size}]) = 0"
            );
            say!(
                "",
                "getsockopt({fd}, SOL_SOCKET, SO_TYPE, [{socktype}], [{size}]) = 0"
            );
            say!(
                "",
                "getsockopt({fd}, SOL_SOCKET, SO_PROTOCOL, [{protocol}], [{size}]) = 0"
            );
            note("the same three questions for every socket:");
        }
        rows.push((fd, s.what, domain, socktype, protocol));
    }
    say!(
        "",
        "  {:>3}  {:<14} {:<14} {:<16} {}",
        "fd",
        "made as",
        "SO_DOMAIN",
        "SO_TYPE",
        "SO_PROTOCOL"
    );
    for (fd, what, domain, socktype, protocol) in rows {
        say!(
            "",
            "  {fd:>3}  {what:<14} {:<14} {:<16} {}",
            format!("{domain} {}", family_name(domain)),
            format!("{socktype} {}", socktype_name(socktype)),
            format!("{protocol} {}", protocol_name(domain, protocol)),
        );
    }
    note("we passed protocol 0 each time; the kernel chose TCP for a stream and UDP for");
    note("datagrams in the IP domains. A Unix socket has no protocol number: 0.");
    Ok(())
}

/// The 16 bytes of a `struct sockaddr_in`, as they lie in memory.
fn sockaddr_in_bytes(sin: &libc::sockaddr_in) -> [u8; 16] {
    const _: () = assert!(mem::size_of::<libc::sockaddr_in>() == 16);
    // SAFETY: sockaddr_in is 16 bytes (checked above) of integer fields with
    // no padding between them (2 + 2 + 4 + 8), all initialised, so reading
    // it as a [u8; 16] reads initialised bytes only.
    unsafe { mem::transmute_copy(sin) }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Part 3: a sockaddr_in byte by byte, inet_pton/inet_ntop, and the kernel
/// writing one back. Binds `tcp` to 127.0.0.1:0 and returns that address.
fn addresses(tcp: &OwnedFd) -> Result<SockaddrIn> {
    heading("3. Addresses: a struct sockaddr_in, byte by byte");
    let port: u16 = 8080;
    let nix_sin = SockaddrIn::new(127, 0, 0, 1, port);
    note(format!(
        "nix's SockaddrIn::new(127, 0, 0, 1, {port}) is a struct sockaddr_in underneath."
    ));
    note("Its real bytes (a struct in memory: nothing is sent):");
    let sin: &libc::sockaddr_in = nix_sin.as_ref();
    let bytes = sockaddr_in_bytes(sin);
    let family_at = mem::offset_of!(libc::sockaddr_in, sin_family);
    let port_at = mem::offset_of!(libc::sockaddr_in, sin_port);
    let addr_at = mem::offset_of!(libc::sockaddr_in, sin_addr);
    let zero_at = mem::offset_of!(libc::sockaddr_in, sin_zero);
    let family = c_int::from(sin.sin_family);
    say!("", "  offset  bytes                    field");
    say!(
        "",
        "  {family_at:>6}  {:<23}  sin_family = {family} ({}), host byte order",
        hex(&bytes[family_at..port_at]),
        family_name(family)
    );
    say!(
        "",
        "  {port_at:>6}  {:<23}  sin_port   = {port}, network byte order (big-endian)",
        hex(&bytes[port_at..addr_at])
    );
    say!(
        "",
        "  {addr_at:>6}  {:<23}  sin_addr   = {}, network byte order",
        hex(&bytes[addr_at..zero_at]),
        nix_sin.ip()
    );
    say!(
        "",
        "  {zero_at:>6}  {:<23}  sin_zero   (padding, zero)",
        hex(&bytes[zero_at..])
    );

    let in_memory = hex(&port.to_ne_bytes());
    let forgot = u16::from_be_bytes(port.to_ne_bytes());
    if cfg!(target_endian = "little") {
        note(format!(
            "this CPU is little-endian: the number {port} (0x{port:04x}) sits in memory as {in_memory}."
        ));
        note(format!(
            "htons({port}) = 0x{:04x}, whose bytes are {}: the order the network uses.",
            port.to_be(),
            hex(&port.to_be().to_ne_bytes())
        ));
        note(format!(
            "store {port} without htons and the kernel reads port {forgot}."
        ));
    } else {
        note(format!(
            "this CPU is big-endian: host order is network order and htons({port}) = {port}."
        ));
    }

    say!("", "");
    note("text <-> binary with the C library, beside nix:");
    let text4 = "127.0.0.1";
    match inet_pton_v4(text4) {
        Some(a) => {
            say!(
                "",
                "inet_pton(AF_INET, \"{text4}\", &in_addr) = 1      s_addr bytes: {}",
                hex(&a.s_addr.to_ne_bytes())
            );
            say!(
                "",
                "inet_ntop(AF_INET, {}) = \"{}\"",
                hex(&a.s_addr.to_ne_bytes()),
                inet_ntop_v4(&a)
            );
            let by_hand = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: a,
                sin_zero: [0; 8],
            };
            note(format!(
                "a sockaddr_in filled the C way (inet_pton + htons) has the same 16 bytes as nix's: {}",
                sockaddr_in_bytes(&by_hand) == bytes
            ));
        }
        None => say!("", "inet_pton(AF_INET, \"{text4}\") = 0"),
    }
    let text6 = "::1";
    if let Some(a) = inet_pton_v6(text6) {
        say!(
            "",
            "inet_pton(AF_INET6, \"{text6}\", &in6_addr) = 1        s6_addr bytes: {}",
            hex(&a.s6_addr)
        );
        say!("", "inet_ntop(AF_INET6, ...) = \"{}\"", inet_ntop_v6(&a));
    }
    let name = "localhost";
    let got = if inet_pton_v4(name).is_some() { 1 } else { 0 };
    say!("", "inet_pton(AF_INET, \"{name}\", &in_addr) = {got}");
    note("0 means \"not an address\": a name needs a resolver (part 4).");

    say!("", "");
    note("the kernel writes the same layout back. Bind to port 0 and it picks a port:");
    let fd = tcp.as_raw_fd();
    let any = SockaddrIn::new(127, 0, 0, 1, 0);
    socket::bind(fd, &any).call(format!("bind({fd}, {any})"))?;
    say!("", "bind({fd}, {any}) = 0");
    let bound: SockaddrIn = socket::getsockname(fd).call(format!("getsockname({fd})"))?;
    let raw: &libc::sockaddr_in = bound.as_ref();
    say!(
        "",
        "getsockname({fd}, {{sa_family=AF_INET, sin_port=htons({}), sin_addr=inet_addr(\"{}\")}}, [{}]) = 0",
        bound.port(),
        bound.ip(),
        bound.len()
    );
    note(format!(
        "port {} arrived as bytes {} (0x{:04x}): network byte order again; ntohs gives {}.",
        bound.port(),
        hex(&sockaddr_in_bytes(raw)[port_at..addr_at]),
        bound.port(),
        u16::from_be(raw.sin_port)
    ));
    Ok(bound)
}

/// One entry of a getaddrinfo list, copied out before the list is freed.
#[derive(Debug, Clone)]
pub struct AddrInfoEntry {
    /// `ai_family`: `AF_INET` or `AF_INET6`.
    pub family: c_int,
    /// `ai_socktype`: `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_RAW`.
    pub socktype: c_int,
    /// `ai_protocol`: `IPPROTO_TCP`, `IPPROTO_UDP`, 0.
    pub protocol: c_int,
    /// `ai_addr`, copied.
    pub addr: Option<SockaddrStorage>,
    /// `ai_canonname` (only on the first entry, and only with `AI_CANONNAME`).
    pub canonname: Option<String>,
}

/// The list getaddrinfo allocated. Dropping it calls freeaddrinfo, once.
struct AddrInfoList(*mut libc::addrinfo);

impl Drop for AddrInfoList {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful getaddrinfo, and this
        // is its only owner: it is freed here, once.
        unsafe { libc::freeaddrinfo(self.0) };
        say!("", "freeaddrinfo({:p})", self.0);
    }
}

fn ai_flags_text(flags: c_int) -> String {
    let names: Vec<&str> = [
        (libc::AI_PASSIVE, "AI_PASSIVE"),
        (libc::AI_CANONNAME, "AI_CANONNAME"),
        (libc::AI_NUMERICHOST, "AI_NUMERICHOST"),
        (libc::AI_NUMERICSERV, "AI_NUMERICSERV"),
        (libc::AI_ADDRCONFIG, "AI_ADDRCONFIG"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| name)
    .collect();
    if names.is_empty() {
        String::from("0")
    } else {
        names.join("|")
    }
}

/// [`getaddrinfo(3)`](https://man7.org/linux/man-pages/man3/getaddrinfo.3.html)
/// with `ai_family = AF_UNSPEC` and `ai_socktype = 0` (every socket type),
/// narrated: prints the call, each entry, and the `freeaddrinfo`. The list is
/// freed exactly once, whatever happens after getaddrinfo succeeds.
pub fn getaddrinfo_all(
    host: &str,
    service: Option<&str>,
    flags: c_int,
) -> Result<Vec<AddrInfoEntry>> {
    let service_text = service.map_or(String::from("NULL"), |s| format!("{s:?}"));
    let call = format!(
        "getaddrinfo({host:?}, {service_text}, {{ai_flags={}, ai_family=AF_UNSPEC, ai_socktype=0}})",
        ai_flags_text(flags)
    );
    let c_host =
        CString::new(host).map_err(|_| Error::msg(format!("{call}: the name has a NUL byte")))?;
    let c_service = service
        .map(CString::new)
        .transpose()
        .map_err(|_| Error::msg(format!("{call}: the service has a NUL byte")))?;
    let hints = libc::addrinfo {
        ai_flags: flags,
        ai_family: libc::AF_UNSPEC,
        ai_socktype: 0,
        ai_protocol: 0,
        ai_addrlen: 0,
        ai_addr: ptr::null_mut(),
        ai_canonname: ptr::null_mut(),
        ai_next: ptr::null_mut(),
    };
    let service_ptr = c_service.as_ref().map_or(ptr::null(), |s| s.as_ptr());
    let mut head: *mut libc::addrinfo = ptr::null_mut();
    // SAFETY: the strings are NUL-terminated (or the service is NULL, which
    // getaddrinfo allows), `hints` is a valid addrinfo whose pointers are
    // null, and `head` is a writable out-pointer; all outlive the call.
    let code = unsafe { libc::getaddrinfo(c_host.as_ptr(), service_ptr, &hints, &mut head) };
    if code != 0 {
        // Failed: getaddrinfo allocated nothing, so there is nothing to free.
        let e = gai_error(format!("getaddrinfo({host:?}, {service_text})"), code);
        say!("", "{call} = {code} ({})", gai_error_name(code));
        return Err(e);
    }
    let list = AddrInfoList(head);
    say!("", "{call} = 0, list at {head:p}");

    let mut entries = Vec::new();
    let mut p = list.0;
    while !p.is_null() {
        // SAFETY: `p` is an entry of the list getaddrinfo returned, which
        // stays allocated until `list` is dropped at the end of this function.
        let ai = unsafe { &*p };
        // SAFETY: ai_addr points to ai_addrlen readable bytes of a sockaddr
        // (or is null, which from_raw rejects).
        let addr = unsafe { SockaddrStorage::from_raw(ai.ai_addr, Some(ai.ai_addrlen)) };
        let canonname = (!ai.ai_canonname.is_null()).then(|| {
            // SAFETY: a non-null ai_canonname is a NUL-terminated string
            // inside the list, alive until the list is freed.
            unsafe { CStr::from_ptr(ai.ai_canonname) }
                .to_string_lossy()
                .into_owned()
        });
        entries.push(AddrInfoEntry {
            family: ai.ai_family,
            socktype: ai.ai_socktype,
            protocol: ai.ai_protocol,
            addr,
            canonname,
        });
        p = ai.ai_next;
    }
    for (i, e) in entries.iter().enumerate() {
        if let Some(name) = &e.canonname {
            say!("", "  ai_canonname = {name:?}");
        }
        let addr = e
            .addr
            .as_ref()
            .map_or(String::from("(no address)"), |a| a.to_string());
        say!(
            "",
            "  [{i}] {:<9} {:<12} {:<12} {addr}",
            family_name(e.family),
            socktype_name(e.socktype),
            protocol_name(e.family, e.protocol),
        );
    }
    drop(list);
    Ok(entries)
}

/// Part 4: resolve localhost.
fn names() -> Result<()> {
    heading("4. Names: getaddrinfo(\"localhost\") and freeaddrinfo");
    let hosts_line = std::fs::read_to_string("/etc/nsswitch.conf")
        .ok()
        .and_then(|text| {
            text.lines()
                .map(str::trim)
                .find(|l| l.starts_with("hosts:"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        });
    if let Some(line) = hosts_line {
        note(format!(
            "the resolver asks the sources in /etc/nsswitch.conf, in order: \"{line}\""
        ));
    }
    note("localhost is normally answered from /etc/hosts (or systemd's myhostname),");
    note("so this sends no packet at all. Numeric port, so no /etc/services lookup:");
    let entries = getaddrinfo_all("localhost", Some("8080"), libc::AI_NUMERICSERV)?;
    let addresses: std::collections::BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e.addr.as_ref().map(|a| a.to_string()))
        .collect();
    let (n, many) = (addresses.len(), addresses.len() != 1);
    note(format!(
        "{} entries for {n} address{}: one per (address, socket type), because ai_socktype = 0.",
        entries.len(),
        if many { "es" } else { "" }
    ));
    note(
        "with ai_socktype = SOCK_STREAM you get one per address: what std's to_socket_addrs does.",
    );
    note("the list is the C library's memory: copy out what you need, then freeaddrinfo it once.");
    Ok(())
}

/// Part 5: two calls that fail on purpose. `bound` is an address a socket of
/// the tour holds.
fn errors(bound: SockaddrIn, holder: i32) -> Result<()> {
    heading("5. errno: when a call fails");
    note("a loopback port nobody listens on: bind port 0, read the port, close.");
    let probe = net::tcp_socket("", AddressFamily::Inet)?;
    let fd = probe.as_raw_fd();
    let any = SockaddrIn::new(127, 0, 0, 1, 0);
    socket::bind(fd, &any).call(format!("bind({fd}, {any})"))?;
    say!("", "bind({fd}, {any}) = 0");
    let closed: SockaddrIn = socket::getsockname(fd).call(format!("getsockname({fd})"))?;
    say!("", "getsockname({fd}) = {closed}");
    nix::unistd::close(probe).call(format!("close({fd})"))?;
    say!("", "close({fd}) = 0");

    let client = net::tcp_socket("", AddressFamily::Inet)?;
    let cfd = client.as_raw_fd();
    if cfd == fd {
        note(format!(
            "fd {fd} again: a new fd gets the lowest number that is free."
        ));
    }
    // SAFETY: `closed` is a valid sockaddr_in and as_ptr/len describe it
    // exactly; `cfd` is an open socket owned by `client`.
    let rc = unsafe { libc::connect(cfd, closed.as_ptr(), closed.len()) };
    // Read errno at once, before any print can overwrite it.
    let errno = Errno::last();
    if rc == 0 {
        say!("", "connect({cfd}, {closed}) = 0");
        note("someone else took that port in the meantime; no error to show this time.");
    } else {
        say!("", "connect({cfd}, {closed}) = -1 {}", errno_text(errno));
        note(format!(
            "raw libc::connect returned -1 and set errno = {}: {errno:?}. Nothing listens on",
            errno as i32
        ));
        note("that port, so the connection is refused (on loopback the kernel answers the");
        note("SYN with a RST at once: `sudo tcpdump -i lo` shows the pair).");
    }
    drop(client);

    say!("", "");
    note(format!(
        "another socket asks for {bound}, which fd {holder} already holds (part 3):"
    ));
    let second = net::tcp_socket("", AddressFamily::Inet)?;
    let sfd = second.as_raw_fd();
    match socket::bind(sfd, &bound).call(format!("bind({sfd}, {bound})")) {
        Ok(()) => {
            say!("", "bind({sfd}, {bound}) = 0");
            note("the kernel allowed it (unexpected here); no error to show.");
        }
        Err(e) => {
            let errno = e.errno().unwrap_or(Errno::UnknownErrno);
            say!("", "bind({sfd}, {bound}) = -1 {}", errno_text(errno));
            note(format!(
                "nix returned Err(Errno::{errno:?}), number {}; the workbook's Error names the call:",
                errno as i32
            ));
            note(format!("  {e}"));
        }
    }
    note("errno is only meaningful right after a call returned -1; a success does not reset it.");
    Ok(())
}
