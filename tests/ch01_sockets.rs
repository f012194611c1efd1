//! Graded tests for chapter 1: `cargo test --test ch01_sockets`.
//!
//! Every expected value here is computed by another implementation of the
//! same thing (`std::net`, nix, a raw libc call, the kernel's own
//! getsockname), never written into the test.

#[macro_use]
mod support;

use std::ffi::{CStr, CString};
use std::mem;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::ptr;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike,
    SockaddrStorage, UnixAddr,
};
use sockbook::ch01_sockets::{connect_first, format_sockaddr, resolve, sockaddr_in_from_text};

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// The 16 bytes of a sockaddr_in as they lie in memory.
fn bytes_of(sin: &libc::sockaddr_in) -> [u8; 16] {
    // SAFETY: sockaddr_in is 16 bytes of integer fields without padding.
    unsafe { mem::transmute_copy(sin) }
}

/// Copy any nix address into a zeroed `sockaddr_storage`, with its length.
fn to_storage(addr: &dyn SockaddrLike) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = addr.len();
    assert!(len as usize <= mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `addr` points to `len` readable bytes; the storage holds at
    // least that many; they do not overlap.
    unsafe {
        ptr::copy_nonoverlapping(
            addr.as_ptr().cast::<u8>(),
            (&raw mut storage).cast::<u8>(),
            len as usize,
        )
    };
    (storage, len)
}

/// Put eight bytes of junk right after the first `len` bytes of `storage`,
/// where a function that ignores `len` would read on.
fn junk_after(storage: &mut libc::sockaddr_storage, len: libc::socklen_t) {
    let size = mem::size_of::<libc::sockaddr_storage>();
    // SAFETY: the slice covers exactly the storage, which is plain bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(ptr::from_mut(storage).cast::<u8>(), size) };
    let start = len as usize;
    bytes[start..(start + 8).min(size)].fill(b'X');
}

/// An IP address in a `sockaddr_storage`, with the exact length of its
/// struct (`sockaddr_in` or `sockaddr_in6`), as the kernel would give it.
fn storage_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    match addr {
        SocketAddr::V4(a) => to_storage(&SockaddrIn::from(a)),
        SocketAddr::V6(a) => to_storage(&SockaddrIn6::from(a)),
    }
}

/// `getsockname` with raw libc into a `sockaddr_storage`: what the kernel
/// itself reports, no library in between.
fn raw_getsockname(fd: i32) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are live locals and len is storage's size.
    let rc = unsafe { libc::getsockname(fd, (&raw mut storage).cast(), &mut len) };
    assert_eq!(rc, 0, "getsockname({fd}): {}", Errno::last());
    (storage, len)
}

/// A unique name for this process and test.
fn unique(tag: &str) -> String {
    format!("sockbook-ch01-{}-{tag}", std::process::id())
}

// ---------------------------------------------------------------------------
// Assignment 1: sockaddr_in_from_text
// ---------------------------------------------------------------------------

graded! {
    /// Each field and every byte equal the sockaddr_in that nix builds from
    /// std's parse of the same text (a missing htons shows in sin_port).
    points = 2;
    fn sockaddr_in_bytes_match_nix() {
        for text in [
            "127.0.0.1:8080",
            "10.1.2.3:1",
            "192.168.255.254:65535",
            "0.0.0.0:0",
            "255.255.255.255:443",
            "1.2.3.4:256",
            "172.16.0.99:51234",
        ] {
            let ours = sockaddr_in_from_text(text)
                .unwrap_or_else(|e| panic!("sockaddr_in_from_text({text:?}) failed: {e}"));
            let std_addr: SocketAddrV4 = text.parse().unwrap();
            let nix_addr = SockaddrIn::from(std_addr);
            let theirs: &libc::sockaddr_in = nix_addr.as_ref();
            assert_eq!(ours.sin_family, theirs.sin_family, "{text}: sin_family must be AF_INET");
            assert_eq!(
                ours.sin_port,
                theirs.sin_port,
                "{text}: sin_port reads as port {} in network order, expected {}: htons(port) missing?",
                u16::from_be(ours.sin_port),
                std_addr.port()
            );
            assert_eq!(
                ours.sin_addr.s_addr.to_ne_bytes(),
                theirs.sin_addr.s_addr.to_ne_bytes(),
                "{text}: sin_addr bytes in memory must be a b c d (network order): htonl missing?"
            );
            assert_eq!(bytes_of(&ours), bytes_of(theirs), "{text}: the 16 bytes differ");
        }
    }
}

graded! {
    /// A socket connects with your sockaddr_in to a real listener on
    /// loopback, and the kernel's getsockname/getpeername (read by std) agree.
    points = 2;
    fn sockaddr_in_reaches_a_real_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let sin = sockaddr_in_from_text(&target.to_string())
            .unwrap_or_else(|e| panic!("sockaddr_in_from_text({target}) failed: {e}"));
        // Loopback only: never connect anywhere else, whatever the struct says.
        assert_eq!(
            sin.sin_addr.s_addr.to_ne_bytes(),
            [127, 0, 0, 1],
            "sin_addr of {target} must read 7f 00 00 01 in memory"
        );
        assert_eq!(i32::from(sin.sin_family), libc::AF_INET, "sin_family must be AF_INET");

        let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
            .unwrap();
        // SAFETY: `sin` is a sockaddr_in and the length passed is its size.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                ptr::from_ref(&sin).cast(),
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        let errno = Errno::last();
        assert_eq!(
            rc,
            0,
            "connect to {target} with your sockaddr_in failed: {errno} \
             (the port in it reads {} when taken as network order)",
            u16::from_be(sin.sin_port)
        );
        let client = TcpStream::from(fd);
        let (_server_side, client_seen_by_server) = listener.accept().unwrap();
        assert_eq!(client.peer_addr().unwrap(), target, "getpeername of the client");
        assert_eq!(
            client.local_addr().unwrap(),
            client_seen_by_server,
            "the client's getsockname and the server's accept must agree"
        );
    }
}

graded! {
    /// Text that std refuses as an IPv4 socket address is an Err, and the
    /// error quotes the text.
    points = 1;
    fn sockaddr_in_rejects_what_std_rejects() {
        for text in [
            "1.2.3:80",
            "1.2.3.4.5:80",
            "256.1.1.1:80",
            "1.2.3.4:65536",
            "1.2.3.4",
            "1.2.3.4:",
            ":80",
            "a.b.c.d:80",
            "1.2.3.4:-1",
            "1..3.4:80",
            "",
            "[::1]:80",
            "1.2.3.4:80:80",
            "1.2.3.4:8o",
            "+1.2.3.4:80",
            "1.2.3.4:+80",
            " 1.2.3.4:80",
        ] {
            assert!(text.parse::<SocketAddrV4>().is_err(), "std accepts {text:?}?");
            match sockaddr_in_from_text(text) {
                Ok(sin) => panic!(
                    "sockaddr_in_from_text({text:?}) accepted it (port {}), std refuses it",
                    u16::from_be(sin.sin_port)
                ),
                Err(e) => assert!(
                    e.to_string().contains(&format!("{text:?}")),
                    "the error for {text:?} should quote it, got: {e}"
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Assignment 2: format_sockaddr
// ---------------------------------------------------------------------------

graded! {
    /// IPv4 and IPv6 addresses (scope id, mapped v4 too) print as std and
    /// nix print them, including what the kernel reports for a bound socket.
    points = 2;
    fn format_inet_like_std_and_nix() {
        let mut addrs: Vec<SocketAddr> = [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "192.168.1.254:65535",
            "[::1]:80",
            "[::]:0",
            "[2001:db8::8:800:200c:417a]:443",
            "[2001:db8:0:0:1:0:0:1]:1",
            "[::ffff:192.0.2.1]:53",
        ]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
        addrs.push(SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            5353,
            0,
            2,
        )));
        for addr in addrs {
            let nix_addr = SockaddrStorage::from(addr);
            let (storage, len) = storage_of(addr);
            let ours = format_sockaddr(&storage, len)
                .unwrap_or_else(|e| panic!("format_sockaddr({addr}) failed: {e}"));
            assert_eq!(ours, addr.to_string(), "std prints it so");
            assert_eq!(ours, nix_addr.to_string(), "nix prints it so");
        }

        // What the kernel wrote for a real bound socket.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (storage, len) = raw_getsockname(listener.as_raw_fd());
        let ours = format_sockaddr(&storage, len).unwrap();
        assert_eq!(ours, listener.local_addr().unwrap().to_string(), "getsockname of a listener");
        if let Ok(listener6) = TcpListener::bind("[::1]:0") {
            let (storage, len) = raw_getsockname(listener6.as_raw_fd());
            let ours = format_sockaddr(&storage, len).unwrap();
            assert_eq!(ours, listener6.local_addr().unwrap().to_string(), "IPv6 getsockname");
        }
    }
}

graded! {
    /// Unix-domain addresses (a path, an abstract name, an unnamed socket),
    /// as the kernel reports them, print as nix prints them.
    points = 2;
    fn format_unix_like_nix() {
        // A path, as the kernel reports it (with its trailing NUL).
        let path = std::env::temp_dir().join(format!("{}.sock", unique("path")));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // The socket file goes away however this test ends (a stub panics).
        struct RemoveOnDrop(std::path::PathBuf);
        impl Drop for RemoveOnDrop {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let _file = RemoveOnDrop(path.clone());
        let (storage, len) = raw_getsockname(listener.as_raw_fd());
        let theirs: UnixAddr = socket::getsockname(listener.as_raw_fd()).unwrap();
        let ours = format_sockaddr(&storage, len);
        drop(listener);
        let ours = ours.unwrap_or_else(|e| panic!("format_sockaddr(unix path) failed: {e}"));
        assert_eq!(ours, theirs.to_string(), "a pathname socket");
        assert_eq!(ours, path.display().to_string(), "a pathname socket is its path");

        // A path given without a trailing NUL (as bind() may receive it), and
        // junk after it: the path ends where `len` says, not at a NUL.
        let built = UnixAddr::new("/tmp/no-trailing-nul.sock").unwrap();
        let (mut storage, len) = to_storage(&built);
        junk_after(&mut storage, len);
        assert_eq!(
            format_sockaddr(&storage, len).unwrap(),
            built.to_string(),
            "a path of {len} bytes in all (use len, not a NUL, to find its end)"
        );

        // An abstract name (Linux): sun_path starts with a NUL byte.
        let name = unique("abstract");
        let fd = socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
            .unwrap();
        socket::bind(fd.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes()).unwrap()).unwrap();
        let (storage, len) = raw_getsockname(fd.as_raw_fd());
        let theirs: UnixAddr = socket::getsockname(fd.as_raw_fd()).unwrap();
        assert_eq!(format_sockaddr(&storage, len).unwrap(), theirs.to_string(), "abstract");
        let odd = UnixAddr::new_abstract(b"tab\there\x01").unwrap();
        let (mut storage, len) = to_storage(&odd);
        junk_after(&mut storage, len);
        assert_eq!(format_sockaddr(&storage, len).unwrap(), odd.to_string(), "escaped bytes");

        // An unnamed socket: one end of a socketpair.
        let (a, _b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (storage, len) = raw_getsockname(a.as_raw_fd());
        let theirs: UnixAddr = socket::getsockname(a.as_raw_fd()).unwrap();
        assert_eq!(format_sockaddr(&storage, len).unwrap(), theirs.to_string(), "unnamed");
    }
}

graded! {
    /// Another family, a length too short for the family's struct, or one
    /// longer than a sockaddr_storage, is an Err.
    points = 1;
    fn format_rejects_unknown_family_and_bad_len() {
        let (storage, len) = storage_of("127.0.0.1:80".parse().unwrap());
        assert!(format_sockaddr(&storage, len).is_ok(), "a whole sockaddr_in is fine");
        assert!(format_sockaddr(&storage, len - 1).is_err(), "sockaddr_in one byte short");
        let too_long = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t + 1;
        assert!(format_sockaddr(&storage, too_long).is_err(), "longer than the storage");

        let (storage6, len6) = storage_of("[::1]:80".parse().unwrap());
        assert!(format_sockaddr(&storage6, len6).is_ok(), "a whole sockaddr_in6 is fine");
        assert!(format_sockaddr(&storage6, len6 - 1).is_err(), "sockaddr_in6 one byte short");

        let mut storage = storage;
        storage.ss_family = libc::AF_NETLINK as libc::sa_family_t;
        assert!(format_sockaddr(&storage, len).is_err(), "AF_NETLINK is not for this function");
        storage.ss_family = libc::AF_UNSPEC as libc::sa_family_t;
        assert!(format_sockaddr(&storage, len).is_err(), "AF_UNSPEC");

        let unix = UnixAddr::new("/tmp/x.sock").unwrap();
        let (storage, _) = to_storage(&unix);
        assert!(format_sockaddr(&storage, 1).is_err(), "AF_UNIX shorter than sun_family");
    }
}

// ---------------------------------------------------------------------------
// Assignment 3: resolve
// ---------------------------------------------------------------------------

/// A spy on getaddrinfo and freeaddrinfo. This test program defines both
/// functions itself, so every call to them in it (yours included) lands
/// here first; the spy passes the call on to the C library's own function
/// (found with `dlsym(RTLD_NEXT, …)`) and notes, per thread, which lists are
/// still allocated and whether a free was wrong.
mod spy {
    use std::cell::RefCell;
    use std::ffi::{CStr, c_char, c_int};

    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct Log {
        /// Successful getaddrinfo calls.
        pub allocated: usize,
        /// getaddrinfo calls that returned an error.
        pub failed: usize,
        /// freeaddrinfo calls on a list getaddrinfo returned and not yet freed.
        pub freed: usize,
        /// freeaddrinfo calls on anything else: null, a list freed already,
        /// a pointer into the middle of a list. Not passed on (they would
        /// corrupt the heap).
        pub bad_frees: usize,
        /// Lists allocated and not freed yet.
        pub live: Vec<usize>,
    }

    thread_local! {
        static LOG: RefCell<Log> = RefCell::new(Log::default());
    }

    /// Forget what was noted on this thread so far.
    pub fn reset() {
        LOG.with(|l| *l.borrow_mut() = Log::default());
    }

    /// What was noted on this thread.
    pub fn log() -> Log {
        LOG.with(|l| l.borrow().clone())
    }

    fn real(name: &CStr) -> *mut libc::c_void {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        assert!(!f.is_null(), "dlsym({name:?}) found nothing");
        f
    }

    type GetAddrInfo = unsafe extern "C" fn(
        *const c_char,
        *const c_char,
        *const libc::addrinfo,
        *mut *mut libc::addrinfo,
    ) -> c_int;
    type FreeAddrInfo = unsafe extern "C" fn(*mut libc::addrinfo);

    /// A name the spy answers itself, with two addresses: the C library's
    /// list for 127.0.0.1 followed by its list for ::1, as `localhost` reads
    /// on many machines (but not on every one, so a test of a list longer
    /// than one entry cannot rely on `localhost`). `.test` is reserved: no
    /// real resolver knows it (RFC 2606).
    pub const TWO_ADDRESSES: &str = "two-addresses.sockbook.test";

    /// getaddrinfo for [`TWO_ADDRESSES`]: two real lists, chained. glibc's
    /// freeaddrinfo frees a list entry by entry, so one call frees both.
    ///
    /// # Safety
    /// The contract of getaddrinfo(3); `lookup` is the C library's.
    unsafe fn two_addresses(
        lookup: GetAddrInfo,
        service: *const c_char,
        hints: *const libc::addrinfo,
        res: *mut *mut libc::addrinfo,
    ) -> c_int {
        let mut first: *mut libc::addrinfo = std::ptr::null_mut();
        let mut second: *mut libc::addrinfo = std::ptr::null_mut();
        // SAFETY: NUL-terminated hosts; the caller's service and hints; out-pointers.
        let rc = unsafe { lookup(c"127.0.0.1".as_ptr(), service, hints, &mut first) };
        if rc != 0 {
            return rc;
        }
        // SAFETY: as above.
        let rc = unsafe { lookup(c"::1".as_ptr(), service, hints, &mut second) };
        if rc != 0 {
            // SAFETY: the symbol named freeaddrinfo in the C library has this type.
            let free: FreeAddrInfo = unsafe { std::mem::transmute(real(c"freeaddrinfo")) };
            // SAFETY: `first` came from getaddrinfo and is freed once, here.
            unsafe { free(first) };
            return rc;
        }
        let mut tail = first;
        // SAFETY: `first` is a non-empty list from getaddrinfo; walk to its end.
        unsafe {
            while !(*tail).ai_next.is_null() {
                tail = (*tail).ai_next;
            }
            (*tail).ai_next = second;
            *res = first;
        }
        0
    }

    /// The spy's getaddrinfo.
    ///
    /// # Safety
    /// The contract of getaddrinfo(3).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn getaddrinfo(
        node: *const c_char,
        service: *const c_char,
        hints: *const libc::addrinfo,
        res: *mut *mut libc::addrinfo,
    ) -> c_int {
        // SAFETY: the symbol named getaddrinfo in the C library has this type.
        let f: GetAddrInfo = unsafe { std::mem::transmute(real(c"getaddrinfo")) };
        // SAFETY: a non-null node is a NUL-terminated string (getaddrinfo's contract).
        let two = !node.is_null()
            && unsafe { CStr::from_ptr(node) }.to_bytes() == TWO_ADDRESSES.as_bytes();
        let rc = if two {
            // SAFETY: the caller's arguments, as getaddrinfo takes them.
            unsafe { two_addresses(f, service, hints, res) }
        } else {
            // SAFETY: the caller's arguments, passed on unchanged.
            unsafe { f(node, service, hints, res) }
        };
        let _ = LOG.try_with(|l| {
            let mut l = l.borrow_mut();
            if rc == 0 {
                l.allocated += 1;
                // SAFETY: on success getaddrinfo stored the list in *res.
                l.live.push(unsafe { *res } as usize);
            } else {
                l.failed += 1;
            }
        });
        rc
    }

    /// The spy's freeaddrinfo.
    ///
    /// # Safety
    /// The contract of freeaddrinfo(3).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn freeaddrinfo(list: *mut libc::addrinfo) {
        let known = LOG
            .try_with(|l| {
                let mut l = l.borrow_mut();
                match l.live.iter().position(|&p| p == list as usize) {
                    Some(i) => {
                        l.live.swap_remove(i);
                        l.freed += 1;
                        true
                    }
                    None => {
                        l.bad_frees += 1;
                        false
                    }
                }
            })
            .unwrap_or(true);
        if known {
            // SAFETY: the symbol named freeaddrinfo in the C library has this type.
            let f: FreeAddrInfo = unsafe { std::mem::transmute(real(c"freeaddrinfo")) };
            // SAFETY: `list` came from getaddrinfo and was not freed before.
            unsafe { f(list) }
        }
    }
}

/// A name the resolver refuses before sending anything anywhere: a DNS
/// label is at most 63 bytes, so no query can even be built for it.
fn unresolvable_name() -> String {
    "a".repeat(64)
}

graded! {
    /// "localhost" and numeric hosts resolve to the same addresses, in the
    /// same order, as std's ToSocketAddrs (which calls getaddrinfo too).
    points = 2;
    fn resolve_matches_std() {
        for host in ["localhost", "127.0.0.1", "::1"] {
            for port in [80u16, 4242] {
                let ours: Vec<SocketAddr> = resolve(host, port)
                    .unwrap_or_else(|e| panic!("resolve({host:?}, {port}) failed: {e}"))
                    .iter()
                    .map(support::std_addr)
                    .collect();
                let theirs: Vec<SocketAddr> = (host, port).to_socket_addrs().unwrap().collect();
                assert_eq!(ours, theirs, "resolve({host:?}, {port}) vs std");
            }
        }

        // A name with two addresses (the spy answers it: 127.0.0.1, then ::1;
        // chaining two lists is safe with glibc's freeaddrinfo only).
        if !cfg!(target_env = "gnu") {
            return;
        }
        let ours: Vec<SocketAddr> = resolve(spy::TWO_ADDRESSES, 80)
            .unwrap_or_else(|e| panic!("resolve({:?}, 80) failed: {e}", spy::TWO_ADDRESSES))
            .iter()
            .map(support::std_addr)
            .collect();
        let theirs: Vec<SocketAddr> = ["127.0.0.1", "::1"]
            .iter()
            .flat_map(|host| (*host, 80).to_socket_addrs().unwrap())
            .collect();
        assert_eq!(
            ours, theirs,
            "a name with two addresses: follow ai_next to the end of the list"
        );
    }
}

graded! {
    /// Every list getaddrinfo returns is freed exactly once, and nothing is
    /// freed when getaddrinfo fails.
    points = 2;
    fn resolve_frees_the_list_exactly_once() {
        spy::reset();
        let addrs = resolve("localhost", 7).expect("resolve localhost");
        let log = spy::log();
        assert!(!addrs.is_empty(), "localhost has an address");
        assert_eq!(log.allocated, 1, "one getaddrinfo call that succeeded: {log:?}");
        assert_eq!(log.bad_frees, 0, "freeaddrinfo on something not (or no longer) allocated: {log:?}");
        assert_eq!(log.freed, 1, "the list must be freed with freeaddrinfo once: {log:?}");
        assert!(log.live.is_empty(), "a list leaked: {log:?}");

        spy::reset();
        assert!(resolve(&unresolvable_name(), 7).is_err(), "an unresolvable name");
        let log = spy::log();
        assert!(log.failed >= 1, "getaddrinfo was not called? {log:?}");
        assert_eq!(log.bad_frees, 0, "freeaddrinfo after getaddrinfo failed: {log:?}");
        assert!(log.live.is_empty(), "a list leaked: {log:?}");
    }
}

graded! {
    /// A name that does not resolve gives an error that names getaddrinfo
    /// and says what gai_strerror says about the code getaddrinfo returned.
    points = 1;
    fn resolve_failure_names_getaddrinfo_and_gai_error() {
        let name = unresolvable_name();
        // The same call, made by the test with raw libc, for the code.
        let c_name = CString::new(name.clone()).unwrap();
        // SAFETY: all-zero is a valid addrinfo (null pointers).
        let mut hints: libc::addrinfo = unsafe { mem::zeroed() };
        hints.ai_socktype = libc::SOCK_STREAM;
        let mut list: *mut libc::addrinfo = ptr::null_mut();
        // SAFETY: NUL-terminated name, NULL service, valid hints, out-pointer.
        let code = unsafe { libc::getaddrinfo(c_name.as_ptr(), ptr::null(), &hints, &mut list) };
        assert_ne!(code, 0, "{name:?} resolved?");
        // SAFETY: gai_strerror returns a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr(libc::gai_strerror(code)) }.to_string_lossy();
        assert!((name.as_str(), 80).to_socket_addrs().is_err(), "std resolved it?");

        let err = resolve(&name, 80).expect_err("resolve must fail").to_string();
        assert!(err.contains("getaddrinfo"), "the error should name getaddrinfo: {err}");
        assert!(err.contains(text.as_ref()), "the error should say {text:?}: {err}");

        let err = resolve("bad\0name", 80).expect_err("a NUL byte in the name").to_string();
        assert!(!err.is_empty());
    }
}

// ---------------------------------------------------------------------------
// Assignment 4: connect_first
// ---------------------------------------------------------------------------

/// The per-address timeout the tests give `connect_first`: short, so a
/// silent address costs little; a blocking connect would wait minutes.
const TRY_TIMEOUT: Duration = Duration::from_millis(300);

/// The test's own listener on `ip` (std, not the code under test), or
/// `None` when this machine has no such address (no IPv6 loopback).
fn std_listener(ip: &str) -> Option<TcpListener> {
    TcpListener::bind((ip, 0)).ok()
}

/// Both loopback listeners, or a skip when `::1` is missing here.
fn both_loopbacks() -> Option<(TcpListener, TcpListener)> {
    let Some(v6) = std_listener("::1") else {
        support::skip("no IPv6 loopback (::1) on this machine");
        return None;
    };
    let v4 = std_listener("127.0.0.1").expect("bind 127.0.0.1:0");
    Some((v6, v4))
}

/// An address on `ip` where nothing listens: bind port 0, read the port,
/// close. A connect there is refused at once (RST).
fn closed_port(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).expect("bind for a closed port");
    l.local_addr().unwrap()
}

/// An address on `ip` that never answers a SYN: a listener with backlog 0
/// whose accept queue is already full (one connection it never accepts).
/// Linux drops a SYN for a listener whose accept queue is full
/// (tcp_conn_request: "ListenOverflows"), so a connect there waits and
/// retries, like one to a host behind a dropping firewall. Keep the
/// returned sockets alive for as long as the black hole is needed.
struct BlackHole {
    addr: SocketAddr,
    _listener: std::os::fd::OwnedFd,
    _filler: TcpStream,
}

fn black_hole(ip: &str) -> BlackHole {
    let std_addr: SocketAddr = format!(
        "{}:0",
        if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        }
    )
    .parse()
    .unwrap();
    let family = if std_addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(std_addr)).unwrap();
    socket::listen(&fd, socket::Backlog::new(0).unwrap()).unwrap();
    let bound: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).unwrap();
    let addr = support::std_addr(&bound);
    let filler = TcpStream::connect_timeout(&addr, support::DEADLINE)
        .unwrap_or_else(|e| panic!("the connection that fills {addr}'s accept queue: {e}"));
    BlackHole {
        addr,
        _listener: fd,
        _filler: filler,
    }
}

/// How many of this process's sockets are still in SYN_SENT towards `port`
/// (/proc/net/tcp and tcp6, state 02, matched to /proc/self/fd by inode):
/// an attempt that timed out and was not closed.
fn syn_sent_to_port(port: u16) -> usize {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(remote) = cols.get(2) else { continue };
            let rport = remote
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if rport == Some(port) && cols.get(3) == Some(&"02") {
                inodes.extend(cols.get(9).and_then(|i| i.parse::<u64>().ok()));
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| {
                    let t = t.to_string_lossy();
                    inodes.iter().any(|i| t == format!("socket:[{i}]"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn storage(addrs: &[SocketAddr]) -> Vec<SockaddrStorage> {
    addrs.iter().map(|&a| SockaddrStorage::from(a)).collect()
}

/// Run connect_first on a background thread, so the test can say what it
/// gave it when it does not come back.
fn run_connect_first(addrs: &[SocketAddr]) -> sockbook::kit::Result<std::os::fd::OwnedFd> {
    let list = storage(addrs);
    let shown = format!("{addrs:?}");
    support::Background::spawn("connect_first", move || connect_first(&list, TRY_TIMEOUT))
        .join_within(
            support::DEADLINE,
            &format!(
                "connect_first({shown}, {TRY_TIMEOUT:?}) did not return (if one of these \
                 addresses never answers: a blocking connect there waits minutes; use a \
                 nonblocking connect and poll with the timeout)"
            ),
        )
}

/// Where the socket connect_first returned is connected, by getpeername.
fn peer_of(fd: &std::os::fd::OwnedFd) -> SocketAddr {
    let peer: SockaddrStorage = socket::getpeername(fd.as_raw_fd()).unwrap_or_else(|e| {
        panic!("getpeername on the returned socket: {e} (it is not connected)")
    });
    support::std_addr(&peer)
}

/// The listener really got the connection: accept it (nonblocking, after a
/// short wait) and compare the two ends.
fn accepted_by(listener: &TcpListener, fd: &std::os::fd::OwnedFd) {
    listener.set_nonblocking(true).unwrap();
    let local: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).unwrap();
    let local = support::std_addr(&local);
    let deadline = std::time::Instant::now() + support::DEADLINE;
    loop {
        match listener.accept() {
            Ok((_conn, peer)) if peer == local => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the listener on {} never saw the connection from {local}",
                    listener.local_addr().unwrap()
                );
                std::thread::yield_now();
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

graded! {
    /// With a listener on ::1 and one on 127.0.0.1, listed IPv4 first, the
    /// IPv6 one is tried first and the returned socket is connected to it.
    points = 1;
    fn connect_first_tries_ipv6_first() {
        let Some((v6, v4)) = both_loopbacks() else { return };
        let list = [v4.local_addr().unwrap(), v6.local_addr().unwrap()];
        let fd = run_connect_first(&list)
            .unwrap_or_else(|e| panic!("connect_first({list:?}): both listen, yet: {e}"));
        let peer = peer_of(&fd);
        assert_eq!(
            peer, list[1],
            "connect_first({list:?}) connected to {peer}: IPv6 addresses come first, whatever \
             the order of the list"
        );
        accepted_by(&v6, &fd);
    }
}

graded! {
    /// The socket it returns is connected and blocking again (O_NONBLOCK
    /// off, read with fcntl F_GETFL), so a read waits for data.
    points = 1;
    fn connect_first_returns_a_blocking_socket() {
        let v4 = std_listener("127.0.0.1").expect("bind 127.0.0.1:0");
        let list = [v4.local_addr().unwrap()];
        let fd = run_connect_first(&list)
            .unwrap_or_else(|e| panic!("connect_first({list:?}): it listens, yet: {e}"));
        assert_eq!(peer_of(&fd), list[0], "connected to the one address given");
        // SAFETY: F_GETFL on an fd the test owns.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        assert!(flags != -1, "fcntl(F_GETFL): {}", std::io::Error::last_os_error());
        assert_eq!(
            flags & libc::O_NONBLOCK,
            0,
            "the returned socket still has O_NONBLOCK (flags {flags:#o}): turn it off after \
             the connect succeeded, or the caller's first read fails with EAGAIN"
        );
        let (mut conn, _) = v4.accept().unwrap();
        std::io::Write::write_all(&mut conn, b"hi").unwrap();
        let mut buf = [0u8; 2];
        let n = nix::unistd::read(&fd, &mut buf).expect("read on the returned socket");
        assert_eq!(&buf[..n], &b"hi"[..n], "the bytes the listener's side sent");
    }
}

graded! {
    /// An address where nothing listens (ECONNREFUSED) is skipped: the next
    /// one, which listens, is used. A refused connect is also "writable" to
    /// poll, so success must be read from SO_ERROR.
    points = 1;
    fn connect_first_skips_a_refused_address() {
        let Some((v6, v4)) = both_loopbacks() else { return };
        drop(v6);
        let refused = closed_port("::1");
        let list = [v4.local_addr().unwrap(), refused];
        let fd = run_connect_first(&list).unwrap_or_else(|e| {
            panic!("connect_first({list:?}): {refused} refuses but {} listens: {e}", list[0])
        });
        let peer = peer_of(&fd);
        assert_eq!(peer, list[0], "connect_first({list:?}) should end up at the listener");
        accepted_by(&v4, &fd);
    }
}

graded! {
    /// An address that never answers (SYNs dropped) costs one timeout, then
    /// the next address is used; the abandoned attempt's socket is closed.
    points = 2;
    fn connect_first_times_out_a_silent_address_and_moves_on() {
        let Some((v6, v4)) = both_loopbacks() else { return };
        drop(v6);
        let hole = black_hole("::1");
        let list = [v4.local_addr().unwrap(), hole.addr];
        let started = std::time::Instant::now();
        let fd = run_connect_first(&list).unwrap_or_else(|e| {
            panic!(
                "connect_first({list:?}): {} never answers (its accept queue is full, so the \
                 kernel drops the SYN), {} listens: {e}",
                hole.addr, list[0]
            )
        });
        let took = started.elapsed();
        assert_eq!(peer_of(&fd), list[0], "connect_first({list:?}) should end at the listener");
        accepted_by(&v4, &fd);
        assert!(
            took >= TRY_TIMEOUT / 2,
            "connect_first returned after {took:?}, before the timeout of {TRY_TIMEOUT:?} for the \
             silent {} could run out: was it tried at all (IPv6 first)?",
            hole.addr
        );
        let left = syn_sent_to_port(hole.addr.port());
        assert_eq!(
            left, 0,
            "{left} socket(s) of this process still in SYN_SENT to {}: close the attempt that \
             timed out before trying the next address",
            hole.addr
        );
    }
}

graded! {
    /// When nothing answers, the error names every address tried with its
    /// errno: ECONNREFUSED for a closed port, ETIMEDOUT for a silent one.
    points = 1;
    fn connect_first_error_lists_every_address_and_errno() {
        let Some((v6, v4)) = both_loopbacks() else { return };
        drop((v6, v4));
        let hole = black_hole("::1");
        let refused_v4 = closed_port("127.0.0.1");
        let refused_v6 = closed_port("::1");
        let list = [refused_v4, hole.addr, refused_v6];
        let err = match run_connect_first(&list) {
            Ok(fd) => panic!("connect_first({list:?}) returned a socket connected to {:?}", peer_of(&fd)),
            Err(e) => e.to_string(),
        };
        let names = ["ECONNREFUSED", "ETIMEDOUT"];
        for (addr, want) in [(refused_v4, "ECONNREFUSED"), (hole.addr, "ETIMEDOUT"), (refused_v6, "ECONNREFUSED")] {
            let text = addr.to_string();
            let at = err.find(&text).unwrap_or_else(|| {
                panic!("connect_first({list:?}) failed with {err:?}, which does not name {text}")
            });
            let after = &err[at + text.len()..];
            let first = names.iter().filter_map(|n| after.find(n).map(|i| (i, *n))).min();
            assert_eq!(
                first.map(|(_, n)| n),
                Some(want),
                "in {err:?}, the errno after {text} should be {want} (expected for that address)"
            );
        }
        assert!(syn_sent_to_port(hole.addr.port()) == 0, "an attempt to {} left in SYN_SENT", hole.addr);
    }
}
