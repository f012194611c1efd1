//! Run one test's body in a private user + network namespace.
//!
//! A test binary has many threads, and the kernel refuses
//! `unshare(CLONE_NEWUSER)` to a multithreaded process. So
//! [`in_private_netns`] runs the test binary again, as a child that entered
//! the namespace between `fork` and `exec`
//! ([`sockbook::kit::netns::enter_before_exec`]), asking it for just this
//! test (`--exact NAME`); an environment variable tells the child to run the
//! body instead of starting yet another child. The parent waits (with a
//! deadline) and fails with the child's output if the child failed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Background;

/// Set in the child: the name of the test it is to run inside the namespace.
const CHILD: &str = "SOCKBOOK_NETNS_CHILD";

/// How long the child may take: its own test deadline plus room to start.
const CHILD_LIMIT: Duration = Duration::from_secs(40);

/// Run `body` inside a private user + network namespace, in a child process.
/// Where the machine refuses one, report the test skipped and return
/// (`support::skip`). Call it from the test's own thread (a `#[test]` or
/// `graded!` body): it finds the test by that thread's name.
pub fn in_private_netns(body: impl FnOnce()) {
    let name = std::thread::current()
        .name()
        .expect("in_private_netns: call it from the test's own thread")
        .to_string();
    if std::env::var(CHILD).as_deref() == Ok(name.as_str()) {
        return body(); // we are the child, already inside
    }
    if let Some(why) = sockbook::kit::lab::refusal() {
        return super::skip(why);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(&exe);
    command
        .args([&name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sockbook::kit::netns::enter_before_exec(&mut command);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {} in a private namespace: {e}", exe.display()));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let stderr = Background::spawn("child stderr", move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let stdout = Background::spawn("child stdout", move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stdout = match stdout.done.recv_timeout(CHILD_LIMIT) {
        Ok(Ok(s)) => s,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name}: the child in a private namespace did not finish within {} s",
                CHILD_LIMIT.as_secs()
            );
        }
    };
    let stderr = stderr.join_within(super::DEADLINE, "child stderr");
    let status = child.wait().expect("wait for the namespace child");
    // An exact filter that matches nothing also exits 0: insist on 1 passed.
    assert!(
        status.success() && stdout.contains("1 passed"),
        "{name} (run in a private user+network namespace: {} {name} --exact, \
         env {CHILD}={name}) failed: {status}\n--- its stdout ---\n{stdout}\n--- its stderr ---\n{stderr}",
        exe.display()
    );
    // Show the child's own narration under the parent's test.
    print!("{stdout}");
    eprint!("{stderr}");
}
