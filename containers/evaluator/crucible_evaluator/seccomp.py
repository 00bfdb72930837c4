"""The sandbox's seccomp filter: a classic BPF program (``bwrap --seccomp FD``) that
refuses the system calls a submission has no use for and an escape would want, and
allows everything else (a denylist: numpy, torch and scikit-learn run unchanged).

Refused with EPERM: io_uring, the kernel keyrings, bpf, userfaultfd, perf_event_open,
ptrace and process_vm_*, every mount call (the old API and the new fd-based one),
unshare and setns, kexec, kernel modules, chroot, acct, swap, reboot, syslog, quotas,
lookup_dcookie, file handles (``open_by_handle_at``), ``personality`` other than a query
or PER_LINUX, and ``clone`` with any namespace flag. ``clone3`` gets ENOSYS, so that glibc
falls back to ``clone`` (whose flags the filter can read; clone3's are behind a pointer).
``fallocate`` gets EOPNOTSUPP, what a file system without it answers: glibc's
``posix_fallocate`` then writes the blocks one by one, and those writes count against
RLIMIT_FSIZE, the output directory's size and the memory of the run like any other
(a reservation of gigabytes in milliseconds is no longer possible).
A system call of another ABI (i386's ``int 0x80``, the x32 numbers) kills the process.

Only x86_64 (the image) and aarch64 have tables; elsewhere ``program`` answers None and
the sandbox runs without the filter, saying so loudly.
"""

from __future__ import annotations

import errno
import platform
import struct

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
NR, ARCH, ARG0_LOW = 0, 4, 16  # ARG0_LOW: the low 32 bits of args[0] (little-endian)

# Classic BPF
LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ_K, JGE_K, JSET_K = 0x15, 0x35, 0x45  # BPF_JMP | BPF_JEQ/JGE/JSET | BPF_K
RET_K = 0x06  # BPF_RET | BPF_K

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

X32_BIT = 0x40000000
# unshare's and clone's namespace flags (CLONE_NEWTIME, 0x80, is an exit signal to clone)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = (
    CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)
PER_LINUX, PER_QUERY = 0, 0xFFFFFFFF  # the personality calls allowed

DENIED = (  # refused with EPERM
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "userfaultfd",
    "perf_event_open",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "chroot",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "name_to_handle_at",
    "open_by_handle_at",
)

# System call numbers (linux/arch/x86/entry/syscalls/syscall_64.tbl; aarch64 uses the
# generic table, include/uapi/asm-generic/unistd.h). Checked against the headers of
# linux-libc-dev; open_tree_attr (6.15) is newer than them.
_COMMON = {  # the same on both (numbered once for every architecture since 5.1)
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "open_tree_attr": 467,
}
X86_64 = {
    **_COMMON,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "bpf": 321,
    "userfaultfd": 323,
    "perf_event_open": 298,
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "unshare": 272,
    "setns": 308,
    "clone": 56,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "personality": 135,
    "fallocate": 285,
    "chroot": 161,
    "acct": 163,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "syslog": 103,
    "quotactl": 179,
    "lookup_dcookie": 212,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
}
AARCH64 = {
    **_COMMON,
    "keyctl": 219,
    "add_key": 217,
    "request_key": 218,
    "bpf": 280,
    "userfaultfd": 282,
    "perf_event_open": 241,
    "ptrace": 117,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "mount": 40,
    "umount2": 39,
    "pivot_root": 41,
    "unshare": 97,
    "setns": 268,
    "clone": 220,
    "kexec_load": 104,
    "kexec_file_load": 294,
    "init_module": 105,
    "finit_module": 273,
    "delete_module": 106,
    "personality": 92,
    "fallocate": 47,
    "chroot": 51,
    "acct": 89,
    "swapon": 224,
    "swapoff": 225,
    "reboot": 142,
    "syslog": 116,
    "quotactl": 60,
    "lookup_dcookie": 18,
    "name_to_handle_at": 264,
    "open_by_handle_at": 265,
}
# machine -> (AUDIT_ARCH_*, its numbers, whether x32 numbers exist beside it)
ARCHES = {
    "x86_64": (0xC000003E, X86_64, True),
    "aarch64": (0xC00000B7, AARCH64, False),
}


def syscalls(machine: str | None = None) -> dict[str, int] | None:
    """This machine's system call numbers (None: no table, no filter)."""
    arch = ARCHES.get(machine or platform.machine())
    return arch[1] if arch else None


def program(machine: str | None = None) -> bytes | None:
    """The filter for ``machine`` (this one by default) as ``struct sock_filter[]``, what
    ``bwrap --seccomp`` reads; None where there is no table for it."""
    arch = ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, nr, has_x32 = arch
    # (code, jump-if-true label, jump-if-false label, k); a label None is the next one
    ins: list[tuple[int, str | None, str | None, int] | str] = [
        (LD_W_ABS, None, None, ARCH),
        (JEQ_K, None, "kill", audit_arch),
        (LD_W_ABS, None, None, NR),
    ]
    if has_x32:
        ins.append((JGE_K, "eperm", None, X32_BIT))
    ins += [(JEQ_K, "eperm", None, nr[name]) for name in DENIED]
    ins += [
        (JEQ_K, "eopnotsupp", None, nr["fallocate"]),
        (JEQ_K, "enosys", None, nr["clone3"]),
        (JEQ_K, "personality", None, nr["personality"]),
        (JEQ_K, None, "allow", nr["clone"]),
        (LD_W_ABS, None, None, ARG0_LOW),  # clone's flags
        (JSET_K, "eperm", "allow", NAMESPACE_FLAGS),
        "personality",
        (LD_W_ABS, None, None, ARG0_LOW),
        (JEQ_K, "allow", None, PER_LINUX),
        (JEQ_K, "allow", "eperm", PER_QUERY),
        "allow",
        (RET_K, None, None, RET_ALLOW),
        "eperm",
        (RET_K, None, None, RET_ERRNO | errno.EPERM),
        "enosys",
        (RET_K, None, None, RET_ERRNO | errno.ENOSYS),
        "eopnotsupp",
        (RET_K, None, None, RET_ERRNO | errno.EOPNOTSUPP),
        "kill",
        (RET_K, None, None, RET_KILL_PROCESS),
    ]
    labels: dict[str, int] = {}
    code: list[tuple[int, str | None, str | None, int]] = []
    for item in ins:
        if isinstance(item, str):
            labels[item] = len(code)
        else:
            code.append(item)
    out = bytearray()
    for i, (op, jt, jf, k) in enumerate(code):
        offsets = [0 if label is None else labels[label] - i - 1 for label in (jt, jf)]
        assert all(0 <= o <= 255 for o in offsets), "a jump out of classic BPF's reach"
        out += struct.pack("=HBBI", op, offsets[0], offsets[1], k)
    return bytes(out)
