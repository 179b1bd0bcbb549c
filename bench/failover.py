#!/usr/bin/env python3
"""VIP failover time: mqnode's `vip` role versus Debian's keepalived, side by side on the same
private LAN of network namespaces (root), in one run, with the same advert_int.

Three hosts on a bridge: h1 the master (priority 150), h2 the backup (100), h3 a client that
sends a UDP probe to the VIP every 5 ms. h1 and h2 each run a tiny UDP responder that answers
with its own name. The failover time is from the trigger to the first answer from h2 through
the VIP, i.e. until the VIP really answers on the new master (GARP included).

The failure is triggered at a random moment (0.5-5.5 s after the VIP settled, seeded), so
polling intervals and advert timers are met at a random phase.

Scenarios (each repeated --runs times; the table shows median, min and max):
  kill  the master's host dies: its daemon gets SIGKILL and its link goes down, so only the
        backup's master-down timer (3 x advert + skew) can move the VIP.
  lb    the master's load balancer can no longer serve: its only backend dies. Both hosts run
        the classic stack with the same lb health check (tcp, every 100 ms, fall 1):
        keepalived: HAProxy in front of the backend, and keepalived's track_script as the
          classic deployment has it: every 5 s, curl of HAProxy's health page
          (monitor-uri, failing once the backend has no server), fall 1, in two variants:
          weight 0 (Fault: the master leaves with a priority-0 advert, as when the check
          stops keepalived) and weight -60 (150 -> 90 < 100: the backup ignores the lower
          master until its master-down interval runs out, then preempts).
        mqnode: `--role lb,vip`, the instance tracking "lb" in-process (Fault with a
          priority-0 advert on the lb's Down health, the backup takes over after its skew).

    sudo python3 bench/failover.py --mqnode-bin build/app/mqnode [--runs 5] [--json out.json]
                                   [--only kill,lb]
"""

import argparse
import json
import os
import random
import shutil
import statistics
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

BACKEND = r"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 5999))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

# The lb both stacks run, with the same health check of the one local backend.
HAPROXY_CFG = """global
  maxconn 256
defaults
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend amqp
  mode tcp
  bind 0.0.0.0:5670
  default_backend rabbitmq
backend rabbitmq
  mode tcp
  server local 127.0.0.1:5999 check inter 100 fall 1 rise 1
frontend health
  mode http
  bind 127.0.0.1:8405
  monitor-uri /health
  monitor fail if { nbsrv(rabbitmq) lt 1 }
"""
LB_CONFIG = {"frontends": [{"name": "amqp", "bind": "0.0.0.0:5670", "backend": "rabbitmq"}],
             "backends": [{"name": "rabbitmq", "check": {"type": "tcp", "inter_ms": 100, "rise": 1, "fall": 1},
                           "servers": [{"name": "local", "address": "127.0.0.1:5999"}]}]}
# keepalived's side of the classic deployment: poll the lb every 5 s; on failure go to Fault
# (weight 0) or lower the priority below the backup's (weight -60).
TRACK_SCRIPT_INTERVAL = 5
KEEPALIVED_TRACK_WEIGHT = {"keepalived": 0, "keepalived-weight": -60}


def keepalived_conf(lan, name, priority, version, advert_int, track, weight=0):
    d = os.path.join(lan.workdir, name)
    os.makedirs(d, exist_ok=True)
    lines = ["global_defs {", "  router_id %s" % name, "  vrrp_version %d" % version,
             "  enable_script_security", "  script_user root", "}"]
    if track:
        lines += ["vrrp_script chk_haproxy {",
                  '  script "/usr/bin/curl -sf -o /dev/null --max-time 1 http://127.0.0.1:8405/health"',
                  "  interval %d" % TRACK_SCRIPT_INTERVAL, "  fall 1", "  rise 1", "  weight %d" % weight, "}"]
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


def one_run(lan, impl, scenario, version, advert_int, binary, phase):
    procs = []
    tag = "%s-%s-v%d-%s-%d" % (impl, scenario, version, advert_int, int(time.time() * 1000) % 100000)
    try:
        for h in (1, 2):
            procs.append(lan.start(h, ["/usr/bin/python3", "-c", RESPONDER, "h%d" % h], "resp-h%d-%s" % (h, tag)))
        backends = {}
        if scenario == "lb":
            for h in (1, 2):
                backends[h] = lan.start(h, ["/usr/bin/python3", "-u", "-c", BACKEND], "backend-h%d-%s" % (h, tag))
                procs.append(backends[h])
            for b in backends.values():
                V.wait_for(lambda: "listening" in b.output(), 10, what="backend listening (%s)" % tag)
        daemons = {}
        for h, prio in ((1, 150), (2, 100)):
            name = "%s-h%d-%s" % (impl, h, tag)
            if impl != "mqnode":
                if scenario == "lb":
                    cfg = os.path.join(lan.workdir, "haproxy-h%d-%s.cfg" % (h, tag))
                    with open(cfg, "w") as f:
                        f.write(HAPROXY_CFG)
                    procs.append(lan.start(h, ["/usr/sbin/haproxy", "-db", "-f", cfg], "haproxy-h%d-%s" % (h, tag)))
                    health = ["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:8405/health"]
                    V.wait_for(lambda: lan.exec(h, health, check=False).returncode == 0, 10,
                               what="haproxy healthy on h%d (%s)" % (h, tag))
                argv = keepalived_conf(lan, name, prio, version, advert_int, track=(scenario == "lb"),
                                       weight=KEEPALIVED_TRACK_WEIGHT[impl])
            else:
                inst = lan.instance(prio, version=version, advert_int=advert_int)
                if scenario == "lb":
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
        else:
            backends[1].kill()
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
    ap.add_argument("--only", help="comma list of scenarios to run (kill, lb); default both")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("failover.py needs root (network namespaces, raw sockets)")
    os.environ["MQNODE_BIN"] = os.path.abspath(args.mqnode_bin)
    # keepalived and mqnode alternate within each scenario, so a busier moment of the
    # machine hits both.
    cases = [(impl, scenario, version, adv)
             for scenario in ("kill", "lb") for version, adv in ((2, 1), (3, 0.1))
             for impl in ("keepalived", "keepalived-weight", "mqnode")
             if not (scenario == "kill" and impl == "keepalived-weight")]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c[1] in keep]
    phase = random.Random(args.seed)
    V.remove_stale()
    lan = V.Lan(hosts=3).create()
    times = {c: [] for c in cases}
    done = False
    try:
        # Round-robin over the cases, one run each per round: keepalived and mqnode meet the
        # same moments of a shared, noisy machine.
        for _ in range(args.runs):
            for c in cases:
                impl, scenario, version, adv = c
                times[c].append(one_run(lan, impl, scenario, version, adv, args.mqnode_bin, phase))
                print("%-10s %-4s v%d advert %-4s %.3f s" % (impl, scenario, version, adv, times[c][-1]),
                      file=sys.stderr, flush=True)
        done = True
    finally:
        lan.destroy()
        # The daemons' logs are kept only when a run failed.
        if done:
            shutil.rmtree(lan.workdir, ignore_errors=True)
        else:
            print("logs of the failed run: %s" % lan.workdir, file=sys.stderr)
    results = [{"impl": c[0], "scenario": c[1], "version": c[2], "advert_int": c[3],
                "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs": t}
               for c, t in times.items()]
    rows = [("kill", "keepalived", "master host dies (SIGKILL + link down)"),
            ("lb", "keepalived", "master's lb loses its backend; keepalived track_script every %d s, weight 0 (Fault)"
             % TRACK_SCRIPT_INTERVAL),
            ("lb", "keepalived-weight", "master's lb loses its backend; keepalived track_script every %d s, weight -60"
             % TRACK_SCRIPT_INTERVAL)]
    print("| scenario | VRRP | advert_int | keepalived median (min–max) | mqnode median (min–max) | keepalived / mqnode |")
    print("|---|---|---|---|---|---|")
    by = {(r["impl"], r["scenario"], r["version"], r["advert_int"]): r for r in results}
    fmt = lambda r: "%.2f s (%.2f–%.2f)" % (r["median_s"], r["min_s"], r["max_s"]) if r else "–"
    for scenario, kimpl, what in rows:
        for version, adv in ((2, 1), (3, 0.1)):
            k = by.get((kimpl, scenario, version, adv))
            m = by.get(("mqnode", scenario, version, adv))
            if not (k or m):
                continue
            ratio = "%.1f×" % (k["median_s"] / m["median_s"]) if k and m else "–"
            print("| %s | v%d | %s s | %s | %s | %s |" % (what, version, adv, fmt(k), fmt(m), ratio))
    m2, m3 = by.get(("mqnode", "lb", 2, 1)), by.get(("mqnode", "lb", 3, 0.1))
    print()
    for kimpl in ("keepalived", "keepalived-weight"):
        for version, adv, m in ((2, 1, m2), (3, 0.1, m3)):
            k = by.get((kimpl, "lb", version, adv))
            if k and m:
                ratio = k["median_s"] / m["median_s"]
                print("target: mqnode >= 5x faster than %s (track_script weight %d) on lb failure, v%d advert %s s: "
                      "%.1fx %s" % (kimpl, KEEPALIVED_TRACK_WEIGHT[kimpl], version, adv, ratio,
                                    "met" if ratio >= 5 else "NOT met"))
    if m3:
        print("target: mqnode < 0.5 s on lb failure with v3 advert 0.1 s: %.3f s %s"
              % (m3["median_s"], "met" if m3["median_s"] < 0.5 else "NOT met"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
