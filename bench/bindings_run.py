#!/usr/bin/env python3
"""Costs as bindings grow (issue 10): mqnode vs a private RabbitMQ node, in one run.

For each broker, exchange (amq.topic, amq.direct) and size (1k / 10k / 100k queues) a
fresh broker is started and mqnode-bindings-bench (one client, synchronous RPCs) declares
and binds the queues, holds while the broker's RSS is sampled, publishes with confirms
(topic, largest size only) and deletes the queues. Brokers run one at a time. Prints a
markdown table (progress on stderr). Standard library only; the broker handling (private
RabbitMQ node, process-tree RSS, cleanup) is bench/run.py's. See bench/README.md,
"Bindings".
"""

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as brun  # noqa: E402  bench/run.py: MqnodeBroker, RabbitBroker, settle_rss, cleanup

log = brun.log


def run_one(args, broker, exchange, size, publish, phase_limit):
    """One fresh broker: declare+bind, RSS, optional publish, delete. Returns the result dict."""
    broker.start()
    try:
        rss0 = brun.settle_rss(broker, args.settle)
        cmd = [args.bench_bin, "--port", str(broker.port), "--queues", str(size), "--exchange", exchange,
               "--hold-stdin", "--publish-seconds", str(args.publish_seconds if publish else 0),
               "--confirm-window", str(args.confirm_window)]
        if phase_limit:
            cmd += ["--phase-limit", str(phase_limit)]
        log(f"{broker.name}: {' '.join(cmd)}")
        cpu0 = broker.cpu_seconds()
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        brun.on_cleanup(lambda: p.poll() is None and p.kill())
        # The generator exits on any error (a dead broker included), which ends this loop.
        for line in p.stdout:
            if line.strip() == "DECLARED":
                break
        else:
            raise brun.BenchFailure(f"generator exited early: {p.stderr.read().strip()[:300]}")
        rss1 = brun.settle_rss(broker, args.settle)
        p.stdin.write("\n")
        p.stdin.flush()
        rest, err = p.communicate(timeout=args.timeout)
        cpu = broker.cpu_seconds() - cpu0
        res = brun.parse_result(rest)
        if p.returncode != 0 or res is None:
            raise brun.BenchFailure(f"generator failed ({p.returncode}): {err.strip()[:300]}")
        res.update({"rss_before_kib": rss0, "rss_declared_kib": rss1, "broker_cpu_seconds": cpu,
                    "rss_per_queue_bytes": (rss1 - rss0) * 1024 / max(res["declared"], 1)})
        log(f"{broker.name} {exchange} {size}: declare+bind {res['declare_rate']:.0f}/s "
            f"({res['declared']} of {size}), delete {res['delete_rate']:.0f}/s ({res['deleted']}), "
            f"publish {res['publish_rate']:.0f} msg/s, RSS/queue {res['rss_per_queue_bytes']:.0f} B")
        return res
    finally:
        broker.stop()
        brun.run_cleanups()


def fmt(v, digits=0):
    return "—" if v is None else f"{v:,.{digits}f}"


def markdown(args, brokers, results):
    cols = [name for name, _ in brokers]
    head = "| scenario | " + " | ".join(cols) + " | mqnode / RabbitMQ |"
    lines = [head, "|---|" + "---:|" * (len(cols) + 1)]

    def get(name, ex, size, field):
        r = results.get(name, {}).get(ex, {}).get(size)
        return None if r is None or "error" in r else r.get(field)

    def row(label, ex, size, field, digits=0, lower_better=False, note_partial=False):
        vals = [get(name, ex, size, field) for name in cols]
        cells = []
        for name, v in zip(cols, vals):
            cell = fmt(v, digits)
            declared = get(name, ex, size, "declared" if field == "declare_rate" else "deleted")
            if note_partial and v is not None and declared is not None and declared < size:
                cell += f" ({declared:,} of {size:,}, bounded)"
            cells.append(cell)
        mq, rb = get("mqnode", ex, size, field), get("RabbitMQ", ex, size, field)
        ratio = "—"
        if mq and rb:
            ratio = f"{(rb / mq if lower_better else mq / rb):.2f}×"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")

    for ex in args.exchanges:
        for size in args.sizes:
            row(f"{ex}: declare + bind, {size:,} queues (/s)", ex, size, "declare_rate", note_partial=True)
        for size in args.sizes:
            row(f"{ex}: delete, {size:,} queues (/s)", ex, size, "delete_rate", note_partial=True)
        big = max(args.sizes)
        if ex == "amq.topic":
            row(f"{ex}: publish with confirms over {big:,} bindings (msg/s)", ex, big, "publish_rate")
        for size in args.sizes:
            if size >= 10000:
                row(f"{ex}: RSS per queue with its binding, {size:,} queues (bytes, lower is better)", ex, size,
                    "rss_per_queue_bytes", lower_better=True)
    lines.append("")
    lines.append("Flatness (rate at the smallest size / rate at the largest; ≤ 2 = flat within 2×):")
    lines.append("")
    lines.append("| broker | " + " | ".join(f"{ex} {what}" for ex in args.exchanges
                                          for what in ("declare+bind", "delete")) + " |")
    lines.append("|---|" + "---:|" * (2 * len(args.exchanges)))
    small, big = min(args.sizes), max(args.sizes)
    for name in cols:
        cells = []
        for ex in args.exchanges:
            for field in ("declare_rate", "delete_rate"):
                a, b = get(name, ex, small, field), get(name, ex, big, field)
                cells.append(f"{a / b:.2f}" if a and b else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mqnode-bin", required=True)
    ap.add_argument("--baseline-bin", help="an older mqnode to run too, as 'mqnode before'")
    ap.add_argument("--bench-bin", default=os.path.join(here, "..", "build", "bench", "mqnode-bindings-bench"))
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--exchanges", default="amq.topic,amq.direct")
    ap.add_argument("--publish-seconds", type=float, default=10.0)
    ap.add_argument("--confirm-window", type=int, default=1000)
    ap.add_argument("--rabbit-phase-limit", type=float, default=0,
                    help="stop RabbitMQ's declare and delete phases after S seconds (0 = never)")
    ap.add_argument("--baseline-phase-limit", type=float, default=120,
                    help="the same for --baseline-bin (default 120: the old direct exchange is quadratic)")
    ap.add_argument("--skip-rabbit", action="store_true")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=3600.0, help="limit for publish + delete after the hold (s)")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    args.exchanges = args.exchanges.split(",")
    args.bench_bin = os.path.abspath(args.bench_bin)

    signal.signal(signal.SIGTERM, brun._signal_to_exit)
    signal.signal(signal.SIGHUP, brun._signal_to_exit)
    brokers = []
    if args.baseline_bin:
        brokers.append(("mqnode before", lambda: brun.MqnodeBroker(os.path.abspath(args.baseline_bin)),
                        args.baseline_phase_limit))
    brokers.append(("mqnode", lambda: brun.MqnodeBroker(os.path.abspath(args.mqnode_bin)), 0))
    if not args.skip_rabbit:
        brokers.append(("RabbitMQ", lambda: brun.RabbitBroker(), args.rabbit_phase_limit))

    results, rc = {}, 0
    try:
        for name, make, limit in brokers:
            for ex in args.exchanges:
                for size in args.sizes:
                    publish = ex == "amq.topic" and size == max(args.sizes)
                    try:
                        res = run_one(args, make(), ex, size, publish, limit)
                    except brun.BenchFailure as e:
                        log(f"{name} {ex} {size}: FAILED: {e}")
                        res, rc = {"error": str(e)}, 1
                    results.setdefault(name, {}).setdefault(ex, {})[size] = res
    except KeyboardInterrupt:
        brun.run_cleanups()
        return 130
    print(markdown(args, [(n, m) for n, m, _ in brokers], results), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"params": {k: getattr(args, k) for k in ("sizes", "exchanges", "publish_seconds",
                                                                 "confirm_window", "rabbit_phase_limit",
                                                                 "baseline_phase_limit")},
                       "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                   "loadavg": os.getloadavg()},
                       "results": {n: {ex: {str(s): r for s, r in by.items()} for ex, by in v.items()}
                                   for n, v in results.items()}}, f, indent=2)
    return rc


if __name__ == "__main__":
    sys.exit(main())
