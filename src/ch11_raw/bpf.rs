//! Classic BPF: a filter the kernel runs on every packet before it reaches
//! a packet socket, so a capture program sees only what it asked for.
//! A program is a list of instructions
//! ([`libc::sock_filter`]: `code`, jump-if-true `jt`, jump-if-false `jf`,
//! constant `k`) for a tiny machine with an accumulator `A` and an index
//! register `X`. It ends by returning how many bytes of the packet to keep:
//! 0 drops it. Attached with `setsockopt(SO_ATTACH_FILTER)`; see
//! [`socket(7)`](https://man7.org/linux/man-pages/man7/socket.7.html) and the
//! kernel's `Documentation/networking/filter.rst`.
//!
//! Here a filter is written in a small language, like tcpdump's:
//!
//! ```text
//! expr    := term ("or" term)*
//! term    := factor ("and" factor)*
//! factor  := "not" factor | "(" expr ")" | primitive
//! primitive := "tcp" | "udp" | "icmp"
//!            | ["src" | "dst"] "host" A.B.C.D
//!            | ["src" | "dst"] "port" N        (TCP or UDP, first fragment)
//! ```
//!
//! [`parse_filter`] turns text into an [`Expr`]; [`compile`] (the
//! assignment) turns that into instructions for packets that start at the
//! IPv4 header (a `SOCK_DGRAM` packet socket); [`for_ethernet`] adapts a
//! program to frames with a 14-byte Ethernet header (a `SOCK_RAW` one, and
//! what `tcpdump -dd` prints).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::kit::{Error, Result};

/// Which address or port a primitive looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
    /// Either one (tcpdump's plain `host` and `port`).
    Either,
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// IP protocol number: 6 tcp, 17 udp, 1 icmp.
    Proto(u8),
    Host(Dir, Ipv4Addr),
    /// A TCP or UDP port, in a packet that is not a later fragment.
    Port(Dir, u16),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// One instruction.
pub type Insn = libc::sock_filter;

/// Bytes to keep of an accepted packet (all of any IPv4 packet).
pub const ACCEPT_LEN: u32 = 0x40000;

// Opcode pieces (`linux/filter.h`), as u16 for sock_filter.code.
const LD: u16 = libc::BPF_LD as u16;
const LDX: u16 = libc::BPF_LDX as u16;
const JMP: u16 = libc::BPF_JMP as u16;
const RET: u16 = libc::BPF_RET as u16;
const W: u16 = libc::BPF_W as u16;
const H: u16 = libc::BPF_H as u16;
const B: u16 = libc::BPF_B as u16;
const ABS: u16 = libc::BPF_ABS as u16;
const IND: u16 = libc::BPF_IND as u16;
const MSH: u16 = libc::BPF_MSH as u16;
const JEQ: u16 = libc::BPF_JEQ as u16;
const JSET: u16 = libc::BPF_JSET as u16;
const K: u16 = libc::BPF_K as u16;

/// `A = u8 at [k]`, `A = u16 at [k]`, `A = u32 at [k]` (big-endian loads).
pub fn ld_b(k: u32) -> Insn {
    stmt(LD | B | ABS, k)
}
pub fn ld_h(k: u32) -> Insn {
    stmt(LD | H | ABS, k)
}
pub fn ld_w(k: u32) -> Insn {
    stmt(LD | W | ABS, k)
}
/// `A = u16 at [X + k]`.
pub fn ld_h_ind(k: u32) -> Insn {
    stmt(LD | H | IND, k)
}
/// `X = 4 * (u8 at [k] & 0xf)`: the IPv4 header length, in one instruction.
pub fn ldx_msh(k: u32) -> Insn {
    stmt(LDX | B | MSH, k)
}
/// `return k` (bytes to keep; 0 drops).
pub fn ret(k: u32) -> Insn {
    stmt(RET | K, k)
}
/// `if A == k goto +jt else goto +jf` (offsets count from the next
/// instruction).
pub fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
    jump(JMP | JEQ | K, k, jt, jf)
}
/// `if A & k != 0 goto +jt else goto +jf`.
pub fn jset(k: u32, jt: u8, jf: u8) -> Insn {
    jump(JMP | JSET | K, k, jt, jf)
}
/// The opcodes of the jumps [`compile`] emits.
pub const JEQ_K: u16 = JMP | JEQ | K;
pub const JSET_K: u16 = JMP | JSET | K;

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

// ANCHOR: ch11_compile
/// Compile `expr` to a classic BPF program for packets that start at the
/// IPv4 header: it returns [`ACCEPT_LEN`] for a packet `expr` accepts and
/// 0 for any other.
///
/// The classic way is to compile each node for two destinations, "where to
/// go if true" and "where to go if false", as *labels*, and fill in the jump
/// offsets once every label's position is known:
/// - `tcp`/`udp`/`icmp`: `ld_b(9)` (the protocol byte), `jeq(proto)`.
/// - `src host A`: `ld_w(12)`, `jeq(u32::from(A))`; `dst host`: offset 16;
///   plain `host`: source, and if not, destination.
/// - `port N`: the protocol must be 6 or 17; the packet must not be a later
///   fragment (`ld_h(6)`, `jset(0x1fff)` → false); then `ldx_msh(0)` puts
///   the IPv4 header length in X, and `ld_h_ind(0)` / `ld_h_ind(2)` load
///   the source / destination port wherever the header ends (IHL may be
///   more than 5).
/// - `a and b`: compile `a` with (true → the start of `b`, false → false),
///   then `b` with the outer destinations. `a or b`: `a` with (true → true,
///   false → the start of `b`). `not a`: `a` with the two swapped.
/// - End with two returns: `ret(ACCEPT_LEN)` and `ret(0)`.
/// - A jump's `jt`/`jf` is the number of instructions to *skip*: target
///   index − (this index + 1). It must fit in a `u8`; return an error if not.
pub fn compile(expr: &Expr) -> Result<Vec<Insn>> {
    // BEGIN SOLUTION
    // Instructions with symbolic jump targets; labels resolved at the end.
    enum Op {
        Plain(Insn),
        Jump {
            code: u16,
            k: u32,
            t: usize,
            f: usize,
        },
        Label(usize),
    }
    struct Gen {
        ops: Vec<Op>,
        labels: usize,
    }
    impl Gen {
        fn label(&mut self) -> usize {
            self.labels += 1;
            self.labels - 1
        }
        fn test(&mut self, load: Insn, code: u16, k: u32, t: usize, f: usize) {
            self.ops.push(Op::Plain(load));
            self.ops.push(Op::Jump { code, k, t, f });
        }
        fn expr(&mut self, e: &Expr, t: usize, f: usize) {
            match e {
                Expr::Proto(p) => self.test(ld_b(9), JEQ_K, u32::from(*p), t, f),
                Expr::Host(dir, a) => {
                    let a = u32::from(*a);
                    match dir {
                        Dir::Src => self.test(ld_w(12), JEQ_K, a, t, f),
                        Dir::Dst => self.test(ld_w(16), JEQ_K, a, t, f),
                        Dir::Either => {
                            let next = self.label();
                            self.test(ld_w(12), JEQ_K, a, t, next);
                            self.ops.push(Op::Label(next));
                            self.test(ld_w(16), JEQ_K, a, t, f);
                        }
                    }
                }
                Expr::Port(dir, n) => {
                    let (tcp_or_udp, udp, not_frag) = (self.label(), self.label(), self.label());
                    self.test(ld_b(9), JEQ_K, 6, tcp_or_udp, udp);
                    self.ops.push(Op::Label(udp));
                    self.ops.push(Op::Jump {
                        code: JEQ_K,
                        k: 17,
                        t: tcp_or_udp,
                        f,
                    });
                    self.ops.push(Op::Label(tcp_or_udp));
                    self.test(ld_h(6), JSET_K, 0x1fff, f, not_frag);
                    self.ops.push(Op::Label(not_frag));
                    self.ops.push(Op::Plain(ldx_msh(0)));
                    let n = u32::from(*n);
                    match dir {
                        Dir::Src => self.test(ld_h_ind(0), JEQ_K, n, t, f),
                        Dir::Dst => self.test(ld_h_ind(2), JEQ_K, n, t, f),
                        Dir::Either => {
                            let next = self.label();
                            self.test(ld_h_ind(0), JEQ_K, n, t, next);
                            self.ops.push(Op::Label(next));
                            self.test(ld_h_ind(2), JEQ_K, n, t, f);
                        }
                    }
                }
                Expr::And(a, b) => {
                    let mid = self.label();
                    self.expr(a, mid, f);
                    self.ops.push(Op::Label(mid));
                    self.expr(b, t, f);
                }
                Expr::Or(a, b) => {
                    let mid = self.label();
                    self.expr(a, t, mid);
                    self.ops.push(Op::Label(mid));
                    self.expr(b, t, f);
                }
                Expr::Not(a) => self.expr(a, f, t),
            }
        }
    }
    let mut g = Gen {
        ops: Vec::new(),
        labels: 2,
    };
    let (accept, reject) = (0, 1);
    g.expr(expr, accept, reject);
    g.ops.push(Op::Label(accept));
    g.ops.push(Op::Plain(ret(ACCEPT_LEN)));
    g.ops.push(Op::Label(reject));
    g.ops.push(Op::Plain(ret(0)));
    // Where each label lands, counting only real instructions.
    let mut at = vec![usize::MAX; g.labels];
    let mut index = 0;
    for op in &g.ops {
        match op {
            Op::Label(l) => at[*l] = index,
            _ => index += 1,
        }
    }
    let mut prog = Vec::with_capacity(index);
    for op in &g.ops {
        match op {
            Op::Label(_) => {}
            Op::Plain(insn) => prog.push(*insn),
            Op::Jump { code, k, t, f } => {
                let here = prog.len() + 1;
                let skip = |target: usize| {
                    u8::try_from(target - here)
                        .map_err(|_| Error::msg("filter too long: a jump skips more than 255"))
                };
                prog.push(jump(*code, *k, skip(at[*t])?, skip(at[*f])?));
            }
        }
    }
    Ok(prog)
    // END SOLUTION
}
// ANCHOR_END: ch11_compile

/// Adapt a program for packets that start at the IPv4 header to frames
/// with a 14-byte Ethernet header in front (a `SOCK_RAW` packet socket on
/// `lo` or an Ethernet link): first check the EtherType is IPv4 (0x0800),
/// then every packet-relative load reads 14 bytes further on.
pub fn for_ethernet(prog: &[Insn]) -> Vec<Insn> {
    let reject_from_start = prog.len(); // skip the program, to the final `ret 0`
    let mut out = vec![ld_h(12), jeq(0x0800, 0, reject_from_start as u8)];
    for insn in prog {
        let mut i = *insn;
        let class = i.code & 0x07;
        let mode = i.code & 0xe0;
        if (class == LD && (mode == ABS || mode == IND)) || (class == LDX && mode == MSH) {
            i.k += 14;
        }
        out.push(i);
    }
    out.push(ret(0));
    out
}

/// Parse the filter language above. `""` is an error; so is anything left
/// over.
pub fn parse_filter(text: &str) -> Result<Expr> {
    let words: Vec<String> = text
        .replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let mut p = Parser { words, at: 0 };
    let e = p.expr()?;
    if p.at != p.words.len() {
        return Err(Error::msg(format!(
            "filter {text:?}: unexpected {:?}",
            p.words[p.at]
        )));
    }
    Ok(e)
}

struct Parser {
    words: Vec<String>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.words.get(self.at).map(String::as_str)
    }
    fn take(&mut self) -> Result<String> {
        let w = self
            .words
            .get(self.at)
            .cloned()
            .ok_or_else(|| Error::msg("filter ends too early"))?;
        self.at += 1;
        Ok(w)
    }
    fn expr(&mut self) -> Result<Expr> {
        let mut e = self.term()?;
        while self.peek() == Some("or") {
            self.at += 1;
            e = Expr::Or(Box::new(e), Box::new(self.term()?));
        }
        Ok(e)
    }
    fn term(&mut self) -> Result<Expr> {
        let mut e = self.factor()?;
        while self.peek() == Some("and") {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.factor()?));
        }
        Ok(e)
    }
    fn factor(&mut self) -> Result<Expr> {
        let w = self.take()?;
        match w.as_str() {
            "not" => Ok(Expr::Not(Box::new(self.factor()?))),
            "(" => {
                let e = self.expr()?;
                match self.take()?.as_str() {
                    ")" => Ok(e),
                    other => Err(Error::msg(format!("expected ')', got {other:?}"))),
                }
            }
            "tcp" => Ok(Expr::Proto(6)),
            "udp" => Ok(Expr::Proto(17)),
            "icmp" => Ok(Expr::Proto(1)),
            "src" | "dst" => {
                let dir = if w == "src" { Dir::Src } else { Dir::Dst };
                let what = self.take()?;
                self.primitive(dir, &what)
            }
            "host" | "port" => self.primitive(Dir::Either, &w),
            other => Err(Error::msg(format!("unknown filter word {other:?}"))),
        }
    }
    fn primitive(&mut self, dir: Dir, what: &str) -> Result<Expr> {
        let value = self.take()?;
        match what {
            "host" => value
                .parse()
                .map(|a| Expr::Host(dir, a))
                .map_err(|_| Error::msg(format!("host needs an IPv4 address, got {value:?}"))),
            "port" => value
                .parse()
                .map(|n| Expr::Port(dir, n))
                .map_err(|_| Error::msg(format!("port needs a number, got {value:?}"))),
            other => Err(Error::msg(format!("expected host or port, got {other:?}"))),
        }
    }
}

/// `setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, {len, filter})`: from now
/// on the kernel runs `prog` on every packet for `fd`. The kernel checks the
/// program first (every jump lands inside it, it ends in a return) and
/// refuses a bad one with EINVAL.
pub fn attach(fd: &OwnedFd, prog: &[Insn]) -> Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut Insn,
    };
    // SAFETY: fprog points at `prog`, which outlives the call; the kernel
    // copies the program and keeps no pointer into it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "setsockopt({}, SO_ATTACH_FILTER, {} instructions)",
            fd.as_raw_fd(),
            prog.len()
        )));
    }
    Ok(())
}

/// `setsockopt(SO_LOCK_FILTER, 1)`: the filter can no longer be detached or
/// replaced on this socket (a privileged program can hand the socket to a
/// less trusted one without letting it widen what it sees).
pub fn lock(fd: &OwnedFd) -> Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a pointer to one int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LOCK_FILTER,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os("setsockopt(SO_LOCK_FILTER, 1)"));
    }
    Ok(())
}

/// One instruction as `tcpdump -d` writes it: `(003) jeq #0x6 jt 4 jf 9`.
pub fn disassemble(prog: &[Insn]) -> Vec<String> {
    prog.iter()
        .enumerate()
        .map(|(i, insn)| {
            let next = i + 1;
            let text = match insn.code {
                c if c == LD | B | ABS => format!("ldb [{}]", insn.k),
                c if c == LD | H | ABS => format!("ldh [{}]", insn.k),
                c if c == LD | W | ABS => format!("ld [{}]", insn.k),
                c if c == LD | H | IND => format!("ldh [x + {}]", insn.k),
                c if c == LDX | B | MSH => format!("ldxb 4*([{}]&0xf)", insn.k),
                c if c == RET | K => format!("ret #{}", insn.k),
                c if c == JEQ_K => format!(
                    "jeq #{:#x} jt {} jf {}",
                    insn.k,
                    next + usize::from(insn.jt),
                    next + usize::from(insn.jf)
                ),
                c if c == JSET_K => format!(
                    "jset #{:#x} jt {} jf {}",
                    insn.k,
                    next + usize::from(insn.jt),
                    next + usize::from(insn.jf)
                ),
                c => format!(
                    "code {c:#06x} jt {} jf {} k {:#x}",
                    insn.jt, insn.jf, insn.k
                ),
            };
            format!("({i:03}) {text}")
        })
        .collect()
}
