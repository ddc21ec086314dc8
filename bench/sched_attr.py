#!/usr/bin/env python3
"""Sets the scheduling of a running server's threads by name: policy, niceness, time slice.

    python3 bench/sched_attr.py --pid PID [--comm moat-llamacpp] [--policy 0] [--nice 0]
        [--slice-us 0]

For an A/B of the decode threads' scheduling on one running `moat serve`, without a rebuild
or a restart between the variants (bench/sched_ab.sh). Every thread of PID whose name
(/proc/PID/task/TID/comm) is --comm gets `sched_setattr(2)` with the policy (0 SCHED_OTHER,
3 SCHED_BATCH), the niceness and the slice (`sched_runtime`; 0 is the kernel's default;
custom slices need Linux 6.12 or later). moat's decode thread and ggml's pool threads, which
it starts, are all named moat-llamacpp. Prints each thread's se.slice afterwards, where the
kernel shows it. Linux on x86-64 or aarch64 only; standard library only.
"""
import argparse
import ctypes
import os
import platform
import struct
import sys

SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def threads(pid, comm):
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == comm:
                yield int(tid)


def shown_slice(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/sched") as f:
            for line in f:
                if line.startswith("se.slice"):
                    return int(line.split(":")[1])
    except OSError:
        pass
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--comm", default="moat-llamacpp")
    p.add_argument("--policy", type=int, choices=(0, 3), default=0)
    p.add_argument("--nice", type=int, default=0)
    p.add_argument("--slice-us", type=int, default=0)
    a = p.parse_args()
    nr = SYS_SCHED_SETATTR.get(platform.machine())
    if nr is None:
        p.error(f"no sched_setattr number known for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    # struct sched_attr, its first 48 bytes: size, policy, flags, nice, priority, runtime,
    # deadline, period.
    attr = struct.pack("IIQiIQQQ", 48, a.policy, 0, a.nice, 0, a.slice_us * 1000, 0, 0)
    tids = list(threads(a.pid, a.comm))
    if not tids:
        print(f"no thread named {a.comm} in {a.pid}", file=sys.stderr)
        return 1
    for tid in tids:
        if libc.syscall(nr, tid, ctypes.c_char_p(attr), 0) != 0:
            err = ctypes.get_errno()
            print(f"sched_setattr({tid}): {os.strerror(err)}", file=sys.stderr)
            return 1
        print(f"{tid} se.slice={shown_slice(a.pid, tid)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
