#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets (tests/fuzz/corpus/NAME/).

Each seed is a well-formed input a target's format describes (see the
comment at the top of each fuzz_*.c): valid rings, message streams and
frames from which the fuzzer's mutations start. Run it after changing an
input format:  python3 tests/fuzz/seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def be(v, n):
    return v.to_bytes(n, "big")


# ---- frames -------------------------------------------------------------------------------

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def eth(dst, src, etype, payload, vlan=None):
    h = bytes(dst) + bytes(src)
    if vlan is not None:
        h += struct.pack("!HH", 0x8100, vlan)
    return h + struct.pack("!H", etype) + payload


def ipv4(proto, payload, src=(10, 0, 0, 1), dst=(10, 0, 0, 2)):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                    bytes(src), bytes(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(nxt, payload):
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nxt, 64,
                       bytes(15) + b"\1", bytes(15) + b"\2") + payload


def tcp(payload, flags=0x18):
    return struct.pack("!HHIIBBHHH", 1234, 80, 1000, 0, 0x50, flags, 65535, 0, 0) + payload


def udp(payload):
    return struct.pack("!HHHH", 1234, 53, 8 + len(payload), 0) + payload


A = [2, 0, 0, 0, 0, 1]
B = [2, 0, 0, 0, 0, 2]
BC = [0xFF] * 6


def frames():
    """(name, vnet header fields, frame) for the frame-level targets."""
    data = bytes(range(256)) * 12
    out = []
    out.append(("plain", (0, 0, 0, 0, 0, 0), eth(B, A, 0x88B5, data[:100])))
    out.append(("bcast", (0, 0, 0, 0, 0, 0), eth(BC, A, 0x0806, data[:28])))
    out.append(("vlan", (0, 0, 0, 0, 0, 0), eth(B, A, 0x88B5, data[:80], vlan=7)))
    f = eth(B, A, 0x0800, ipv4(6, tcp(data[:1400])))
    out.append(("tcp4-csum", (1, 0, 0, 0, 34, 16), f))
    f = eth(B, A, 0x0800, ipv4(6, tcp(data[:3000])))
    out.append(("tcp4-tso", (1, 1, 54, 1448, 34, 16), f))
    f = eth(B, A, 0x0800, ipv4(6, tcp(data[:3000])), vlan=5)
    out.append(("tcp4-tso-vlan", (1, 1, 58, 1000, 38, 16), f))
    f = eth(B, A, 0x86DD, ipv6(6, tcp(data[:3000])))
    out.append(("tcp6-tso", (1, 4, 74, 1428, 54, 16), f))
    f = eth(B, A, 0x0800, ipv4(17, udp(data[:3000])))
    out.append(("uso4", (1, 5, 42, 1400, 34, 6), f))
    f = eth(B, A, 0x0800, ipv4(17, udp(data[:200])))
    out.append(("udp4-csum", (1, 0, 0, 0, 34, 6), f))
    f = eth(B, A, 0x0800, ipv4(6, tcp(data[:3000])))
    out.append(("tcp4-tso-ecn", (1, 0x81, 54, 1448, 34, 16), f))
    return out


def vnet(fields):
    flags, gso, hlen, gsize, cstart, coff = fields
    return struct.pack("<BBHHHHH", flags, gso, hlen, gsize, cstart, coff, 0)


# ---- (b) virtq ---------------------------------------------------------------------------

DATA_GPA = 0x100000


def virtq_seeds():
    for packed in (0, 1):
        for indirect in (0, 4):
            n = 16
            hdr = bytes([packed | 2 | indirect]) + be(n - 1, 2) + \
                be(0x8000 if packed else 0, 2) + be(70000, 3)
            # Chains: tx frames of 1, 2 and 3 descriptors at DATA_GPA + 256*k.
            chains = [[(DATA_GPA + 0x100 * k + 64 * j, 60) for j in range(k % 3 + 1)]
                      for k in range(6)]
            ring = bytearray()
            if not packed:
                desc = bytearray(16 * n)
                avail = bytearray(6 + 2 * n)
                i = 0
                heads = []
                for ch in chains:
                    heads.append(i)
                    for j, (a, l) in enumerate(ch):
                        fl = 1 if j + 1 < len(ch) else 0
                        struct.pack_into("<QIHH", desc, 16 * i, a, l, fl, i + 1)
                        i += 1
                if indirect:  # one more chain as an indirect table in data
                    struct.pack_into("<QIHH", desc, 16 * i, DATA_GPA + 0x4000, 32, 4, 0)
                    heads.append(i)
                    i += 1
                struct.pack_into("<HH", avail, 0, 0, len(heads))
                for k, h in enumerate(heads):
                    struct.pack_into("<H", avail, 4 + 2 * k, h)
                ring = desc + avail
            else:
                desc = bytearray(16 * n)
                s = 0
                for bid, ch in enumerate(chains):
                    for j, (a, l) in enumerate(ch):
                        fl = (1 if j + 1 < len(ch) else 0) | 0x80
                        struct.pack_into("<QIHH", desc, 16 * s, a, l, bid, fl)
                        s += 1
                if indirect:
                    struct.pack_into("<QIHH", desc, 16 * s, DATA_GPA + 0x4000, 32, 9, 0x84)
                ring_len = (16 * n + 8 + 15) & ~15
                ring = bytes(ring_len - 16 * n) + desc  # events first, descriptors last
            data = bytearray(0x4100)
            struct.pack_into("<QIHHQIHH", data, 0x4000, DATA_GPA, 40, 1, 1, DATA_GPA + 64, 40,
                             0, 0)
            script = bytes([0, 63]) * 4 + bytes([2, 0, 60]) * 4 + bytes([4]) + \
                bytes([0, 63, 0, 63, 3, 1, 2, 0, 0, 4, 13, 6, 8, 0, 63, 1, 63, 2, 0, 0, 4])
            write("virtq", "seed-%s%s" % ("packed" if packed else "split",
                                           "-indirect" if indirect else ""),
                  hdr + be(len(ring), 2) + bytes(ring) + be(len(data), 2) + bytes(data) + script)


# ---- (a) vu_msg ----------------------------------------------------------------------------

UVA = 0x7F0000000000
F_VERSION_1, F_PROTO, F_EVENT_IDX, F_PACKED, F_INDIRECT, F_MRG, F_CSUM, F_GCSUM = \
    32, 30, 29, 34, 28, 15, 0, 1


def msg(req, payload=b"", fds=(), flags=0x9):
    return struct.pack("<BBBH", req, flags, len(fds), len(payload)) + payload + bytes(fds)


def vu_session(packed, nq=1, mem_reg=False, order="canonical", extra=b"", feats_extra=0,
               proto_extra=0, before_rings=b""):
    pages = 15
    mem = bytearray(pages * 4096)
    feats = (1 << F_VERSION_1) | (1 << F_PROTO) | (1 << F_EVENT_IDX) | (1 << F_INDIRECT) | \
        (1 << F_MRG) | (1 << F_CSUM) | (1 << F_GCSUM) | (packed << F_PACKED) | feats_extra
    setup = [msg(1, flags=1), msg(15, flags=1),
             msg(16, struct.pack("<Q", (1 << 0) | (1 << 3) | (1 << 4) | (1 << 15) | (1 << 16) |
                                 proto_extra), flags=1),
             msg(3)]
    feat_msg = msg(2, struct.pack("<Q", feats))
    region = struct.pack("<QQQQ", 0, len(mem), UVA, 0)
    if mem_reg:
        mem_msg = msg(37, struct.pack("<Q", 0) + region, fds=[0])
    else:
        mem_msg = msg(5, struct.pack("<II", 1, 0) + region, fds=[0])
    rings = []
    for i in range(2 * nq):
        base_off = 0x1000 * (i + 1)
        n = 16
        if packed:
            desc, drv, dev = base_off, base_off + 0x100, base_off + 0x140
        else:
            desc, avail, used = base_off, base_off + 0x100, base_off + 0x200
        rings += [msg(8, struct.pack("<II", i, n)),
                  msg(10, struct.pack("<II", i, 0x8000 if packed else 0))]
        if packed:
            rings.append(msg(9, struct.pack("<IIQQQQ", i, 0, UVA + desc, UVA + dev, UVA + drv, 0)))
        else:
            rings.append(msg(9, struct.pack("<IIQQQQ", i, 0, UVA + desc, UVA + used, UVA + avail,
                                            0)))
        rings += [msg(12, struct.pack("<Q", i), fds=[1]), msg(13, struct.pack("<Q", i), fds=[1]),
                  msg(18, struct.pack("<II", i, 1))]
        rx = i % 2 == 0
        bufs = [(0xC000 + 0x400 * k, 0x400) for k in range(8)] if rx else []
        if not rx:
            for k, (fname, hdr, fr) in enumerate(frames()[:3]):
                at = 0x8000 + 0x800 * k
                blob = vnet(hdr) + fr[:0x800 - 12]
                mem[at:at + len(blob)] = blob
                bufs.append((at, len(blob)))
        for k, (a, l) in enumerate(bufs):
            fl = 2 if rx else 0
            if packed:
                struct.pack_into("<QIHH", mem, desc + 16 * k, a, l, k, fl | 0x80)
            else:
                struct.pack_into("<QIHH", mem, desc + 16 * k, a, l, fl, 0)
                struct.pack_into("<H", mem, avail + 4 + 2 * k, k)
        if not packed:
            struct.pack_into("<HH", mem, avail, 0, len(bufs))
    if order == "canonical":
        msgs = setup + [feat_msg, mem_msg, before_rings] + rings
    elif order == "rings-first":
        msgs = setup + rings + [feat_msg, mem_msg]
    else:
        msgs = setup + [mem_msg] + rings + [feat_msg]
    body = b"".join(msgs) + extra
    head = bytes([pages - 1, 0]) + struct.pack("<H", len(mem))
    return head + bytes(mem) + body


def vu_msg_seeds():
    for packed in (0, 1):
        name = "packed" if packed else "split"
        write("vu_msg", "seed-%s" % name, vu_session(packed))
        write("vu_msg", "seed-%s-mq-memreg" % name, vu_session(packed, nq=2, mem_reg=True))
        write("vu_msg", "seed-%s-rings-first" % name, vu_session(packed, order="rings-first"))
        stop = b"".join(msg(11, struct.pack("<II", i, 0), flags=1) for i in range(2))
        write("vu_msg", "seed-%s-stop-restart" % name,
              vu_session(packed, extra=stop + msg(12, struct.pack("<Q", 1), fds=[1])))
        s = bytearray(vu_session(packed))
        s[1] = 0x31  # the memory file shrinks to 1.5 KiB under the switch
        write("vu_msg", "seed-%s-truncated" % name, bytes(s))
        # live migration: a dirty log (the guest memfd itself), LOG_ALL on
        # the running rings, ring 0 logged, an announce, a device reset
        feats = (1 << F_VERSION_1) | (1 << F_PROTO) | (1 << F_EVENT_IDX) | (1 << F_INDIRECT) | \
            (1 << F_MRG) | (1 << F_CSUM) | (1 << F_GCSUM) | (packed << F_PACKED)
        mig = (msg(6, struct.pack("<QQ", 64, 0), fds=[0], flags=1) +
               msg(2, struct.pack("<Q", feats | (1 << 26))) +
               msg(9, struct.pack("<IIQQQQ", 0, 1, UVA + 0x1000, UVA + 0x1200, UVA + 0x1100,
                                  0x1200)) +
               msg(19, bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0])) +
               msg(7, fds=[1]) + msg(34))
        write("vu_msg", "seed-%s-migration" % name,
              vu_session(packed, extra=mig, proto_extra=(1 << 1) | (1 << 2) | (1 << 13)))
        # behind a vIOMMU: IOVAs 0.. (descriptors) and UVA.. (ring
        # addresses) map the guest memory; an invalidation at the end
        length = 15 * 4096
        upd = b"".join(msg(22, struct.pack("<QQQBB6x", iova, length, UVA, 3, 2))
                       for iova in (0, UVA))
        inval = msg(22, struct.pack("<QQQBB6x", 0x8000, 0x1000, 0, 0, 3))
        write("vu_msg", "seed-%s-iommu" % name,
              vu_session(packed, feats_extra=1 << 33, proto_extra=(1 << 5) | (1 << 7),
                         before_rings=msg(21, fds=[4]) + upd, extra=inval))


def frame_seeds():
    for i, (name, hdr, fr) in enumerate(frames()):
        for target in ("frame", "tap"):
            mode = 0 if target == "tap" else (i % 2) | ((i % 8) << 1)
            write(target, "seed-" + name, bytes([mode]) + vnet(hdr) + fr)
    # What fuzz_tap found (the kernel refused frames the switch passed on):
    # kept as inputs every run replays, next to the unit tests.
    data = bytes(range(256)) * 12
    tso = eth(B, A, 0x0800, ipv4(6, tcp(data[:3018])))
    regress = [
        ("regress-tso-csum-start-not-l4", (1, 1, 0, 59395, 939, 0), tso),
        ("regress-tso-csum-offset-0", (1, 1, 54, 1448, 34, 0), tso),
        ("regress-csum-start-in-ip-header", (1, 0, 1428, 54, 16, 0),
         eth(B, A, 0x86DD, ipv6(6, tcp(data[:72])))),
    ]
    for name, hdr, fr in regress:
        for target in ("frame", "tap"):
            write(target, name, bytes([0]) + vnet(hdr) + fr)


# ---- (i) the uplink's AF_XDP path: frames without metadata ------------------------------

def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def with_l4_csum(f, l3, partial):
    """f with its TCP/UDP checksum set: complete, or (partial) just the
    pseudo-header's sum, as a sender that leaves it to offloading does."""
    f = bytearray(f)
    v4 = f[l3] >> 4 == 4
    if v4:
        l4 = l3 + (f[l3] & 15) * 4
        proto, plen = f[l3 + 9], len(f) - l4
        ps = sum(struct.unpack("!4H", bytes(f[l3 + 12:l3 + 20])))
    else:
        l4 = l3 + 40
        proto, plen = f[l3 + 6], len(f) - l4
        ps = sum(struct.unpack("!16H", bytes(f[l3 + 8:l3 + 40])))
    ps += proto + plen
    at = l4 + (16 if proto == 6 else 6)
    f[at:at + 2] = b"\0\0"
    if partial:
        v = fold(ps)
    else:
        seg = bytes(f[l4:]) + (b"\0" if plen % 2 else b"")
        v = (~fold(ps + sum(struct.unpack("!%dH" % (len(seg) // 2), seg)))) & 0xFFFF
    f[at:at + 2] = struct.pack("!H", v)
    return bytes(f)


def uplink_seeds():
    data = bytes(range(256)) * 8
    cases = [
        ("tcp4", eth(B, A, 0x0800, ipv4(6, tcp(data[:100]))), 14),
        ("tcp4-vlan", eth(B, A, 0x0800, ipv4(6, tcp(data[:1400])), vlan=9), 18),
        ("udp4", eth(B, A, 0x0800, ipv4(17, udp(data[:33]))), 14),
        ("tcp6", eth(B, A, 0x86DD, ipv6(6, tcp(data[:700]))), 14),
        ("udp6", eth(B, A, 0x86DD, ipv6(17, udp(data[:64]))), 14),
    ]
    for i, (name, f, l3) in enumerate(cases):
        for partial in (True, False):
            write("uplink", "seed-%s-%s" % (name, "partial" if partial else "whole"),
                  bytes([i & 1]) + with_l4_csum(f, l3, partial))
    write("uplink", "seed-plain", bytes([0]) + eth(B, A, 0x88B5, data[:60]))


# ---- (d) hyperswitchd's config: files and hsctl's port objects ------------------------------

def conf_seeds():
    # mode byte: even = a config file, odd = JSON (port.add NUL port.set)
    sample = os.path.join(HERE, "..", "..", "tools", "hyperswitchd", "hyperswitchd.conf")
    with open(sample, "rb") as f:
        write("conf", "seed-sample", b"0" + f.read())
    write("conf", "seed-small", b"0" + b"""switch = { workers = 2; fdb = { aging_s = 60; }; };
control = { socket = "/run/x.sock"; mode = "0660"; };
metrics = { listen = "[::1]:9477"; };
ports = (
  { name = "a"; type = "tap"; ifname = "t0"; vlan = 10; mtu = 9000; },
  { name = "b"; type = "vhost-user"; path = "/tmp/b.sock"; vlan_mode = "trunk";
    vlan = 5; trunks = (5, "10-20", 4094); queues = 2; offer_mtu = true; },
  { name = "x"; type = "xen"; domid = 7; devid = 1; queues = 4; learn = false; }
);
""")
    write("conf", "seed-error", b"0ports = ( { name = \"x\"; type = \"tap\"; vlan = 5000; } );\n")
    write("conf", "seed-json-tap",
          b'1{"name": "t1", "type": "tap", "ifname": "hs-t1", "vlan": 10, "mtu": 1400}'
          b'\0{"vlan_mode": "trunk", "trunks": [10, "100-102"], "learn": false}')
    write("conf", "seed-json-xen",
          b'1{"name": "vm7", "type": "xen", "domid": 7, "queues": 2}'
          b'\0{"vlan": 20, "queues": 4, "devid": 3}')
    write("conf", "seed-json-vu",
          b'1{"name": "vm1", "type": "vhost-user", "path": "/tmp/vm1.sock", "client": true,'
          b' "queues": 4, "reconnect_ms": 500, "packed": false}'
          b'\0{"mac_limit": 16, "flood": false, "socket_mode": "0600"}')


# ---- (e2) hyperswitchd's control socket: one connection's bytes ----------------------------

def ctl_seeds():
    # the harness's daemon: ports a (vhost-user, VLAN 10), b (tap, trunk
    # 1 + 10, 20-30), c (tap, VLAN 20)
    def lines(*reqs):
        return b"".join(r + b"\n" for r in reqs)
    write("ctl", "seed-show", lines(
        b'{"version":1,"id":1,"command":"version"}',
        b'{"command":"show"}', b'{"command":"show","args":{"port":"b"}}',
        b'{"command":"stats"}', b'{"command":"stats","args":{"port":"a"}}'))
    write("ctl", "seed-fdb", lines(
        b'{"command":"fdb.add","args":{"mac":"52:54:00:00:00:01","port":"b","vlan":10}}',
        b'{"command":"fdb.add","args":{"mac":"52:54:00:00:00:02","port":"c"}}',
        b'{"command":"fdb.show"}', b'{"command":"fdb.show","args":{"port":"b"}}',
        b'{"command":"fdb.del","args":{"mac":"52:54:00:00:00:01","vlan":10}}',
        b'{"command":"fdb.flush","args":{"port":"c","static":true}}'))
    write("ctl", "seed-mirror", lines(
        b'{"command":"mirror.add","args":{"src":"a","dst":"c","direction":"rx"}}',
        b'{"command":"mirror.show"}',
        b'{"command":"mirror.del","args":{"src":"a","dst":"c"}}',
        b'{"command":"log.level","args":{"level":"warn"}}', b'{"command":"log.level"}'))
    write("ctl", "seed-capture", lines(
        b'{"command":"capture","args":{"port":"b","direction":"both","snaplen":128}}',
        b'{"command":"show"}'))
    write("ctl", "seed-errors", lines(
        b'{"command":"nope"}', b'{"command":"show","args":{"bogus":1}}',
        b'{"command":"port.del","args":{"name":"c"}}', b'[1,2]') + b'{"command":"sh')


# ---- (f) the Xen transmit ring -----------------------------------------------------------

NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED, NETTXF_MORE, NETTXF_EXTRA = 1, 2, 4, 8


def txreq(gref, off, flags, rid, size):
    return struct.pack("<IHHHH", gref, off, flags, rid, size)


def txextra_gso(size, gtype, more=False):
    return struct.pack("<BBHBBHI", 1, 1 if more else 0, size, gtype, 0, 0, 0)


def xen_tx_seeds():
    # cons, produced count, then the ring's request slots
    ring = (txreq(8, 100, NETTXF_CSUM_BLANK, 1, 60) +
            txreq(9, 0, NETTXF_MORE, 2, 1514) + txreq(10, 3596, NETTXF_MORE, 3, 500) +
            txreq(11, 0, 0, 4, 500) +
            txreq(12, 0, NETTXF_EXTRA | NETTXF_MORE, 5, 3000) + txextra_gso(1448, 1) +
            txreq(13, 0, 0, 6, 2000))
    write("xen_tx", "seed-three-packets", struct.pack("<IH", 0, 8) + ring)
    write("xen_tx", "seed-wrapping-index", struct.pack("<IH", 0xfffffffe, 8) + ring)
    many = txreq(8, 0, NETTXF_MORE, 1, 18 * 60) + b"".join(
        txreq(8, 0, NETTXF_MORE if i < 17 else 0, i + 1, 60) for i in range(1, 18))
    write("xen_tx", "seed-18-slots", struct.pack("<IH", 250, 18) + many)


def xen_xs_seeds():
    # steps [op, key, value]: keys index the target's list
    K = {"state": 0, "tx": 1, "rx": 2, "ev": 3, "evtx": 4, "evrx": 5, "copy": 6,
         "notify": 7, "sg": 8, "gso4": 9, "mq": 13, "q0tx": 14, "q0rx": 15, "q0ev": 16,
         "q1tx": 17, "q1rx": 18, "q1ev": 19}

    def w(key, v):
        return bytes([0, K[key], v])

    def state(v):
        return bytes([3, 0, v])
    run, kick = bytes([4, 0, 0]), bytes([5, 0, 0])

    def pkt(v):
        return bytes([6, 0, v])
    base = w("copy", 1) + w("notify", 1) + w("sg", 1) + w("gso4", 1)
    one = w("tx", 200) + w("rx", 201) + w("ev", 208) + base + state(4) + run
    write("xen_xs", "seed-connect", one + pkt(20) + kick + run + pkt(90) + kick + run)
    write("xen_xs", "seed-reconnect", one + state(5) + run + state(6) + run + state(1) + run +
          one + pkt(40) + kick + run)
    two = (w("mq", 2) + w("q0tx", 200) + w("q0rx", 201) + w("q0ev", 208) + w("q1tx", 202) +
           w("q1rx", 203) + w("q1ev", 209) + base + state(4) + run)
    write("xen_xs", "seed-two-queues", two + pkt(30) + kick + run + bytes([7, 0, 0]) + run)
    write("xen_xs", "seed-split", w("tx", 200) + w("rx", 201) + w("evtx", 208) +
          w("evrx", 209) + base + state(4) + run + pkt(10) + kick + run)


def main():
    xen_xs_seeds()
    virtq_seeds()
    vu_msg_seeds()
    frame_seeds()
    uplink_seeds()
    conf_seeds()
    ctl_seeds()
    xen_tx_seeds()


if __name__ == "__main__":
    main()
