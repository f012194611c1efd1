//! Private user + network namespaces: the one place that decides whether a
//! lesson can have its own network stack, enters it, and explains a refusal.
//!
//! Some lessons need privileges a learner does not have: a packet socket
//! (`CAP_NET_RAW`), a veth pair or a firewall rule (`CAP_NET_ADMIN`). An
//! unprivileged process can often get both inside a *private user + network
//! namespace*
//! ([`user_namespaces(7)`](https://man7.org/linux/man-pages/man7/user_namespaces.7.html),
//! [`network_namespaces(7)`](https://man7.org/linux/man-pages/man7/network_namespaces.7.html)):
//! it becomes "root" of a brand-new network stack with its own `lo` and
//! nothing else, so whatever it does there touches no other program.
//!
//! Many machines refuse this: Ubuntu 24.04 restricts unprivileged user
//! namespaces through AppArmor, some kernels turn them off with a sysctl,
//! and container runtimes (Gradescope's among them) forbid `unshare` with a
//! seccomp filter. [`refusal`] finds out once per process, without changing
//! the calling process, and says in one line which setting refused and how
//! to allow it. A lesson then skips just that part with that line; a graded
//! test reports itself skipped (`support::skip`), never passed or failed.

use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use nix::sys::socket;

use crate::kit::{Call, Error, Result};

/// `unshare(CLONE_NEWUSER | CLONE_NEWNET)`, map our uid and gid to 0 inside,
/// and bring the new namespace's `lo` up. Single-threaded callers only:
/// the kernel refuses `CLONE_NEWUSER` (EINVAL) in a multithreaded process,
/// so call it in `main` before any thread starts, or in a forked child.
pub fn enter_private_netns() -> Result<()> {
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: unshare takes flags only; the kernel refuses (EINVAL) if the
    // process has more than one thread, which we report.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == -1 {
        return Err(Error::last_os("unshare(CLONE_NEWUSER|CLONE_NEWNET)"));
    }
    let write = |file: &str, text: String| {
        std::fs::write(file, &text).map_err(|e| Error::msg(format!("write {file} {text:?}: {e}")))
    };
    // setgroups must be denied before an unprivileged process may write gid_map.
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    interface_up("lo")
}

/// `ioctl(SIOCGIFFLAGS)`, set `IFF_UP`, `ioctl(SIOCSIFFLAGS)`: what
/// `ip link set NAME up` does (it uses netlink; the ioctl is the older way).
pub fn interface_up(name: &str) -> Result<()> {
    let fd = socket::socket(
        socket::AddressFamily::Inet,
        socket::SockType::Datagram,
        socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .call("socket(AF_INET, SOCK_DGRAM, 0)")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(Error::msg(format!("interface name too long: {name}")));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads and writes one ifreq, which we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } == -1 {
        return Err(Error::last_os(format!("ioctl({name}, SIOCGIFFLAGS)")));
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads one ifreq, which we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } == -1 {
        return Err(Error::last_os(format!(
            "ioctl({name}, SIOCSIFFLAGS, IFF_UP)"
        )));
    }
    Ok(())
}

/// Make `command` start inside a new private user + network namespace: in
/// the forked child, before `exec`, do what [`enter_private_netns`] does.
///
/// This is how a multithreaded program (a test binary, say) gets a
/// single-threaded process into a namespace: right after `fork` the child
/// has one thread, so `unshare(CLONE_NEWUSER)` is allowed there, and the
/// program it then `exec`s starts inside the namespace. Only
/// async-signal-safe calls run in the child (`unshare`, `open`, `write`,
/// `socket`, `ioctl`) on strings prepared here. Check [`refusal`] first:
/// where it refuses, spawning `command` fails with the errno.
pub fn enter_before_exec(command: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("0 {uid} 1");
    let gid_map = format!("0 {gid} 1");
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions on memory prepared before the fork.
    unsafe {
        command.pre_exec(move || match child_try_namespace(&uid_map, &gid_map) {
            0 => Ok(()),
            code => Err(std::io::Error::from_raw_os_error(code >> 3)),
        })
    }
}

/// Why this machine refuses a private user + network namespace, in one line
/// that names the setting and how to allow it; `None` when it allows one.
///
/// Checked once per process, in a forked child that tries the whole of
/// [`enter_private_netns`] and exits, so the caller stays where it is and
/// may have threads. The answer is cached.
pub fn refusal() -> Option<&'static str> {
    static ANSWER: OnceLock<Option<String>> = OnceLock::new();
    ANSWER.get_or_init(probe).as_deref()
}

/// The step of [`enter_private_netns`] that failed in the probe child, as an
/// exit code: 0 all went well.
const STEPS: [&str; 5] = [
    "ok",
    "unshare(CLONE_NEWUSER|CLONE_NEWNET)",
    "write /proc/self/uid_map",
    "bring lo up (ioctl SIOCSIFFLAGS)",
    "fork",
];

fn probe() -> Option<String> {
    // Everything the child needs is prepared before fork: after fork in a
    // multithreaded process only async-signal-safe calls are allowed, so the
    // child allocates nothing.
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("0 {uid} 1");
    let gid_map = format!("0 {gid} 1");
    // SAFETY: fork has no preconditions; the child below calls only
    // async-signal-safe functions (unshare, open, write, close, socket,
    // ioctl, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Some(format!("{}: {}", STEPS[4], std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above: async-signal-safe calls on memory we own.
        unsafe { libc::_exit(child_try_namespace(&uid_map, &gid_map)) };
    }
    let mut status = 0;
    // SAFETY: waits for the child we just forked; status is ours.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    if waited != pid || !libc::WIFEXITED(status) {
        return Some("the namespace probe child did not exit normally".into());
    }
    let code = libc::WEXITSTATUS(status);
    if code == 0 {
        return None;
    }
    let step = STEPS.get((code & 0x07) as usize).copied().unwrap_or("?");
    let errno = nix::errno::Errno::from_raw(code >> 3);
    Some(explain(step, errno))
}

/// In the forked child: try each step; the exit code is the failed step in
/// the low 3 bits and its errno (up to 31) in the 5 bits above them.
fn child_try_namespace(uid_map: &str, gid_map: &str) -> i32 {
    let fail = |step: i32| {
        let errno = nix::errno::Errno::last_raw();
        step | (errno.clamp(0, 31) << 3)
    };
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == -1 {
        return fail(1);
    }
    let write = |path: &core::ffi::CStr, text: &str| -> bool {
        // SAFETY: path is NUL-terminated; text is a live buffer of its length.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd == -1 {
                return false;
            }
            let n = libc::write(fd, text.as_ptr().cast(), text.len());
            libc::close(fd);
            n == text.len() as isize
        }
    };
    if !write(c"/proc/self/setgroups", "deny")
        || !write(c"/proc/self/uid_map", uid_map)
        || !write(c"/proc/self/gid_map", gid_map)
    {
        return fail(2);
    }
    // SAFETY: socket/ioctl on an ifreq we own; nothing allocates.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        if fd == -1 || libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == -1 {
            return fail(3);
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) == -1 {
            return fail(3);
        }
    }
    0
}

/// Read a sysctl as a number, if it exists.
fn sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// One line: what refused, the setting responsible, and how to allow it.
fn explain(step: &str, errno: nix::errno::Errno) -> String {
    let setting = if sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        "kernel.apparmor_restrict_unprivileged_userns=1 (AppArmor); allow with \
         `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (in a GitHub \
         workflow, a step that runs it; `make classroom` writes one)"
            .to_string()
    } else if sysctl("/proc/sys/user/max_user_namespaces") == Some(0) {
        "user.max_user_namespaces=0; allow with `sudo sysctl -w user.max_user_namespaces=10000`"
            .to_string()
    } else if sysctl("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        "kernel.unprivileged_userns_clone=0; allow with \
         `sudo sysctl -w kernel.unprivileged_userns_clone=1`"
            .to_string()
    } else {
        "probably a container's seccomp filter; run with unshare allowed \
         (e.g. `docker run --security-opt seccomp=unconfined`) or as root"
            .to_string()
    };
    format!("no private user+network namespace here ({step}: {errno}): {setting}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_stable_and_one_line() {
        let first = refusal();
        assert_eq!(first, refusal(), "refusal() must be cached");
        if let Some(why) = first {
            assert!(!why.contains('\n'), "one line: {why}");
        }
    }
}
