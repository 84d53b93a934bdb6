#!/usr/bin/env python3
"""Generate crates/berth/link/startup-symbols.txt: the functions a starting and idle
`berth server --disable-agent` runs, for the linker to place together in .text.

The kernel maps an executable's code in blocks around each page touched (fault-around,
and whole large page-cache folios), so code run once at start-up, scattered over the
36 MB .text, kept ~26 MiB of it resident in an idle server. Placed together (lld
`--symbol-ordering-file`, see crates/berth/build.rs), the same ~9.5 MiB of functions
make far fewer blocks resident. Symbol names (v0 mangling) are stable across edits of
other code, so the list ages slowly; a missing name only loses its placement.

Usage: scripts/gen-symbol-order.py [BERTH_RELEASE_EXECUTABLE] [SECONDS]
Runs the executable under valgrind's callgrind (Debian package `valgrind`) for SECONDS
(default 150: start-up, informer syncs, a few lease renewals), then keeps every executed
function that is a symbol of the executable, except the few with names over 1,000
characters (deeply nested futures, ~60 KiB of code, 2.3 MB of names).
"""
import os
import re
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "crates", "berth", "link", "startup-symbols.txt")
MAX_NAME = 1000


def executed(callgrind_out):
    names, done = {}, set()
    pattern = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")
    with open(callgrind_out, errors="replace") as f:
        for line in f:
            m = pattern.match(line.rstrip("\n"))
            if m:
                ident, name = m.groups()
                if name:
                    names[ident] = name
                done.add(names.get(ident))
    return done


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "berth")
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    symbols = set()
    nm = subprocess.run(["nm", "--defined-only", exe], capture_output=True, text=True, check=True)
    for line in nm.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            symbols.add(parts[2])
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = dict(os.environ, MIMALLOC_ARENA_EAGER_COMMIT="0")  # no re-exec under valgrind
        cmd = ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}", exe,
               "server", "--disable-agent", "--data-dir", os.path.join(tmp, "data"), "--https-listen-port", "0"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            proc.wait()
        keep = sorted(n for n in executed(out) if n in symbols and len(n) <= MAX_NAME)
    with open(OUT, "w") as f:
        f.write("\n".join(keep) + "\n")
    print(f"wrote {len(keep)} symbols to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
