//! Namespaced labs: several "machines" inside one program, each a network
//! namespace of its own, wired together with veth pairs.
//!
//! A lesson that needs more than one machine (a peer that vanishes, multicast
//! between two hosts, traceroute over a chain of routers) builds them here:
//!
//! ```no_run
//! use sockbook::kit::{lab::Lab, netns};
//! # fn main() -> sockbook::kit::Result<()> {
//! netns::enter_private_netns()?;          // first, while single-threaded
//! let lab = Lab::new()?;
//! let a = lab.host("a")?;
//! let r = lab.router("r")?;                // a host that forwards
//! let b = lab.host("b")?;
//! let ar = lab.link(&a, "10.0.1.1/24", &r, "10.0.1.254/24")?;
//! lab.link(&r, "10.0.2.254/24", &b, "10.0.2.1/24")?;
//! lab.route(&a, "default", "10.0.1.254")?;
//! lab.route(&b, "default", "10.0.2.254")?;
//! let sock = a.run(|| std::net::UdpSocket::bind("10.0.1.1:0"))?
//!     .map_err(|e| sockbook::kit::Error::msg(format!("bind: {e}")))?;
//! lab.set_down(&r, &ar)?;                  // r's end of the a–r cable goes dark
//! # Ok(()) }
//! ```
//!
//! | call | what it does |
//! |---|---|
//! | [`Lab::new`] | check we may build one (`ip` present, `CAP_NET_ADMIN` here) |
//! | [`Lab::host`] / [`Lab::router`] | a new network namespace with `lo` up (a router also forwards) |
//! | [`Lab::link`] | a veth pair between two nodes, an address on each end, both up |
//! | [`Lab::route`] | `ip route replace DEST via GATEWAY` in a node |
//! | [`Lab::set_down`] / [`Lab::set_up`] | take one end of a link down (the peer vanishes) and back |
//! | [`Node::run`] | run a closure on a thread inside the node's namespace, wait for it |
//! | [`Node::spawn`] | the same in the background (a server), returns its `JoinHandle` |
//! | [`Node::ip`] | run the `ip` command inside the node, return its output |
//!
//! ## How it works
//! - **The lab lives in a private user + network namespace**
//!   ([`crate::kit::netns`]). There the program is "root" with
//!   `CAP_NET_ADMIN`, so it may create namespaces and interfaces, yet
//!   everything it creates is invisible to the rest of the machine and
//!   vanishes when the program exits. The addresses a lab uses are
//!   private-range (`10.x`, RFC 1918) and exist *only* inside these
//!   namespaces: no packet of a lab ever reaches a real network.
//! - **A node is a network namespace, kept alive by a file descriptor.**
//!   [`Lab::host`] starts a thread that calls
//!   [`unshare(CLONE_NEWNET)`](https://man7.org/linux/man-pages/man2/unshare.2.html)
//!   (a thread may change its own network namespace, unlike its user
//!   namespace), opens `/proc/thread-self/ns/net` and exits; the open fd keeps
//!   the namespace alive. [`Node::run`] starts a thread that joins the
//!   namespace with [`setns(2)`](https://man7.org/linux/man-pages/man2/setns.2.html)
//!   and runs your closure there.
//! - **A socket belongs to the namespace it was created in**, not to the
//!   thread that later uses it: create it inside [`Node::run`], return it,
//!   and use it from anywhere.
//! - **Wiring uses iproute2's `ip` command**, run from a thread inside the
//!   node (a child process starts in its parent thread's namespaces):
//!   `ip link add NAME type veth peer name PEER netns /proc/PID/fd/N`
//!   creates the cable with its far end already in the other node.
//!   See [`ip-link(8)`](https://man7.org/linux/man-pages/man8/ip-link.8.html)
//!   and [`veth(4)`](https://man7.org/linux/man-pages/man4/veth.4.html).
//! - **Taking an end down** (`ip link set NAME down`) makes the veth drop
//!   every packet sent towards it, silently: the far side sees no reset, no
//!   ICMP, nothing, just as when a cable is cut or a peer loses power. Taking
//!   it down also deletes the routes through it, so [`Lab::set_up`] puts the
//!   node's routes back.
//!
//! ## Where it runs
//! Inside the private namespace only: a binary calls
//! [`crate::kit::netns::enter_private_netns`] first thing in `main`; a test
//! runs its body in a child process that entered it before `exec`
//! (`support::in_private_netns` in `tests/support`, built on
//! [`crate::kit::netns::enter_before_exec`]). Where the machine refuses
//! one, [`refusal`] says why in one line and the lesson skips.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::Mutex;
use std::thread::JoinHandle;

use nix::sched::{CloneFlags, setns, unshare};

use crate::kit::{Call, Error, Result};

/// Why a lab cannot be built here, in one line; `None` when it can: no
/// private user + network namespace ([`crate::kit::netns::refusal`]), or no
/// `ip` command (install iproute2).
pub fn refusal() -> Option<&'static str> {
    if let Some(why) = crate::kit::netns::refusal() {
        return Some(why);
    }
    if ip_command().is_none() {
        return Some(
            "no `ip` command (iproute2) here: the lab wires its namespaces with it; \
             install it (e.g. `apt-get install iproute2`)",
        );
    }
    None
}

/// Where iproute2's `ip` is, if anywhere we look.
fn ip_command() -> Option<&'static str> {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// A set of nodes and the cables between them.
pub struct Lab {
    ip: &'static str,
    /// Interface names already used, per node: `(node, interface)`.
    names: Mutex<HashSet<(String, String)>>,
}

/// A host or a router: one network namespace.
pub struct Node {
    name: String,
    ip: &'static str,
    netns: OwnedFd,
    /// Routes added with [`Lab::route`], put back by [`Lab::set_up`].
    routes: Mutex<Vec<(String, String)>>,
}

/// One veth pair: an interface in each of two nodes.
#[derive(Clone, Debug)]
pub struct Link {
    /// `(node name, interface name, address/prefix)` of the first end.
    pub a: (String, String, String),
    /// The same for the second end.
    pub b: (String, String, String),
}

impl Link {
    /// The name of this link's interface inside `node`.
    pub fn interface_in(&self, node: &Node) -> Result<&str> {
        if self.a.0 == node.name {
            Ok(&self.a.1)
        } else if self.b.0 == node.name {
            Ok(&self.b.1)
        } else {
            Err(Error::msg(format!(
                "link {}–{} does not reach node {}",
                self.a.0, self.b.0, node.name
            )))
        }
    }
}

impl Lab {
    /// Check that a lab can be built here: `ip` exists and this thread may
    /// create a network namespace (it has `CAP_NET_ADMIN`, e.g. after
    /// [`crate::kit::netns::enter_private_netns`]).
    pub fn new() -> Result<Lab> {
        let ip = ip_command().ok_or_else(|| Error::msg(refusal().unwrap_or("no `ip` command")))?;
        // Try once on a throw-away thread: the clearest error comes early.
        std::thread::spawn(|| unshare(CloneFlags::CLONE_NEWNET).call("unshare(CLONE_NEWNET)"))
            .join()
            .map_err(|_| Error::msg("lab probe thread panicked"))?
            .map_err(|e| {
                Error::msg(format!(
                    "{e}: a lab runs inside a private user+network namespace; \
                     call kit::netns::enter_private_netns() first"
                ))
            })?;
        Ok(Lab {
            ip,
            names: Mutex::new(HashSet::new()),
        })
    }

    /// A new node named `name` (short: it names interfaces): a fresh network
    /// namespace with only `lo`, which is brought up.
    pub fn host(&self, name: &str) -> Result<Node> {
        if name.is_empty() || name.len() > 6 || name.contains(['-', '/', ' ']) {
            return Err(Error::msg(format!(
                "node name {name:?}: 1 to 6 characters, no '-', '/' or space \
                 (interface names are NODE-PEER and at most 15 characters)"
            )));
        }
        let netns = std::thread::spawn(|| -> Result<OwnedFd> {
            unshare(CloneFlags::CLONE_NEWNET).call("unshare(CLONE_NEWNET)")?;
            crate::kit::netns::interface_up("lo")?;
            std::fs::File::open("/proc/thread-self/ns/net")
                .map(OwnedFd::from)
                .map_err(|e| Error::msg(format!("open /proc/thread-self/ns/net: {e}")))
        })
        .join()
        .map_err(|_| Error::msg("node thread panicked"))??;
        Ok(Node {
            name: name.to_string(),
            ip: self.ip,
            netns,
            routes: Mutex::new(Vec::new()),
        })
    }

    /// A host that forwards packets between its interfaces: it writes `1` to
    /// `/proc/sys/net/ipv4/ip_forward` inside its namespace (the sysctl is
    /// per network namespace; see
    /// [ip-sysctl](https://docs.kernel.org/networking/ip-sysctl.html)).
    pub fn router(&self, name: &str) -> Result<Node> {
        let node = self.host(name)?;
        node.run(|| {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|e| Error::msg(format!("write 1 to /proc/sys/net/ipv4/ip_forward: {e}")))
        })??;
        Ok(node)
    }

    /// Join `a` and `b` with a veth pair: interface `A-B` in `a` with
    /// address `a_addr` (e.g. `"10.0.0.1/24"`), `B-A` in `b` with `b_addr`,
    /// both up. The prefix adds the connected route on each side.
    pub fn link(&self, a: &Node, a_addr: &str, b: &Node, b_addr: &str) -> Result<Link> {
        let a_if = self.fresh_name(a, b)?;
        let b_if = self.fresh_name(b, a)?;
        // The far end is created straight inside b: `netns` takes a path to
        // a namespace file, and our fd to b's namespace is one.
        let b_path = format!("/proc/{}/fd/{}", std::process::id(), b.netns.as_raw_fd());
        a.ip(&[
            "link", "add", "name", &a_if, "type", "veth", "peer", "name", &b_if, "netns", &b_path,
        ])?;
        a.ip(&["addr", "add", a_addr, "dev", &a_if])?;
        b.ip(&["addr", "add", b_addr, "dev", &b_if])?;
        a.ip(&["link", "set", &a_if, "up"])?;
        b.ip(&["link", "set", &b_if, "up"])?;
        Ok(Link {
            a: (a.name.clone(), a_if, a_addr.to_string()),
            b: (b.name.clone(), b_if, b_addr.to_string()),
        })
    }

    /// In `node`: send packets for `dest` (`"10.0.2.0/24"` or `"default"`)
    /// to the neighbour `via` (`ip route replace DEST via VIA`).
    pub fn route(&self, node: &Node, dest: &str, via: &str) -> Result<()> {
        node.ip(&["route", "replace", dest, "via", via])?;
        node.routes
            .lock()
            .map_err(|_| Error::msg("routes lock poisoned"))?
            .push((dest.to_string(), via.to_string()));
        Ok(())
    }

    /// Take `node`'s end of `link` down (`ip link set NAME down`): from now
    /// on every packet either side sends over the link is dropped silently,
    /// as if the cable were cut. The sockets in `node` live on, unaware.
    pub fn set_down(&self, node: &Node, link: &Link) -> Result<()> {
        node.ip(&["link", "set", link.interface_in(node)?, "down"])?;
        Ok(())
    }

    /// Bring `node`'s end of `link` back up, and put back the node's routes
    /// (taking an interface down deleted those through it).
    pub fn set_up(&self, node: &Node, link: &Link) -> Result<()> {
        node.ip(&["link", "set", link.interface_in(node)?, "up"])?;
        let routes = node
            .routes
            .lock()
            .map_err(|_| Error::msg("routes lock poisoned"))?
            .clone();
        for (dest, via) in routes {
            node.ip(&["route", "replace", &dest, "via", &via])?;
        }
        Ok(())
    }

    /// `NODE-PEER`, or `NODE-PEER2`, … when the pair already has a link.
    fn fresh_name(&self, node: &Node, peer: &Node) -> Result<String> {
        let mut names = self
            .names
            .lock()
            .map_err(|_| Error::msg("names lock poisoned"))?;
        let base = format!("{}-{}", node.name, peer.name);
        let mut name = base.clone();
        let mut n = 2;
        while names.contains(&(node.name.clone(), name.clone())) {
            name = format!("{base}{n}");
            n += 1;
        }
        names.insert((node.name.clone(), name.clone()));
        Ok(name)
    }
}

impl Node {
    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `body` on a new thread inside this node's network namespace and
    /// wait for its result. Sockets it creates belong to this node. A panic
    /// in `body` is re-raised here (so a test's assertion message survives).
    pub fn run<T: Send>(&self, body: impl FnOnce() -> T + Send) -> Result<T> {
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<T> {
                    self.enter()?;
                    Ok(body())
                })
                .join()
        });
        match outcome {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Run `body` in the background inside this node's namespace (a server,
    /// say); join the handle for its result. A failure to enter the
    /// namespace is the thread's `Err`.
    pub fn spawn<T: Send + 'static>(
        &self,
        body: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<Result<T>>> {
        let netns = self
            .netns
            .try_clone()
            .map_err(|e| Error::msg(format!("dup the namespace fd of {}: {e}", self.name)))?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("lab node {name}"))
            .spawn(move || -> Result<T> {
                setns(&netns, CloneFlags::CLONE_NEWNET)
                    .call(format_args!("setns(netns of {name}, CLONE_NEWNET)"))?;
                Ok(body())
            })
            .map_err(|e| Error::msg(format!("spawn a thread for {}: {e}", self.name)))
    }

    /// Run `ip ARGS…` inside this node (e.g. `&["-br", "addr"]`) and return
    /// its standard output; an error carries the command and its stderr.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let ip = self.ip;
        let output = self.run(|| Command::new(ip).args(args).output())?;
        let shown = format!("[{}] ip {}", self.name, args.join(" "));
        let output = output.map_err(|e| Error::msg(format!("{shown}: {e}")))?;
        if !output.status.success() {
            return Err(Error::msg(format!(
                "{shown}: {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Move the calling thread into this node's network namespace.
    fn enter(&self) -> Result<()> {
        setns(&self.netns, CloneFlags::CLONE_NEWNET)
            .call(format_args!("setns(netns of {}, CLONE_NEWNET)", self.name))
    }
}
