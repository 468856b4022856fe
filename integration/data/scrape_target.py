#!/usr/bin/env python3
"""A live scrape target for the integration stack: kube-state-metrics and cAdvisor look-alikes.

Serves, for every cluster named on the command line,

  /metrics/<cluster>/kube-state-metrics   kube_pod_info, kube_pod_labels, kube_pod_owner,
      kube_namespace_labels, kube_node_labels, kube_node_info, kube_node_status_capacity,
      kube_node_status_allocatable, kube_pod_container_resource_requests and _limits (cpu,
      memory, nvidia_com_gpu), kube_persistentvolumeclaim_info,
      kube_persistentvolume_capacity_bytes
  /metrics/<cluster>/cadvisor             container_cpu_usage_seconds_total,
      container_memory_working_set_bytes, container_network_receive_bytes_total,
      container_network_transmit_bytes_total (with the node label a kubelet scrape's
      relabeling would add, pod-level cgroups with container="" and, in cluster b, pause
      containers with container="POD")

in the Prometheus text format, with the labels gen_data.py's backfilled families carry. What
the backfill cannot have, because it is about scrapes, changes every few tens of seconds:

  - pods start and end (Prometheus writes staleness markers for every series of an ended pod);
  - a pod's containers restart: the same series, its counters start again from zero;
  - StatefulSet pods move between nodes: the same name, a new uid, a new node;
  - batch pods live for part of their period only.

Everything is a pure function of --seed, the cluster and the wall clock at the scrape: two
Prometheus scraping a second apart (an HA pair) see the same pods and nearly equal counters,
as real replicas do, and a rerun with the same seed at the same time serves the same bytes.

  scrape_target.py --port 19080 --clusters a,b,c        serve
  scrape_target.py --clusters a --dump 1796185875       print one cluster's pages at a time
"""

import argparse
import hashlib
import http.server
import math
import random
import sys
import time

NAMESPACES = ["team-a", "team-b", "default", "kube-system", "batch"]


def h64(*parts):
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def rng(*parts):
    return random.Random(h64(*parts))


class Cluster:
    """The objects of one cluster; `pods(t)` is its pods alive at wall clock t (seconds)."""

    def __init__(self, seed, name, index, nodes, slots):
        self.seed, self.name, self.index = seed, name, index
        r = rng(seed, name, "nodes")
        self.nodes = []
        for ni in range(nodes):
            gpu = ni == nodes - 1
            zone = f"us-east-1{'abc'[r.randrange(0, 3)]}"
            self.nodes.append(dict(
                name=f"ip-10-{index + 100}-{ni}-{r.randrange(10, 250)}.ec2.internal", gpu=gpu,
                zone=zone, cpu=4.0 if gpu else 8.0, mem=float((16 if gpu else 32) * 2**30),
                itype="g4dn.xlarge" if gpu else "m5.2xlarge",
                ip=f"10.{index + 100}.0.{r.randrange(2, 254)}",
                provider_id=f"aws:///{zone}/i-{r.getrandbits(64):016x}"))
        # Pod slots: each slot runs one pod at a time and changes it every period.
        kinds = ["deploy", "deploy", "statefulset", "restarting", "batch", "deploy",
                 "statefulset", "batch", "restarting", "deploy"]
        self.slots = []
        for s in range(slots):
            r = rng(seed, name, "slot", s)
            kind = kinds[s % len(kinds)]
            app = f"{['api', 'web', 'worker', 'cache', 'proxy'][s % 5]}{s // 5}"
            self.slots.append(dict(
                index=s, kind=kind, app=app, ns=NAMESPACES[s % 4] if kind != "batch" else "batch",
                period=float(r.randrange(30, 90)), phase=r.uniform(0, 90),
                containers=[app] + (["istio-proxy"] if s % 3 == 0 else []),
                cpu=r.choice([0.05, 0.1, 0.25, 0.5, 1.0]),
                mem=float(r.choice([64, 128, 256, 512, 1024]) * 2**20),
                gpu=kind == "statefulset" and s == 2))

    def pods(self, t):
        """The pods alive at t: dicts with their identity, node, start and containers."""
        out = []
        for sl in self.slots:
            period, phase = sl["period"], sl["phase"]
            epoch = math.floor((t - phase) / period)
            start = phase + epoch * period
            r = rng(self.seed, self.name, "pod", sl["index"], epoch)
            kind = sl["kind"]
            if kind == "restarting":
                # One pod for 6 periods; its containers restart at every period boundary in
                # between: the series stay, the counters fall back to zero.
                life = math.floor(epoch / 6)
                r = rng(self.seed, self.name, "pod", sl["index"], "life", life)
                born = phase + life * 6 * period
                name_key, node = life, r.randrange(0, len(self.nodes) - 1)
                restarted = start if epoch > life * 6 else None
                end = born + 6 * period - 5.0
            elif kind == "statefulset":
                # Same name, a new uid on another node every period (with a few seconds
                # between the old pod's end and the new one's start).
                born, name_key, restarted = start + 4.0, None, None
                node = (epoch + sl["index"]) % (len(self.nodes) - (0 if sl["gpu"] else 1))
                if sl["gpu"]:
                    node = len(self.nodes) - 1
                end = start + period
            elif kind == "batch":
                # A job pod that runs for a part of its period only.
                born, name_key, restarted = start + r.uniform(0, 0.3) * period, epoch, None
                node = r.randrange(0, len(self.nodes))
                end = born + r.uniform(0.3, 0.6) * period
            else:
                # A Deployment's pod replaced by a new one every period.
                born, name_key, restarted = start + 2.0, epoch, None
                node = r.randrange(0, len(self.nodes) - 1)
                end = start + period
            if not born <= t < end:
                continue
            ident = rng(self.seed, self.name, "ident", sl["index"], name_key if name_key is not None else epoch)
            app = sl["app"]
            if kind == "statefulset":
                pod, owner_kind, owner = f"{app}-db-0", "StatefulSet", f"{app}-db"
            elif kind == "batch":
                owner = f"report-{sl['index']}-{epoch % 100000}"
                pod, owner_kind = f"{owner}-{ident.getrandbits(25):05x}", "Job"
            else:
                rs = f"{app}-{h64(self.name, app) % 16**10:010x}"
                pod, owner_kind, owner = f"{rs}-{ident.getrandbits(25):05x}", "ReplicaSet", rs
            uid = "%08x-%04x-%04x-%04x-%012x" % (
                ident.getrandbits(32), ident.getrandbits(16), ident.getrandbits(16),
                ident.getrandbits(16), ident.getrandbits(48))
            out.append(dict(slot=sl, pod=pod, uid=uid, ns=sl["ns"], owner_kind=owner_kind,
                            owner=owner, node=self.nodes[node], born=born,
                            since=restarted if restarted is not None else born,
                            ip=f"100.64.{ident.randrange(0, 255)}.{ident.randrange(2, 254)}",
                            key=(sl["index"], epoch if name_key is None else name_key)))
        return out


def fmt(v):
    return repr(float(v))


def labels(d):
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(d.items()) if v != "") + "}"


def ksm_page(c, t):
    lines = []

    def family(name, rows, kind="gauge"):
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels(lab)} {fmt(v)}" for lab, v in rows)

    family("kube_node_info", [({
        "node": n["name"], "container_runtime_version": "containerd://1.7.11",
        "internal_ip": n["ip"], "kernel_version": "5.10.205-195.807.amzn2.x86_64",
        "kubelet_version": "v1.29.0-eks-5e0fdde", "os_image": "Amazon Linux 2",
        "provider_id": n["provider_id"]}, 1) for n in c.nodes])
    family("kube_node_labels", [({
        "node": n["name"], "label_kubernetes_io_hostname": n["name"],
        "label_node_kubernetes_io_instance_type": n["itype"],
        "label_topology_kubernetes_io_zone": n["zone"],
        "label_eks_amazonaws_com_nodegroup": "gpu" if n["gpu"] else "general"}, 1)
        for n in c.nodes])
    for fam, frac in (("kube_node_status_capacity", 1.0), ("kube_node_status_allocatable", 0.92)):
        rows = []
        for n in c.nodes:
            res = [("cpu", "core", n["cpu"] * frac), ("memory", "byte", math.floor(n["mem"] * frac)),
                   ("pods", "integer", 110)]
            if n["gpu"]:
                res.append(("nvidia_com_gpu", "integer", 1))
            rows += [({"node": n["name"], "resource": r, "unit": u}, v) for r, u, v in res]
        family(fam, rows)
    family("kube_namespace_labels", [({
        "namespace": ns, "label_kubernetes_io_metadata_name": ns,
        "label_team": ns.split("-")[-1] if ns.startswith("team") else "platform"}, 1)
        for ns in NAMESPACES])

    pods = c.pods(t)
    info, plabels, owner, req, lim, pvc, pv = [], [], [], [], [], [], []
    for p in pods:
        base = {"namespace": p["ns"], "pod": p["pod"], "uid": p["uid"]}
        info.append(({**base, "created_by_kind": p["owner_kind"], "created_by_name": p["owner"],
                      "host_ip": p["node"]["ip"], "host_network": "false",
                      "node": p["node"]["name"], "pod_ip": p["ip"]}, 1))
        plabels.append(({**base, "label_app": p["slot"]["app"],
                         "label_team": p["ns"].split("-")[-1]}, 1))
        owner.append(({**base, "owner_is_controller": "true", "owner_kind": p["owner_kind"],
                       "owner_name": p["owner"]}, 1))
        sl = p["slot"]
        for k, cont in enumerate(p["slot"]["containers"]):
            cpu, mem = (sl["cpu"], sl["mem"]) if k == 0 else (0.1, 128.0 * 2**20)
            res = [("cpu", "core", cpu, cpu * 2), ("memory", "byte", mem, mem * 2)]
            if sl["gpu"] and k == 0:
                res.append(("nvidia_com_gpu", "integer", 1, 1))
            for r, u, rq, lm in res:
                lab = {**base, "container": cont, "node": p["node"]["name"], "resource": r,
                       "unit": u}
                req.append((lab, rq))
                lim.append((lab, lm))
        if p["owner_kind"] == "StatefulSet":
            vol = f"pvc-{h64(c.name, p['pod']) % 16**12:012x}"
            pvc.append(({"namespace": p["ns"], "persistentvolumeclaim": f"data-{p['pod']}",
                         "storageclass": "gp3", "volumename": vol}, 1))
            pv.append(({"persistentvolume": vol}, float(20 * 2**30)))
    family("kube_pod_info", info)
    family("kube_pod_labels", plabels)
    family("kube_pod_owner", owner)
    family("kube_pod_container_resource_requests", req)
    family("kube_pod_container_resource_limits", lim)
    family("kube_persistentvolumeclaim_info", pvc)
    family("kube_persistentvolume_capacity_bytes", pv)
    return "\n".join(lines) + "\n"


def cadvisor_page(c, t):
    cpu, mem, rx, tx = [], [], [], []
    for p in c.pods(t):
        sl = p["slot"]
        common = {"namespace": p["ns"], "pod": p["pod"], "node": p["node"]["name"],
                  "metrics_path": "/metrics/cadvisor"}
        pod_id = f"/kubepods/burstable/pod{p['uid']}"
        r = rng(c.seed, c.name, "usage", p["key"])
        pod_cpu, pod_mem = 0.0, 0.0
        for k, cont in enumerate(sl["containers"]):
            cid = f"{pod_id}/{h64(p['uid'], cont):016x}"
            lab = {**common, "container": cont, "id": cid, "name": cid[-16:],
                   "image": f"registry.example.com/{sl['app']}:1.{k}"}
            # A counter: rate x seconds since the container (re)started.
            rate = (sl["cpu"] if k == 0 else 0.1) * r.uniform(0.1, 1.5)
            used = rate * (t - p["since"])
            pod_cpu += rate * (t - p["born"])
            cpu.append(({**lab, "cpu": "total"}, used))
            wave = (sl["mem"] if k == 0 else 128.0 * 2**20) * r.uniform(0.3, 0.9)
            m = math.floor(wave * (1 + 0.1 * math.sin(r.uniform(0, 6.28) + t / 20.0)) / 4096) * 4096
            pod_mem += m
            mem.append((lab, m))
        # The pod-level cgroup (container=""): double counts unless filtered out.
        lab = {**common, "id": pod_id}
        cpu.append(({**lab, "cpu": "total"}, pod_cpu))
        mem.append((lab, pod_mem * 1.05))
        if c.name == "b":  # docker-era pause container
            pid = f"{pod_id}/{h64(p['uid'], 'POD'):016x}"
            cpu.append(({**common, "container": "POD", "cpu": "total", "id": pid,
                         "image": "registry.k8s.io/pause:3.9", "name": pid[-16:]},
                        0.0001 * (t - p["born"])))
        for fam in (rx, tx):
            rate = r.uniform(1e3, 5e6)
            fam.append(({**lab, "interface": "eth0"}, r.uniform(0, 1e6) + rate * (t - p["born"])))
    lines = []
    for name, rows, kind in (("container_cpu_usage_seconds_total", cpu, "counter"),
                             ("container_memory_working_set_bytes", mem, "gauge"),
                             ("container_network_receive_bytes_total", rx, "counter"),
                             ("container_network_transmit_bytes_total", tx, "counter")):
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels(lab)} {fmt(v)}" for lab, v in rows)
    return "\n".join(lines) + "\n"


PAGES = {"kube-state-metrics": ksm_page, "cadvisor": cadvisor_page}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=19080)
    ap.add_argument("--clusters", default="a,b,c", help="comma-separated cluster names")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nodes", type=int, default=3, help="nodes per cluster (the last has a GPU)")
    ap.add_argument("--slots", type=int, default=10, help="pod slots per cluster")
    ap.add_argument("--dump", type=float, help="print the pages at this unix time and exit")
    args = ap.parse_args()
    if args.nodes < 3:
        sys.exit("error: --nodes must be at least 3 (pods move between the non-GPU nodes)")
    clusters = {name: Cluster(args.seed, name, i, args.nodes, args.slots)
                for i, name in enumerate(args.clusters.split(","))}
    if args.dump is not None:
        for name, c in clusters.items():
            for page, render in PAGES.items():
                print(f"## /metrics/{name}/{page}")
                sys.stdout.write(render(c, args.dump))
        return

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["-", "healthy"]:
                body = b"ok\n"
            elif len(parts) == 3 and parts[0] == "metrics" and parts[1] in clusters \
                    and parts[2] in PAGES:
                body = PAGES[parts[2]](clusters[parts[1]], time.time()).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"serving clusters {args.clusters} on 127.0.0.1:{args.port}", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
