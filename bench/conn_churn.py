#!/usr/bin/env python3
"""10,000 concurrent AMQP connections and connection churn (issue 12): a node is started,
N connections are opened through connection.open-ok and held (a fresh client must still be
served), then closed; then connections are opened and closed at R a second for S seconds
(half with connection.close, half dropped). Printed: the node's descriptors and RSS at the
baseline, with N held, after the churn, and the churn rate reached. A leak shows as
descriptors above the baseline at the end, or RSS that keeps growing from one run of
--rounds to the next.

    bench/conn_churn.py --bin build/app/mqnode [--connections 10000] [--rate 1000]
                        [--seconds 60] [--rounds 2]

The load generator is one Python process (asyncio): on this 2-core machine it, not the
node, bounds the churn rate; the figures say what was reached."""

import argparse
import asyncio
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "support"))

import churn  # noqa: E402
from brokers import start_broker  # noqa: E402


def mib(kib):
    return "%.1f MiB" % (kib / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the mqnode binary (a release build for figures)")
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=1000, help="churn: connections opened and closed a second")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=2, help="hold-then-churn rounds (RSS should not grow)")
    args = ap.parse_args()

    need = args.connections + 1000  # per process: this one and the node each hold one per connection
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit("RLIMIT_NOFILE hard limit %d is below the %d needed" % (hard, need))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))  # the node inherits it
    os.environ["MQNODE_BIN"] = os.path.abspath(args.bin)
    b = start_broker({"handshake_timeout_ms": 60000}, prefix="mqbench-churn-")
    try:
        pid = b.proc.pid
        base_fds, base_rss = churn.node_fds(pid), churn.node_rss_kib(pid)
        print("baseline: fds=%d rss=%s" % (base_fds, mib(base_rss)))
        for r in range(1, args.rounds + 1):
            async def hold():
                t = time.monotonic()
                conns = await churn.open_many(b.port, args.connections)
                took = time.monotonic() - t
                fds, rss = churn.node_fds(pid), churn.node_rss_kib(pid)
                fresh = time.monotonic()
                extra = await churn.open_connection(b.port)
                await churn.close_connection(extra)
                fresh = time.monotonic() - fresh
                await churn.close_all(conns)
                return took, fds, rss, fresh
            took, fds, rss, fresh = asyncio.run(hold())
            print("round %d: %d connections open in %.1f s; node fds=%d rss=%s (%.1f KiB a connection); "
                  "a fresh client's handshake took %.0f ms"
                  % (r, args.connections, took, fds, mib(rss), (rss - base_rss) / args.connections, fresh * 1000))
            closed_fds = churn.wait_fds(pid, base_fds)
            print("round %d: all closed: fds=%d rss=%s" % (r, closed_fds, mib(churn.node_rss_kib(pid))))
            t = time.monotonic()
            n = asyncio.run(churn.churn(b.port, args.rate, args.seconds))
            t = time.monotonic() - t
            end_fds = churn.wait_fds(pid, base_fds)
            print("round %d: churn %d connections in %.1f s (%.0f/s, asked %d/s); then fds=%d (baseline %d) rss=%s"
                  % (r, n, t, n / t, args.rate, end_fds, base_fds, mib(churn.node_rss_kib(pid))))
            if end_fds != base_fds:
                print("LEAK: %d descriptors above the baseline" % (end_fds - base_fds))
                return 1
    finally:
        b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
