#!/usr/bin/env python3
"""qmp.py SOCKET COMMAND...: a small QMP client for the interop tests.

  qmp.py SOCK migrate URI [MIB_S]
                             migrates (precopy) at MIB_S MiB/s (default:
                             as fast as it goes) and waits;
                             prints one JSON object: status, total_ms,
                             downtime_ms, setup_ms, ram_mb, dirty_pages_rate
  qmp.py SOCK status         prints the VM's run state
  qmp.py SOCK wait-status STATE SECONDS
                             waits until the run state is STATE
  qmp.py SOCK pmemsave FILE BYTES
                             writes guest physical memory [0, BYTES) to FILE
  qmp.py SOCK cont           resumes a paused VM
  qmp.py SOCK quit           ends the QEMU process
Exits 1 when the command fails (the migration did not complete).
"""
import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path, timeout=30):
        end = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.2)
        self.f = self.s.makefile("rw")
        self.read()  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        r = self.read()
        if "error" in r:
            raise RuntimeError(f"{name}: {r['error'].get('desc')}")
        return r.get("return")


def main():
    q = Qmp(sys.argv[1])
    what = sys.argv[2]
    if what == "status":
        print(q.cmd("query-status")["status"])
    elif what == "wait-status":
        end = time.time() + float(sys.argv[4])
        while q.cmd("query-status")["status"] != sys.argv[3]:
            if time.time() > end:
                sys.exit(f"not {sys.argv[3]} after {sys.argv[4]} s")
            time.sleep(0.1)
    elif what == "pmemsave":
        q.cmd("pmemsave", val=0, size=int(sys.argv[4]), filename=sys.argv[3])
    elif what == "cont":
        q.cmd("cont")
    elif what == "quit":
        try:
            q.cmd("quit")
        except EOFError:
            pass
    elif what == "migrate":
        # the default downtime limit (300 ms)
        mib = int(sys.argv[4]) if len(sys.argv) > 4 else 8192
        q.cmd("migrate-set-parameters", **{"max-bandwidth": mib << 20})
        q.cmd("migrate", uri=sys.argv[3])
        end = time.time() + 300
        while time.time() < end:
            m = q.cmd("query-migrate")
            st = m.get("status")
            if st in ("completed", "failed", "cancelled"):
                ram = m.get("ram", {})
                print(json.dumps({
                    "status": st,
                    "total_ms": m.get("total-time"),
                    "downtime_ms": m.get("downtime"),
                    "setup_ms": m.get("setup-time"),
                    "ram_mb": round(ram.get("transferred", 0) / 2**20, 1),
                    "dirty_sync_count": ram.get("dirty-sync-count"),
                    "error": m.get("error-desc"),
                }))
                sys.exit(0 if st == "completed" else 1)
            time.sleep(0.05)
        print(json.dumps({"status": "timeout"}))
        sys.exit(1)
    else:
        sys.exit(f"unknown command {what}")


if __name__ == "__main__":
    main()
