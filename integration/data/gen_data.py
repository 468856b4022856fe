#!/usr/bin/env python3
"""Kubernetes-like metrics for the integration stack, with a known ground truth.

Writes, for every Prometheus instance of the test topology, OpenMetrics text files (one per
time slice) that `promtool tsdb create-blocks-from openmetrics` backfills, plus `truth.json`:
the values a correct PromQL engine must return for a few checks, computed from the very
samples written here.

Topology (the cluster/replica labels are Prometheus external labels, not in the data):
  cluster "a": an HA pair, instances "a-0" (replica a-0) and "a-1" (replica a-1). Both scrape
  the same targets independently: replica a-1 scrapes 3.2 s later, its gauges are sampled at
  its own times so values differ slightly, and replica a-0 misses a 15-minute stretch (a
  restart), so deduplication must switch replicas.
  cluster "b" (and any further cluster): one instance.

What is in the data, because it breaks naive exporters:
  - kube-state-metrics v2 families with uid/node/resource/unit labels, job and instance set as
    a scrape sets them; a second kube-state-metrics target duplicating every kube_* series for
    an hour on day 1 (max-by must not double a request);
  - cAdvisor families with pod-level cgroup series (container="") that double count if not
    filtered, docker-era pause containers (container="POD") in cluster b;
  - counter resets (container restarts), pods starting and ending inside an hour (batch jobs
    churning every hour), a StatefulSet pod that moves to another node (same name, new uid),
    GPU requests, and a 12-minute scrape gap of one node's kubelet in every cluster.

Spans are whole days (--days) or hours (--hours): the scale sets (up to a million active
series over 20 clusters) span only the hours an export reads.

Deterministic: everything derives from --seed and the flags. Timestamps are integer
milliseconds; values are written with Python's repr, which round-trips float64 exactly.
"""

import argparse
import bisect
import hashlib
import json
import math
import os
import random
import sys
from dataclasses import dataclass, field

HOUR = 3600
MIN = 60
LOOKBACK_MS = 300_000

# A check time is the half hour; every event (a birth, a death, a restart, a move, a gap edge)
# lies in minutes [0, 20) or [35, 55) of its hour, so that neither the event nor its lookback
# shadow (event + 5 m) comes within a minute of a check, where the replicas' few-second offset
# would make the answer depend on the deduplication's choice of replica.
EVENT_MINUTES = list(range(1, 20)) + list(range(35, 54))


def event_time(rng, hour_start):
    return hour_start + rng.choice(EVENT_MINUTES) * MIN + rng.randrange(0, 60)


@dataclass
class Target:
    """A scrape target of one Prometheus: all its series share its scrape timestamps."""

    job: str
    instance: str
    offset_ms: int  # phase of the scrape within the interval
    extra: dict = field(default_factory=dict)  # labels relabeling adds (node for the kubelet)
    gaps: list = field(default_factory=list)  # [start_ms, end_ms) with no scrapes
    life: tuple = (None, None)  # (from_ms, to_ms) when the target exists at all


@dataclass
class Series:
    family: str
    labels: dict
    target: Target
    start_ms: int
    end_ms: int  # exclusive
    kind: str  # const | counter | wave
    value: float = 0.0  # const value, counter base, wave amplitude
    rates: list = None  # counter: per-hour rate (units per second), indexed from data start
    resets_ms: list = field(default_factory=list)  # counter restarts from zero
    phase: float = 0.0
    cum: list = None  # counter: prefix sums of rates at hour starts
    birth: int = 0
    dup: Target = None


class Model:
    def __init__(self, args):
        self.args = args
        self.start_ms = args.start * 1000
        self.hours = span_hours(args)
        self.end_ms = self.start_ms + self.hours * HOUR * 1000
        self.interval_ms = args.interval * 1000
        # instance name -> (cluster, replica, scrape delay ms, gaps)
        self.instances = {}
        self.clusters = {}  # cluster -> its index
        self._series = {}  # cluster -> [Series], built on first use
        for ci in range(args.clusters):
            name = chr(ord("a") + ci)
            if ci == 0 and args.ha:
                self.instances[f"{name}-0"] = (name, f"{name}-0", 0, self._replica_gap())
                self.instances[f"{name}-1"] = (name, f"{name}-1", 3200, [])
            else:
                self.instances[name] = (name, name, 0, [])
            self.clusters[name] = ci

    def series(self, cluster):
        """The series of one cluster. Built lazily: a slice job of a 20-cluster set needs only
        its own cluster's, and each cluster draws from its own random stream, so the result
        does not depend on which clusters were built before."""
        if cluster not in self._series:
            self._series[cluster] = self._cluster(cluster, self.clusters[cluster])
        return self._series[cluster]

    def _replica_gap(self):
        # Replica 0 of the HA pair restarts: 15 minutes without any scrape, on day 1.
        h = self.start_ms + (min(self.hours - 1, 5)) * HOUR * 1000
        return [(h + 37 * MIN * 1000, h + 52 * MIN * 1000)]

    # ---- the cluster's objects -------------------------------------------------------------

    def _cluster(self, cname, ci):
        a = self.args
        rng = random.Random(f"{a.seed}/{cname}")
        out = []
        s0, s1 = self.start_ms, self.end_ms

        def ip():
            return f"10.{ci}.{rng.randrange(0, 255)}.{rng.randrange(2, 254)}"

        ksm = Target("kube-state-metrics", f"{ip()}:8080", rng.randrange(0, self.interval_ms))
        # The duplicated kube-state-metrics target: a second replica for one hour.
        dup_h = s0 + min(self.hours - 1, 9) * HOUR * 1000
        ksm_dup = Target(
            "kube-state-metrics",
            f"{ip()}:8080",
            rng.randrange(0, self.interval_ms),
            life=(dup_h + 5 * MIN * 1000, dup_h + 50 * MIN * 1000),
        )

        nodes = []
        for ni in range(a.nodes):
            node = f"ip-10-{ci}-{ni}-{rng.randrange(10, 250)}.ec2.internal"
            gpu = ni == a.nodes - 1 and a.nodes > 1
            kubelet = Target(
                "kubelet",
                f"{ip()}:10250",
                rng.randrange(0, self.interval_ms),
                extra={"node": node, "metrics_path": "/metrics/cadvisor"},
            )
            nodes.append((node, gpu, kubelet))
        # A 12-minute scrape gap of the first node's kubelet (longer than the lookback).
        gap_h = s0 + min(self.hours - 1, 14) * HOUR * 1000
        nodes[0][2].gaps.append((gap_h + 3 * MIN * 1000, gap_h + 15 * MIN * 1000))

        # Node objects.
        itype = ["m5.2xlarge", "m5.4xlarge", "g4dn.xlarge"]
        for node, gpu, _ in nodes:
            cpu = 16 if not gpu else 4
            mem = (64 if not gpu else 16) * 2**30
            common = {"node": node}
            zone = f"us-east-1{'abc'[rng.randrange(0, 3)]}"
            out.append(self._ksm(ksm, ksm_dup, "kube_node_info", {
                **common, "container_runtime_version": "containerd://1.7.11",
                "internal_ip": f"10.{ci}.0.{rng.randrange(2, 254)}",
                "kernel_version": "5.10.205-195.807.amzn2.x86_64",
                "kubelet_version": "v1.29.0-eks-5e0fdde", "os_image": "Amazon Linux 2",
                "provider_id": f"aws:///{zone}/i-{rng.getrandbits(64):016x}",
                "system_uuid": f"ec2{rng.getrandbits(96):024x}"}, 1.0))
            out.append(self._ksm(ksm, ksm_dup, "kube_node_labels", {
                **common, "label_kubernetes_io_hostname": node,
                "label_node_kubernetes_io_instance_type": itype[2 if gpu else ci % 2],
                "label_topology_kubernetes_io_zone": zone,
                "label_eks_amazonaws_com_nodegroup": "gpu" if gpu else "general"}, 1.0))
            for fam, frac in (("kube_node_status_capacity", 1.0),
                              ("kube_node_status_allocatable", 0.92)):
                res = [("cpu", "core", cpu * frac), ("memory", "byte", math.floor(mem * frac)),
                       ("pods", "integer", 110.0),
                       ("ephemeral_storage", "byte", math.floor(80 * 2**30 * frac))]
                if gpu:
                    res.append(("nvidia_com_gpu", "integer", 1.0))
                for r, u, v in res:
                    out.append(self._ksm(ksm, ksm_dup, fam,
                                         {**common, "resource": r, "unit": u}, float(v)))

        namespaces = ["default", "kube-system", "team-a", "team-b", "batch"]
        for ns in namespaces:
            out.append(self._ksm(ksm, ksm_dup, "kube_namespace_labels", {
                "namespace": ns, "label_kubernetes_io_metadata_name": ns,
                "label_team": ns.split("-")[-1] if ns.startswith("team") else "platform"}, 1.0))

        # Pods: (namespace, name, owner kind, owner name, node index, start, end, containers,
        # options). team-a holds only long-running, never-restarting pods: the ground truth
        # checks use it.
        pods = []
        for pi in range(a.pods):
            ns = ["team-a", "team-b", "default", "kube-system"][pi % 4]
            app = f"{['api', 'web', 'worker', 'cache', 'proxy'][pi % 5]}{pi // 5}"
            rs = f"{app}-{rng.getrandbits(40):010x}"[: len(app) + 11]
            name = f"{rs}-{rng.getrandbits(25):05x}"
            ncont = 1 + (pi % 3 == 0)
            pods.append(dict(ns=ns, name=name, owner_kind="ReplicaSet", owner=rs, app=app,
                             node=pi % a.nodes, start=s0 - 86400_000, end=s1 + HOUR * 1000,
                             containers=[app] + (["istio-proxy"] if ncont == 2 else []),
                             restarts=[]))
        # Counter resets: a team-b pod's main container restarts twice.
        for p in pods:
            if p["ns"] == "team-b":
                h1 = s0 + min(self.hours - 1, 3) * HOUR * 1000
                h2 = s0 + min(self.hours - 1, 20) * HOUR * 1000
                p["restarts"] = [event_time(rng, h1 // 1000) * 1000,
                                 event_time(rng, h2 // 1000) * 1000]
                break
        # A GPU training pod on the GPU node.
        if a.nodes > 1:
            pods.append(dict(ns="team-b", name="trainer-0", owner_kind="StatefulSet",
                             owner="trainer", app="trainer", node=a.nodes - 1,
                             start=s0 - 86400_000, end=s1 + HOUR * 1000,
                             containers=["trainer"], restarts=[], gpu=1))
        # A StatefulSet pod that moves to another node: same name, a new uid, a new node.
        move = event_time(rng, (s0 // 1000) + min(self.hours - 1, 7) * HOUR) * 1000
        for k, (st, en) in enumerate(((s0 - 86400_000, move), (move + 40_000, s1 + HOUR * 1000))):
            pods.append(dict(ns="default", name="db-0", owner_kind="StatefulSet", owner="db",
                             app="db", node=k % a.nodes, start=st, end=en,
                             containers=["postgres"], restarts=[]))
        # Batch pods: every hour some jobs start, run 3-25 minutes, and end.
        for h in range(self.hours):
            hs = (s0 // 1000) + h * HOUR
            for j in range(a.batch_per_hour):
                st = event_time(rng, hs)
                if rng.random() < 0.5:
                    # ends inside the same hour, inside its own event band
                    band = [m for m in EVENT_MINUTES if hs + m * MIN > st + 3 * MIN]
                    en = hs + rng.choice(band) * MIN + rng.randrange(0, 60) if band else st + 180
                else:
                    en = event_time(rng, hs + HOUR)  # ends in the next hour
                jobname = f"report-{h:04d}{j}"
                pods.append(dict(ns="batch", name=f"{jobname}-{rng.getrandbits(25):05x}",
                                 owner_kind="Job", owner=jobname, app="report",
                                 node=rng.randrange(0, a.nodes), start=st * 1000,
                                 end=min(en * 1000, s1 + HOUR * 1000),
                                 containers=["report"], restarts=[]))

        for p in pods:
            out.extend(self._pod(p, nodes, ksm, ksm_dup, cname, rng))
        return [s for s in out if s is not None]

    def _ksm(self, ksm, dup, family, labels, value, start=None, end=None):
        st = self.start_ms if start is None else max(start, self.start_ms)
        en = self.end_ms if end is None else min(end, self.end_ms)
        if st >= en:
            return None
        return Series(family, labels, ksm, st, en, "const", value, dup=dup)

    def _pod(self, p, nodes, ksm, dup, cname, rng):
        node, gpu_node, kubelet = nodes[p["node"]]
        uid = "%08x-%04x-%04x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                             rng.getrandbits(16), rng.getrandbits(16),
                                             rng.getrandbits(48))
        ns, pod = p["ns"], p["name"]
        st, en = p["start"], p["end"]
        base = {"namespace": ns, "pod": pod, "uid": uid}
        out = [
            self._ksm(ksm, dup, "kube_pod_info", {
                **base, "created_by_kind": p["owner_kind"], "created_by_name": p["owner"],
                "host_ip": f"10.0.0.{p['node'] + 10}", "host_network": "false",
                "node": node, "pod_ip": f"100.64.{rng.randrange(0, 255)}.{rng.randrange(2, 254)}",
                "priority_class": ""}, 1.0, st, en),
            self._ksm(ksm, dup, "kube_pod_labels", {
                **base, "label_app": p["app"], "label_team": ns.split("-")[-1],
                "label_pod_template_hash": p["owner"][-10:]}, 1.0, st, en),
            self._ksm(ksm, dup, "kube_pod_owner", {
                **base, "owner_is_controller": "true", "owner_kind": p["owner_kind"],
                "owner_name": p["owner"]}, 1.0, st, en),
        ]
        cadvisor_common = {"namespace": ns, "pod": pod}
        pod_id = f"/kubepods/burstable/pod{uid}"
        pod_rates = [0.0] * self.hours
        pod_mem = 0.0
        for c in p["containers"]:
            cpu_req = rng.choice([0.05, 0.1, 0.25, 0.5, 1.0, 2.0])
            mem_req = float(rng.choice([64, 128, 256, 512, 1024, 4096]) * 2**20)
            res = [("cpu", "core", cpu_req, cpu_req * 2),
                   ("memory", "byte", mem_req, mem_req * 2)]
            if p.get("gpu") and c == "trainer":
                res.append(("nvidia_com_gpu", "integer", 1.0, 1.0))
            for r, u, req, lim in res:
                lab = {**base, "container": c, "node": node, "resource": r, "unit": u}
                out.append(self._ksm(ksm, dup, "kube_pod_container_resource_requests",
                                     dict(lab), req, st, en))
                out.append(self._ksm(ksm, dup, "kube_pod_container_resource_limits",
                                     dict(lab), lim, st, en))
            # Usage: a per-hour rate between 10 % and 150 % of the request.
            rates = [round(cpu_req * rng.uniform(0.1, 1.5), 6) for _ in range(self.hours)]
            pod_rates = [x + y for x, y in zip(pod_rates, rates)]
            image = f"registry.example.com/{p['app']}:{rng.randrange(1, 40)}.0"
            cid = f"{pod_id}/{rng.getrandbits(64):016x}"
            lab = {**cadvisor_common, "container": c, "cpu": "total", "id": cid,
                   "image": image, "name": cid[-16:]}
            out.append(self._cad(kubelet, "container_cpu_usage_seconds_total", lab, st, en,
                                 "counter", rng.uniform(10, 5000), rates, p["restarts"]))
            wave = mem_req * rng.uniform(0.3, 0.9)
            pod_mem += wave
            lab = {**cadvisor_common, "container": c, "id": cid, "image": image,
                   "name": cid[-16:]}
            out.append(self._cad(kubelet, "container_memory_working_set_bytes", lab, st, en,
                                 "wave", wave, phase=rng.uniform(0, 6.28)))
        # The pod-level cgroup (container=""), which double counts if not filtered.
        lab = {**cadvisor_common, "container": "", "cpu": "total", "id": pod_id, "image": "",
               "name": ""}
        out.append(self._cad(kubelet, "container_cpu_usage_seconds_total", lab, st, en,
                             "counter", rng.uniform(10, 5000), pod_rates, []))
        lab = {**cadvisor_common, "container": "", "id": pod_id, "image": "", "name": ""}
        out.append(self._cad(kubelet, "container_memory_working_set_bytes", lab, st, en,
                             "wave", pod_mem * 1.05, phase=rng.uniform(0, 6.28)))
        # docker-era pause container in cluster b
        if cname == "b":
            pid = f"{pod_id}/{rng.getrandbits(64):016x}"
            lab = {**cadvisor_common, "container": "POD", "cpu": "total", "id": pid,
                   "image": "registry.k8s.io/pause:3.9", "name": pid[-16:]}
            out.append(self._cad(kubelet, "container_cpu_usage_seconds_total", lab, st, en,
                                 "counter", rng.uniform(0, 5), [0.0001] * self.hours, []))
        # Network: pod level, one interface.
        for fam in ("container_network_receive_bytes_total",
                    "container_network_transmit_bytes_total"):
            lab = {**cadvisor_common, "container": "", "id": pod_id, "image": "",
                   "interface": "eth0", "name": ""}
            rates = [round(rng.uniform(1e3, 5e6), 1) for _ in range(self.hours)]
            out.append(self._cad(kubelet, fam, lab, st, en, "counter",
                                 rng.uniform(1e6, 1e9), rates, []))
        return out

    def _cad(self, kubelet, family, labels, st, en, kind, value, rates=None, resets=(),
             phase=0.0):
        st, en = max(st, self.start_ms), min(en, self.end_ms)
        if st >= en:
            return None
        return Series(family, {**labels, **kubelet.extra}, kubelet, st, en, kind, value,
                      rates, sorted(resets), phase, birth=st)

    # ---- samples --------------------------------------------------------------------------

    def scrape_times(self, target, delay_ms, gaps, lo, hi):
        """Scrape timestamps of target in [lo, hi) as one instance sees them."""
        iv = self.interval_ms
        base = self.start_ms + target.offset_ms + delay_ms
        salt = hash_int(target.instance, delay_ms)
        tl, th = target.life
        out = []
        for k in range(max(0, (lo - base) // iv - 1), (hi - base) // iv + 2):
            # A few milliseconds of deterministic jitter, as real scrapes have.
            t = base + k * iv + ((k * 2654435761 + salt) >> 11) % 7 - 3
            if t < lo or t >= hi:
                continue
            if tl is not None and not tl <= t < th:
                continue
            if any(g0 <= t < g1 for g0, g1 in gaps) or any(g0 <= t < g1 for g0, g1 in target.gaps):
                continue
            out.append(t)
        return out

    def value(self, s, t):
        if s.kind == "const":
            return s.value
        if s.kind == "wave":
            x = s.value * (1.0 + 0.1 * math.sin(s.phase + t / 1.0e6))
            return float(math.floor(x / 4096.0) * 4096)
        # counter: the integral of the hourly rates since the birth, or from zero since the
        # last restart
        since, base = s.birth, s.value
        for r in s.resets_ms:
            if r <= t:
                since, base = r, 0.0
        return base + (self.cumulative(s, t) - self.cumulative(s, since))

    def cumulative(self, s, t):
        """Integral of s's rate from the data start to t (ms), from per-hour prefix sums."""
        if s.cum is None:
            s.cum = [0.0]
            for r in s.rates:
                s.cum.append(s.cum[-1] + r * HOUR)
        h = min((t - self.start_ms) // (HOUR * 1000), len(s.rates) - 1)
        return s.cum[h] + s.rates[h] * (t - self.start_ms - h * HOUR * 1000) / 1000.0

    def samples(self, s, inst, lo, hi, times=None):
        """(t_ms, value) of series s in [lo, hi) as instance inst scraped it. times: the
        target's scrape times over a range covering [lo, hi), when the caller has them."""
        _, _, delay, gaps = self.instances[inst]
        lo, hi = max(lo, s.start_ms), min(hi, s.end_ms)
        if lo >= hi:
            return []
        if times is None:
            times = self.scrape_times(s.target, delay, gaps, lo, hi)
        i, j = bisect.bisect_left(times, lo), bisect.bisect_left(times, hi)
        return [(t, self.value(s, t)) for t in times[i:j]]


def span_hours(args):
    return args.hours if args.hours else args.days * 24


def hash_int(*parts):
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


def series_list(model, cluster):
    """Every series once per target: the duplicated kube-state-metrics target repeats the kube_*
    series with its own instance label."""
    out = []
    for s in model.series(cluster):
        out.append((s, s.target))
        if s.dup is not None:
            tl, th = s.dup.life
            if s.start_ms < th and s.end_ms > tl:
                d = Series(s.family, s.labels, s.dup, max(s.start_ms, tl), min(s.end_ms, th),
                           s.kind, s.value)
                out.append((d, s.dup))
    return out


def labels_text(s, target):
    lab = {**s.labels, "job": target.job, "instance": target.instance}
    # kubelet relabeling copies node and metrics_path on cAdvisor series only
    parts = []
    for k in sorted(lab):
        if lab[k] == "":
            continue  # a scrape drops empty label values: empty is absent
        v = lab[k].replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'{k}="{v}"')
    return "{" + ",".join(parts) + "}"


def write_slice(model, inst, lo, hi, path):
    cluster, _, delay, gaps = model.instances[inst]
    by_family = {}
    for s, target in series_list(model, cluster):
        by_family.setdefault(s.family, []).append((s, target))
    times = {}
    n = 0
    with open(path, "w", buffering=1 << 20) as f:
        for fam in sorted(by_family):
            counter = fam.endswith("_total")
            name = fam[: -len("_total")] if counter else fam
            f.write(f"# TYPE {name} {'counter' if counter else 'gauge'}\n")
            for s, target in by_family[fam]:
                if target.instance not in times:
                    times[target.instance] = model.scrape_times(target, delay, gaps, lo, hi)
                prefix = fam + labels_text(s, target) + " "
                samples = model.samples(s, inst, lo, hi, times[target.instance])
                n += len(samples)
                f.write("".join(f"{prefix}{v!r} {t // 1000}.{t % 1000:03d}\n"
                                for t, v in samples))
        f.write("# EOF\n")
    return n


# ---- ground truth --------------------------------------------------------------------------


def instant(model, inst, s, t):
    """The newest sample of s in (t - lookback, t], as an instant selector sees it."""
    got = model.samples(s, inst, t - LOOKBACK_MS + 1, t + 1)
    return got[-1] if got else None


def truth(model):
    checks = []
    for cluster in sorted(model.clusters):
        insts = [i for i, v in model.instances.items() if v[0] == cluster]
        pairs = series_list(model, cluster)
        for h in range(model.hours):
            t = model.start_ms + h * HOUR * 1000 + 30 * MIN * 1000
            # gauge: sum over containers of the max over kube-state-metrics targets
            per_container = {}
            for s, _ in pairs:
                if s.family != "kube_pod_container_resource_requests":
                    continue
                if s.labels["resource"] != "cpu":
                    continue
                vals = [instant(model, i, s, t) for i in insts]
                vals = [v for v in vals if v is not None]
                if not vals:
                    continue
                key = (s.labels["namespace"], s.labels["pod"], s.labels["container"])
                per_container[key] = max(per_container.get(key, -1.0), vals[0][1])
            checks.append({
                "name": "cpu_requests_sum",
                "query": 'sum(max by (namespace, pod, container) '
                         f'(kube_pod_container_resource_requests{{cluster="{cluster}", '
                         'resource="cpu"}))',
                "time": t // 1000, "value": math.fsum(per_container.values()),
                "series": len(per_container)})
            # counter: the true usage rate of team-a's containers (no restarts, no churn)
            rate = []
            for s, _ in pairs:
                if (s.family == "container_cpu_usage_seconds_total"
                        and s.labels["namespace"] == "team-a"
                        and s.labels["container"] not in ("", "POD")):
                    rate.append(s.rates[h])
            checks.append({
                "name": "team_a_cpu_usage_rate",
                "query": 'sum(rate(container_cpu_usage_seconds_total{cluster="' + cluster
                         + '", namespace="team-a", container!="", container!="POD"}[5m]))',
                "time": t // 1000, "value": math.fsum(rate), "series": len(rate)})
    return checks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--start", type=int, default=1761868800,
                    help="first timestamp, unix seconds, a whole hour "
                         "(default 2025-10-31T00:00Z: the data spans a month boundary)")
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--hours", type=int,
                    help="span in hours instead of --days: a million-series set is built "
                         "for the few hours one export reads, not for days")
    ap.add_argument("--interval", type=int, default=30, help="scrape interval, seconds")
    ap.add_argument("--clusters", type=int, default=2)
    ap.add_argument("--ha", type=int, default=1, help="1: the first cluster is an HA pair")
    ap.add_argument("--nodes", type=int, default=3, help="nodes per cluster")
    ap.add_argument("--pods", type=int, default=16, help="long-running pods per cluster")
    ap.add_argument("--batch-per-hour", type=int, default=2, help="batch pods started per hour")
    ap.add_argument("--slice-hours", type=int, default=24,
                    help="hours per OpenMetrics file, to bound disk and memory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--instance", help="write only this instance's slices")
    ap.add_argument("--slice", type=int, help="write only this slice index")
    ap.add_argument("--list", action="store_true",
                    help="print the instances and the number of slices, write nothing")
    ap.add_argument("--truth", action="store_true", help="write only truth.json")
    args = ap.parse_args()
    if args.start % HOUR:
        sys.exit("error: --start must be a whole hour")
    if args.nodes < 2:
        sys.exit("error: --nodes must be at least 2 (a pod moves between nodes)")
    model = Model(args)
    nslices = math.ceil(model.hours / args.slice_hours)
    if args.list:
        for inst, (cluster, replica, _, _) in model.instances.items():
            print(inst, cluster, replica)
        print("slices", nslices)
        return
    os.makedirs(args.out, exist_ok=True)
    if args.truth:
        with open(os.path.join(args.out, "truth.json"), "w") as f:
            json.dump({"start": args.start, "end": args.start + model.hours * HOUR,
                       "instances": {i: {"cluster": v[0], "replica": v[1]}
                                     for i, v in model.instances.items()},
                       "checks": truth(model)}, f, indent=1)
        return
    for inst in model.instances:
        if args.instance and inst != args.instance:
            continue
        for k in range(nslices):
            if args.slice is not None and k != args.slice:
                continue
            lo = model.start_ms + k * args.slice_hours * HOUR * 1000
            hi = min(model.end_ms, lo + args.slice_hours * HOUR * 1000)
            path = os.path.join(args.out, f"{inst}.{k:04d}.om")
            n = write_slice(model, inst, lo, hi, path + ".tmp")
            os.replace(path + ".tmp", path)
            print(f"{path} {n} samples", file=sys.stderr)


if __name__ == "__main__":
    main()
