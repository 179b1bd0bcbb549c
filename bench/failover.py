#!/usr/bin/env python3
"""VIP failover time: mqnode's `vip` role versus Debian's keepalived, side by side on the same
private LAN of network namespaces (root), one run after the other.

Three hosts on a bridge: h1 the master (priority 150), h2 the backup (100), h3 a client that
sends a UDP probe to the VIP every 5 ms. h1 and h2 each run a tiny UDP responder that answers
with its own name. The failover time is from the trigger to the first answer from h2 through
the VIP, i.e. until the VIP really answers on the new master (GARP included).

The failure is triggered at a random moment (0-5 s after the VIP settled, seeded), so polling
intervals and advert timers are met at a random phase.

Scenarios (each repeated --runs times; the table shows median, min and max):
  kill      h1's daemon gets SIGKILL and h1's link goes down (a dead host): master-down timer.
  lb        the load balancer on h1 fails.
            keepalived: a track_script as in the classic deployment, curl of the stats page
            every 5 s (fall 1); the stats page (a stand-in HTTP server) is killed.
            mqnode: until the lb role is wired into the binary, the vrrp module's own
            shutdown (SIGTERM) stands in for it: the same protocol path as a tracked module
            going Down (leave Master at once with a priority-0 advert; the backup takes over
            after its skew time). The in-process reaction itself is unit-tested.
  lbreal    mqnode only: h1 and h2 run `--role lb,vip`, each lb with one local backend
            (tcp check every 100 ms, fall 1) and the instance tracking "lb"; h1's backend is
            killed. The time includes the lb's detection (<= one check interval), its Down
            health on the EventBus, Fault with a priority-0 advert, and the backup's skew.

    sudo python3 bench/failover.py --mqnode-bin build/app/mqnode [--runs 3] [--json out.json]
                                   [--only lbreal,lb]
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "netns"))

import vrrp_net as V  # noqa: E402

RESPONDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
name = sys.argv[1].encode()
while True:
    d, a = s.recvfrom(100)
    s.sendto(d + b" " + name, a)
"""

# Prints "<wall time> <host>" for the first answer from each new host, then keeps going.
PROBE = r"""
import socket, sys, time
vip = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
seen = set()
n = 0
while True:
    n += 1
    try:
        s.sendto(b"%d" % n, (vip, 9999))
    except OSError:
        pass
    end = time.time() + 0.005
    while True:
        try:
            d = s.recv(100)
        except BlockingIOError:
            if time.time() >= end:
                break
            time.sleep(0.0005)
            continue
        except OSError:
            break
        host = d.split()[-1].decode()
        if host not in seen:
            seen.add(host)
            print("%.6f %s" % (time.time(), host), flush=True)
"""

STATS_PAGE = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 8080), H).serve_forever()
"""


def keepalived_conf(lan, name, priority, version, advert_int, track):
    d = os.path.join(lan.workdir, name)
    os.makedirs(d, exist_ok=True)
    lines = ["global_defs {", "  router_id %s" % name, "  vrrp_version %d" % version,
             "  enable_script_security", "  script_user root", "}"]
    if track:
        # The classic deployment's check: curl the HAProxy stats page every 5 s.
        lines += ["vrrp_script chk_haproxy {",
                  '  script "/usr/bin/curl -s -o /dev/null --max-time 1 http://127.0.0.1:8080/haproxy"',
                  "  interval 5", "  fall 1", "  rise 1", "}"]
    lines += ["vrrp_instance VI_1 {", "  state BACKUP", "  interface eth0", "  virtual_router_id 51",
              "  priority %d" % priority, "  advert_int %s" % advert_int,
              "  virtual_ipaddress {", "    %s/24 dev eth0" % lan.vip(), "  }"]
    if track:
        lines += ["  track_script {", "    chk_haproxy", "  }"]
    lines += ["}"]
    conf = os.path.join(d, "keepalived.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [V.KEEPALIVED, "--dont-fork", "--log-console", "--vrrp", "-f", conf,
            "-p", os.path.join(d, "k.pid"), "-r", os.path.join(d, "v.pid"), "-c", os.path.join(d, "c.pid")]


BACKEND = r"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 5999))
s.listen(16)
while True:
    c, _ = s.accept()
    c.close()
"""

LB_CONFIG = {"frontends": [{"name": "amqp", "bind": "0.0.0.0:5670", "backend": "rabbitmq"}],
             "backends": [{"name": "rabbitmq", "check": {"type": "tcp", "inter_ms": 100, "rise": 1, "fall": 1},
                           "servers": [{"name": "local", "address": "127.0.0.1:5999"}]}]}


def one_run(lan, impl, scenario, version, advert_int, binary, phase):
    procs = []
    tag = "%s-%s-v%d-%s-%d" % (impl, scenario, version, advert_int, int(time.time() * 1000) % 100000)
    try:
        for h in (1, 2):
            procs.append(lan.start(h, ["/usr/bin/python3", "-c", RESPONDER, "h%d" % h], "resp-h%d-%s" % (h, tag)))
        stats = None
        if impl == "keepalived" and scenario == "lb":
            stats = lan.start(1, ["/usr/bin/python3", "-c", STATS_PAGE], "stats-%s" % tag)
            procs.append(stats)
            time.sleep(0.3)
        backends = {}
        if scenario == "lbreal":
            for h in (1, 2):
                backends[h] = lan.start(h, ["/usr/bin/python3", "-c", BACKEND], "backend-h%d-%s" % (h, tag))
                procs.append(backends[h])
            time.sleep(0.3)
        daemons = {}
        for h, prio in ((1, 150), (2, 100)):
            name = "%s-h%d-%s" % (impl, h, tag)
            if impl == "keepalived":
                argv = keepalived_conf(lan, name, prio, version, advert_int, track=(scenario == "lb" and h == 1))
            else:
                inst = lan.instance(prio, version=version, advert_int=advert_int)
                if version == 2:
                    inst["advert_int"] = int(advert_int)
                if scenario == "lbreal":
                    inst["track"] = ["lb"]
                    argv = lan.mqnode_argv([inst], name, roles="lb,vip", extra={"lb": LB_CONFIG})
                else:
                    argv = lan.mqnode_argv([inst], name)
                argv[0] = os.path.abspath(binary)
            daemons[h] = lan.start(h, argv, name)
            procs.append(daemons[h])
        V.wait_for(lambda: lan.holders(lan.vip()) == [1], 30, what="VIP on h1 (%s)" % tag)
        probe = lan.start(3, ["/usr/bin/python3", "-u", "-c", PROBE, lan.vip()], "probe-%s" % tag)
        procs.append(probe)
        V.wait_for(lambda: " h1" in probe.output(), 10, what="probe answered by h1")
        # Fail at a random moment: a polling check (track_script every 5 s) and the advert
        # timers are then met at a random phase, as a real failure would meet them.
        time.sleep(0.5 + phase.uniform(0, 5))

        t0 = time.time()
        if scenario == "kill":
            daemons[1].kill()
            lan.exec(1, ["ip", "link", "set", "eth0", "down"])
        elif scenario == "lbreal":
            backends[1].kill()
        elif impl == "keepalived":
            stats.kill()
        else:
            daemons[1].signal(signal.SIGTERM)
        line = V.wait_for(lambda: [l for l in probe.output().splitlines() if l.endswith(" h2")], 30,
                          what="probe answered by h2 (%s)" % tag)
        return float(line[0].split()[0]) - t0
    finally:
        for p in procs:
            p.kill()
        lan.exec(1, ["ip", "link", "set", "eth0", "up"], check=False)
        for h in (1, 2):
            lan.exec(h, ["ip", "addr", "del", lan.vip() + "/24", "dev", "eth0"], check=False)
        time.sleep(0.3)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mqnode-bin", default=os.path.join(HERE, "..", "build", "app", "mqnode"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1, help="seed of the random failure moments")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--only", help="comma list of scenarios to run (kill, lb, lbreal); default all")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("failover.py needs root (network namespaces, raw sockets)")
    os.environ["MQNODE_BIN"] = os.path.abspath(args.mqnode_bin)
    cases = [
        ("keepalived", "kill", 2, 1),
        ("mqnode", "kill", 2, 1),
        ("keepalived", "kill", 3, 0.1),
        ("mqnode", "kill", 3, 0.1),
        ("keepalived", "lb", 2, 1),
        ("mqnode", "lb", 2, 1),
        ("keepalived", "lb", 3, 0.1),
        ("mqnode", "lb", 3, 0.1),
        ("mqnode", "lbreal", 2, 1),
        ("mqnode", "lbreal", 3, 0.1),
    ]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c[1] in keep]
    phase = random.Random(args.seed)
    V.remove_stale()
    lan = V.Lan(hosts=3).create()
    results = []
    try:
        for impl, scenario, version, adv in cases:
            times = []
            for _ in range(args.runs):
                times.append(one_run(lan, impl, scenario, version, adv, args.mqnode_bin, phase))
            results.append({"impl": impl, "scenario": scenario, "version": version, "advert_int": adv,
                            "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                            "runs": times})
            print("%-10s %-4s v%d advert %-4s median %.3f s  (min %.3f, max %.3f)"
                  % (impl, scenario, version, adv, statistics.median(times), min(times), max(times)),
                  file=sys.stderr, flush=True)
    finally:
        lan.destroy()
    what = {"kill": "host dies (SIGKILL + link down)",
            "lb": "load balancer fails (keepalived: track_script curl, interval 5)",
            "lbreal": "lb's backend dies (mqnode --role lb,vip, check 100 ms fall 1)"}
    print("| scenario | VRRP | advert_int | keepalived median (min–max) | mqnode median (min–max) | ratio of medians |")
    print("|---|---|---|---|---|---|")
    by = {(r["impl"], r["scenario"], r["version"], r["advert_int"]): r for r in results}
    for scenario in ("kill", "lb", "lbreal"):
        for version, adv in ((2, 1), (3, 0.1)):
            k = by.get(("keepalived", scenario, version, adv))
            m = by.get(("mqnode", scenario, version, adv))
            if not (k or m):
                continue
            fmt = lambda r: "%.2f s (%.2f–%.2f)" % (r["median_s"], r["min_s"], r["max_s"]) if r else "–"
            ratio = "%.1f×" % (k["median_s"] / m["median_s"]) if k and m else "–"
            print("| %s | v%d | %s s | %s | %s | %s |" % (what[scenario], version, adv, fmt(k), fmt(m), ratio))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
