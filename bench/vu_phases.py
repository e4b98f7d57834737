#!/usr/bin/env python3
"""Phases of bench/vhost_user.sh's timed runs, compared within each level.

Machine A's vhost-user rate moves between levels (mostly about 6-7 and
12-21 Mpps at 64 B, some runs between), for whole runs or within one
(benchmarks.md, section 6), so medians over rounds compare the machine's
state rather than the switches. The seconds of all runs of a shape and
size, pooled over the peers, are split at their largest jump, if the
level above is over 1.3x the one below and each side holds a fifth of the
seconds or more; within each level: each peer's seconds (and from how
many runs) and median second, and hyperswitch over the others where both
have seconds there from 2 runs or more.

The level is chosen by the outcome: a peer that lands in the slow level
more often (its share of seconds, printed) may be the cause of it, so a
within-level ratio is conditional on the level.

bench/vhost_user.sh calls phases() on the run it made. Run alone,

    bench/vu_phases.py [--json OUT] RESULT.json...

pools the per-second figures ("seconds") of the results of several runs
of bench/vhost_user.sh and prints their phases (and writes them to OUT).
"""
import json
import re
import statistics
import sys

ORDER = {"flood": 0, "unicast": 1, "closed": 2, "closed-flood": 3}
# PEER-SHAPE-BYTES-rROUND; peers ("ovs-dpdk") and shapes ("closed-flood")
# may hold a hyphen: the shortest peer followed by a known shape
RUN = re.compile(r"(.+?)-(%s)-(\d+)-r(\d+)$" %
                 "|".join(sorted(ORDER, key=len, reverse=True)))


def phases(seconds):
    """seconds: {(run key "PEER-SHAPE-BYTES-rROUND", source): [Mpps, ...]};
    returns the levels, as bench/vhost_user.sh's JSON has them."""
    secs_of = {}
    for (key, src), v in seconds.items():
        m = RUN.match(key)
        v = [x for x in v if x > 0] # a second with nothing moved: stalled or ended
        if m and v:
            secs_of.setdefault((m.group(1), m.group(2), int(m.group(3))), []).extend(
                (x, (src, m.group(4))) for x in v)
    out = []
    for shape, size in sorted({(sh, sz) for _, sh, sz in secs_of},
                              key=lambda k: (ORDER.get(k[0], 9), k[1])):
        pool = sorted(x for (p, sh, sz), v in secs_of.items() if (sh, sz) == (shape, size)
                      for x, _ in v)
        least = max(2, len(pool) // 5)
        jumps = [(pool[i + 1] / pool[i], pool[i + 1])
                 for i in range(least - 1, len(pool) - least)]
        jump, at = max(jumps) if jumps else (1.0, 0.0)
        cuts = [(0.0, at), (at, float("inf"))] if jump > 1.3 else [(0.0, float("inf"))]
        for lo, hi in cuts:
            ph = {"shape": shape, "frame_bytes": size, "mpps_from": round(lo, 3),
                  "mpps_below": None if hi == float("inf") else round(hi, 3), "peers": {}}
            for (p, sh, sz), v in sorted(secs_of.items()):
                if (sh, sz) == (shape, size):
                    w = [(x, r) for x, r in v if lo <= x < hi]
                    ph["peers"][p] = {"seconds": len(w), "of": len(v),
                                      "runs": len({r for _, r in w}),
                                      "mpps_median": round(statistics.median(x for x, _ in w), 3)
                                      if w else None}
            hs = ph["peers"].get("hyperswitch")
            ph["ratios"] = {o: round(hs["mpps_median"] / e["mpps_median"], 2)
                            for o, e in ph["peers"].items()
                            if o != "hyperswitch" and hs and hs["runs"] >= 2 and e["runs"] >= 2}
            out.append(ph)
    return out


def describe(levels, f):
    for ph in levels:
        print("phase %-12s %4d B, seconds at %s Mpps: %s%s" % (
              ph["shape"], ph["frame_bytes"],
              ">= %.2f" % ph["mpps_from"] if ph["mpps_below"] is None else
              "%.2f-%.2f" % (ph["mpps_from"], ph["mpps_below"]),
              ", ".join("%s %s (%d of its %d s, %d runs)" %
                        (p, "-" if e["mpps_median"] is None else "%.2f" % e["mpps_median"],
                         e["seconds"], e["of"], e["runs"])
                        for p, e in ph["peers"].items()),
              "".join("; hyperswitch / %s %.2fx" % kv for kv in ph["ratios"].items())), file=f)


def main(argv):
    out = None
    if argv[:1] == ["--json"] and len(argv) > 1:
        out, argv = argv[1], argv[2:]
    if not argv:
        sys.exit("usage: bench/vu_phases.py [--json OUT] RESULT.json...")
    seconds = {}
    for i, path in enumerate(argv):
        got = json.load(open(path)).get("seconds")
        if not got:
            sys.exit(f"{path}: no per-second figures (a run from before they were kept)")
        seconds.update({(k, i): v for k, v in got.items()})
    res = {"inputs": argv, "phases": phases(seconds)}
    describe(res["phases"], sys.stdout)
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
