//! Reading the kernel's own tables: `/proc/net/tcp` and `/proc/net/tcp6`
//! (every TCP socket, including the half-open ones no process holds yet),
//! the protocol counters in `/proc/net/netstat` and `/proc/net/snmp`, and
//! the sysctls under `/proc/sys`.
//!
//! See [`proc(5)`](https://man7.org/linux/man-pages/man5/proc_net.5.html)
//! and the kernel's `Documentation/networking/proc_net_tcp.rst`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::kit::{Error, Result};

/// One line of `/proc/net/tcp` or `/proc/net/tcp6`, decoded.
///
/// ```text
///   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
///    0: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 12345 …
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcTcpEntry {
    /// Local address and port (`local_address`).
    pub local: SocketAddr,
    /// Remote address and port (`rem_address`); `0.0.0.0:0` for a listener.
    pub remote: SocketAddr,
    /// The state number (`st`, hex in the file): see `kit::tcp::state_name`.
    pub state: u8,
    /// Bytes sent but not yet acknowledged (`tx_queue`).
    pub tx_queue: u32,
    /// Bytes received but not yet read (`rx_queue`); for a listener, the
    /// connections waiting for `accept` (the accept queue's length).
    pub rx_queue: u32,
    /// Which timer runs (`tr`): 0 none, 1 retransmit, 2 keepalive,
    /// 3 TIME_WAIT, 4 zero-window probe.
    pub timer: u8,
    /// When that timer fires, in clock ticks from now (`tm->when`, hex).
    pub timer_when: u64,
    /// Retransmissions so far (`retrnsmt`, hex): for a half-open entry
    /// (SYN_RECV), how many times its SYN-ACK timer has fired.
    pub retransmits: u32,
    /// Owner's user id (`uid`, decimal).
    pub uid: u32,
    /// Unanswered zero-window probes or keepalives (`timeout`, decimal).
    pub timeout: u32,
    /// The socket's inode (decimal): the number in `/proc/PID/fd/N ->
    /// socket:[INODE]`; 0 for an entry no process holds (SYN_RECV, TIME_WAIT).
    pub inode: u64,
}

// ANCHOR: ch05_parse_line
/// Parse one data line of `/proc/net/tcp` or `/proc/net/tcp6` (not the
/// header line).
///
/// Task: split the line on whitespace; the columns are `sl local_address
/// rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode`,
/// and lines may carry more columns after `inode` (ignore them).
/// - An address is `HEX:PORT`. The port is the port number in hex. The
///   address is the raw bytes of the IP address as the kernel keeps them
///   (network order), printed as native-endian 32-bit words, `%08X` each:
///   8 hex digits for IPv4, 32 (four words) for IPv6. So a word's bytes are
///   `u32::from_str_radix(word, 16)?.to_ne_bytes()`: on x86, 127.0.0.1
///   shows as `0100007F`.
/// - `st`, `tx_queue`, `rx_queue`, `tr`, `tm->when` and `retrnsmt` are hex;
///   `uid`, `timeout` and `inode` are decimal.
///
/// Return `Error::msg` (never panic) for a line that does not fit.
///
/// Hint: `str::split_whitespace`, `str::split_once(':')`,
/// `u32::from_str_radix`, `Ipv6Addr::from([u8; 16])`.
pub fn parse_line(line: &str) -> Result<ProcTcpEntry> {
    // BEGIN SOLUTION
    // `0100007F:1F90` → 127.0.0.1:8080; 32 hex digits for IPv6.
    fn parse_endpoint(text: &str) -> Option<SocketAddr> {
        let (hex, port) = text.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let word = |i: usize| -> Option<[u8; 4]> {
            let w = hex.get(i * 8..i * 8 + 8)?;
            Some(u32::from_str_radix(w, 16).ok()?.to_ne_bytes())
        };
        let ip = match hex.len() {
            8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
            32 => {
                let mut bytes = [0u8; 16];
                for i in 0..4 {
                    bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
                }
                IpAddr::V6(Ipv6Addr::from(bytes))
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    }

    let bad = |what: &str| Error::msg(format!("/proc/net/tcp: bad {what} in {line:?}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.len() < 10 {
        return Err(bad("line (fewer than 10 columns)"));
    }
    let local = parse_endpoint(cols[1]).ok_or_else(|| bad("local_address"))?;
    let remote = parse_endpoint(cols[2]).ok_or_else(|| bad("rem_address"))?;
    let state = u8::from_str_radix(cols[3], 16).map_err(|_| bad("st"))?;
    let (tx, rx) = cols[4]
        .split_once(':')
        .ok_or_else(|| bad("tx_queue:rx_queue"))?;
    let tx_queue = u32::from_str_radix(tx, 16).map_err(|_| bad("tx_queue"))?;
    let rx_queue = u32::from_str_radix(rx, 16).map_err(|_| bad("rx_queue"))?;
    let (tr, when) = cols[5].split_once(':').ok_or_else(|| bad("tr:tm->when"))?;
    let timer = u8::from_str_radix(tr, 16).map_err(|_| bad("tr"))?;
    let timer_when = u64::from_str_radix(when, 16).map_err(|_| bad("tm->when"))?;
    let retransmits = u32::from_str_radix(cols[6], 16).map_err(|_| bad("retrnsmt"))?;
    let uid = cols[7].parse().map_err(|_| bad("uid"))?;
    let timeout = cols[8].parse().map_err(|_| bad("timeout"))?;
    let inode = cols[9].parse().map_err(|_| bad("inode"))?;
    Ok(ProcTcpEntry {
        local,
        remote,
        state,
        tx_queue,
        rx_queue,
        timer,
        timer_when,
        retransmits,
        uid,
        timeout,
        inode,
    })
    // END SOLUTION
}
// ANCHOR_END: ch05_parse_line

/// Every entry of `/proc/net/tcp` and `/proc/net/tcp6` (a table that does
/// not exist, like `tcp6` without IPv6, is skipped).
pub fn read_tcp_table() -> Result<Vec<ProcTcpEntry>> {
    read_tcp_lines(|_| true)
}

/// The entries of both tables whose line passes `keep`, parsed.
fn read_tcp_lines(keep: impl Fn(&str) -> bool) -> Result<Vec<ProcTcpEntry>> {
    let mut entries = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::msg(format!("read {table}: {e}"))),
        };
        for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            if keep(line) {
                entries.push(parse_line(line)?);
            }
        }
    }
    Ok(entries)
}

/// The entries whose local or remote port is `port`: a listener on `port`,
/// its half-open and accepted connections, and the clients talking to it.
///
/// The table lists every TCP socket of the namespace, TIME_WAIT included:
/// tens of thousands of lines on a busy machine. Only lines that mention
/// `:PORT ` (an address's port, in hex, then a space) are parsed, so a
/// server that looks every half second stays cheap.
pub fn entries_on_port(port: u16) -> Result<Vec<ProcTcpEntry>> {
    let mark = format!(":{port:04X} ");
    Ok(read_tcp_lines(|line| line.contains(&mark))?
        .into_iter()
        .filter(|e| e.local.port() == port || e.remote.port() == port)
        .collect())
}

/// The entry for the connection from `local` to `remote`, if there is one.
pub fn find_connection(local: SocketAddr, remote: SocketAddr) -> Result<Option<ProcTcpEntry>> {
    Ok(read_tcp_table()?
        .into_iter()
        .find(|e| e.local == local && e.remote == remote))
}

impl ProcTcpEntry {
    /// This entry as one `ss -tan`-style line:
    /// `SYN-RECV 0 0 127.0.0.1:40001 127.0.0.1:51234 retrans=2`.
    pub fn ss_line(&self) -> String {
        format!(
            "{:<12} {:>6} {:>6}  {:<21} {:<21} timer={} retrans={}",
            crate::kit::tcp::state_name(self.state),
            self.rx_queue,
            self.tx_queue,
            self.local,
            self.remote,
            timer_name(self.timer),
            self.retransmits
        )
    }
}

/// The name of `/proc/net/tcp`'s `tr` column.
pub fn timer_name(timer: u8) -> &'static str {
    match timer {
        0 => "off",
        1 => "on",
        2 => "keepalive",
        3 => "timewait",
        4 => "probe",
        _ => "?",
    }
}

/// The header line for [`ProcTcpEntry::ss_line`].
pub const SS_HEADER: &str = "State        Recv-Q Send-Q  Local Address:Port    Peer Address:Port";

/// Protocol counters from `/proc/net/netstat` and `/proc/net/snmp`, keyed
/// `"TcpExt:ListenOverflows"`, `"Tcp:RetransSegs"`, … Each file holds pairs
/// of lines: a header line of names, then a line of values, both starting
/// with the same `Prefix:`. The counters count since boot, for the whole
/// network namespace (other programs add to them too).
pub fn read_counters() -> Result<BTreeMap<String, u64>> {
    let mut counters = BTreeMap::new();
    for file in ["/proc/net/netstat", "/proc/net/snmp"] {
        let text =
            std::fs::read_to_string(file).map_err(|e| Error::msg(format!("read {file}: {e}")))?;
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            let (Some((prefix, names)), Some((_, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                continue;
            };
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                if let Ok(v) = value.parse::<i64>() {
                    counters.insert(format!("{prefix}:{name}"), v.max(0) as u64);
                }
            }
        }
    }
    Ok(counters)
}

/// A before/after pair of counter readings.
#[derive(Debug, Clone)]
pub struct CounterDelta {
    before: BTreeMap<String, u64>,
}

impl CounterDelta {
    /// Read the counters now, to compare with later.
    pub fn start() -> Result<CounterDelta> {
        Ok(CounterDelta {
            before: read_counters()?,
        })
    }

    /// How much each of `names` rose since [`CounterDelta::start`]:
    /// `(name, before, after)`. A counter this kernel lacks is left out.
    pub fn rises(&self, names: &[&str]) -> Result<Vec<(String, u64, u64)>> {
        let after = read_counters()?;
        Ok(names
            .iter()
            .filter_map(|n| {
                let b = *self.before.get(*n)?;
                let a = *after.get(*n)?;
                Some((n.to_string(), b, a))
            })
            .collect())
    }
}

/// Read a sysctl as text, e.g. `sysctl("net/core/somaxconn")`.
pub fn sysctl(path: &str) -> Result<String> {
    let file = format!("/proc/sys/{path}");
    std::fs::read_to_string(&file)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::msg(format!("read {file}: {e}")))
}

/// Read a numeric sysctl; `None` if this kernel does not have it.
pub fn sysctl_num(path: &str) -> Option<i64> {
    sysctl(path).ok()?.parse().ok()
}

/// `net.ipv4.tcp_synack_retries` → `net/ipv4/tcp_synack_retries`, printed
/// the way `sysctl` prints it.
pub fn show_sysctl(path: &str) -> String {
    let name = path.replace('/', ".");
    match sysctl(path) {
        Ok(v) => format!("{name} = {v}"),
        Err(_) => format!("{name}: not on this kernel"),
    }
}
