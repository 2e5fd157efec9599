#!/usr/bin/env python3
"""Names the guest (filter) code in a callgrind profile of the proxy.

wasmtime's compiled code has no symbols valgrind can read, so callgrind reports it as
`???:0x...` addresses. The compiled artifacts in the proxy's disk cache (`.cwasm`, ELF)
do carry each function's name and offset; the base at which the code was loaded is
found by voting (the address minus the offset that most function entries agree on).

Usage: guest.py CALLGRIND_OUT CWASM [N]   (N: how many rows, default 30)
Prints instructions per function of that module, most first, from the dump's self
costs (divide by the requests the dump covered).
"""
import collections
import re
import subprocess
import sys


def main():
    out, cwasm = sys.argv[1], sys.argv[2]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    nm = subprocess.run(["nm", "-n", cwasm], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in nm.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tT":
            syms[int(parts[0], 16)] = parts[2]
    ann = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", out],
        capture_output=True, text=True, check=True,
    ).stdout
    addrs = {}
    for line in ann.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+\?\?\?:0x([0-9a-f]+)", line)
        if m:
            addrs[int(m.group(2), 16)] = int(m.group(1).replace(",", ""))
    votes = collections.Counter(a - o for a in addrs for o in syms)
    if not votes:
        sys.exit("no guest code in the profile")
    base, _ = votes.most_common(1)[0]
    named = collections.Counter()
    for a, cost in addrs.items():
        name = syms.get(a - base)
        if name is not None:
            named[name] += cost
    total = sum(named.values())
    print(f"guest total {total:,} (module loaded at {base:#x}; {len(named)} functions)")
    for name, cost in named.most_common(rows):
        print(f"{cost:>12,}  {name[:150]}")


if __name__ == "__main__":
    main()
