#!/usr/bin/env python3
"""memdiff.py A B: compares two guest memory dumps page by page (4 KiB).

Prints one line per page that differs (its guest physical address and
the first differing bytes, A's/B's) and a last line "pages differing: N".
Exits 1 when a page differs. The migration test dumps the source guest
(stopped after the switch-over) and the destination (started with -S,
not run yet): every page must have come along, the ones the switch wrote
while the front-end migrated included (dirty log)."""
import sys

PAGE = 4096


def main():
    with open(sys.argv[1], "rb") as fa, open(sys.argv[2], "rb") as fb:
        a, b = fa.read(), fb.read()
    if len(a) != len(b):
        sys.exit(f"dumps of {len(a)} and {len(b)} bytes")
    n = 0
    for off in range(0, len(a), PAGE):
        pa, pb = a[off:off + PAGE], b[off:off + PAGE]
        if pa == pb:
            continue
        d = [i for i in range(PAGE) if pa[i] != pb[i]]
        shown = " ".join(f"+{i}:{pa[i]:02x}/{pb[i]:02x}" for i in d[:8])
        print(f"page {off:#x}: {len(d)} bytes differ: {shown}")
        n += 1
    print(f"pages differing: {n}")
    sys.exit(1 if n else 0)


if __name__ == "__main__":
    main()
