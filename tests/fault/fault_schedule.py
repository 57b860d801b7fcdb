"""The seeded fault schedule of one checker run.

A schedule is a list of faults applied one after the other: each waits a calm
period (`after`), then breaks something for `hold` seconds and heals it. The
first round holds every kind once, in a seeded order, so that every run meets
every fault; then kinds are drawn at random until the run's duration is
filled. The same (seed, duration, population) always gives the same schedule,
which is what `checker.py --seed S` replays (the faults and the traffic are
the same; thread and network interleavings are not).
"""

import dataclasses
import random

# What the faults do (see fault_cluster.Cluster.apply):
#   service_kill  SIGKILL parley-service, restart it `hold` s later on the same
#                 data dir, and at once send admin messages while the gateways
#                 are still reconnecting;
#   gateway_kill  SIGKILL gateway `target`, restart it `hold` s later; its
#                 clients reconnect (to any gateway) with their resume point;
#   service_stop  SIGSTOP parley-service for `hold` s, then SIGCONT;
#   client_drop   device `target` aborts its socket mid-stream and reconnects;
#   link_cut      the TCP proxy in front of gateway `target`'s upstream drops
#                 every connection (the gateway reconnects);
#   link_stall    that proxy stops forwarding for `hold` s.
KINDS = ("service_kill", "gateway_kill", "service_stop", "client_drop",
         "link_cut", "link_stall")
# The scaled-out topology (fault_cluster.ReplicatedCluster: replicas of
# parley-service on one PostgreSQL, live deliveries between them over NATS):
#   replica_kill  SIGKILL replica `target`, restart it `hold` s later; its
#                 sessions move to the other replica with no socket closed;
#   replica_stop  SIGSTOP replica `target` for `hold` s, then SIGCONT;
#   nats_kill     SIGKILL nats-server, restart it `hold` s later on its port;
#   pg_restart    stop PostgreSQL (fast shutdown), start it `hold` s later.
# gateway_kill, client_drop, link_cut and link_stall are as above (a cut or
# stall hits every link of gateway `target`).
CLUSTER_KINDS = ("replica_kill", "replica_stop", "nats_kill", "pg_restart",
                 "gateway_kill", "client_drop", "link_cut", "link_stall")

# (min, max) seconds each kind holds its fault.
_HOLD = {
    "service_kill": (0.2, 2.0),
    "gateway_kill": (0.2, 1.5),
    "service_stop": (0.3, 3.0),
    "client_drop": (0.0, 0.0),
    "link_cut": (0.0, 0.0),
    "link_stall": (0.3, 3.0),
    "replica_kill": (0.2, 2.0),
    "replica_stop": (0.3, 3.0),
    "nats_kill": (0.3, 3.0),
    "pg_restart": (0.2, 2.0),
}
# Rough seconds a fault costs beyond its hold (process start-up), used only to
# fill the run's duration.
_OVERHEAD = {"service_kill": 0.6, "gateway_kill": 0.4, "replica_kill": 0.6,
             "pg_restart": 1.0}
_CALM = (0.3, 2.5)


@dataclasses.dataclass(frozen=True)
class Fault:
    """One fault: `after` s of calm, then `kind` on `target` for `hold` s."""
    after: float
    kind: str
    target: int
    hold: float

    def describe(self, device_names):
        """One line naming the fault and what it hits."""
        if self.kind == "client_drop":
            what = f"device {device_names[self.target]}"
        elif self.kind.startswith("replica_"):
            what = f"replica {self.target}"
        elif self.kind in ("nats_kill", "pg_restart"):
            what = self.kind.split("_")[0]
        elif self.kind in ("gateway_kill", "link_cut", "link_stall"):
            what = f"gateway {self.target}"
        else:
            what = "service"
        hold = f" for {self.hold:.2f}s" if self.hold else ""
        return f"after {self.after:.2f}s calm: {self.kind} {what}{hold}"


def _draw(rng, kind, gateways, devices, replicas, target=None):
    if target is not None:
        pass
    elif kind == "client_drop":
        target = rng.randrange(devices)
    elif kind in ("gateway_kill", "link_cut", "link_stall"):
        target = rng.randrange(gateways)
    elif kind.startswith("replica_"):
        target = rng.randrange(replicas)
    else:
        target = 0
    low, high = _HOLD[kind]
    return Fault(after=round(rng.uniform(*_CALM), 2), kind=kind,
                 target=target, hold=round(rng.uniform(low, high), 2))


def make_schedule(seed, duration, gateways, devices, replicas=0):
    """The faults of a run of about `duration` seconds: every kind once (in a
    seeded order), then random kinds until the duration is filled. With
    `replicas` (the scaled-out topology) the kinds are CLUSTER_KINDS, and the
    first round kills each replica in turn, then nats-server, then restarts
    PostgreSQL, before the other kinds in a seeded order."""
    rng = random.Random(f"schedule:{seed}")
    kinds = CLUSTER_KINDS if replicas else KINDS
    if replicas:
        others = [(k, None) for k in kinds
                  if k not in ("replica_kill", "nats_kill", "pg_restart")]
        rng.shuffle(others)
        first_round = ([("replica_kill", r) for r in range(replicas)] +
                       [("nats_kill", 0), ("pg_restart", 0)] + others)
    else:
        first_round = [(k, None) for k in kinds]
        rng.shuffle(first_round)
    schedule = []
    spent = 0.0
    while first_round or spent < duration:
        kind, target = (first_round.pop(0) if first_round else
                        (rng.choice(kinds), None))
        fault = _draw(rng, kind, gateways, devices, replicas, target)
        schedule.append(fault)
        spent += fault.after + fault.hold + _OVERHEAD.get(kind, 0.0)
    return schedule


def format_schedule(schedule, device_names):
    """The schedule as numbered lines, for failure reports."""
    return "\n".join(
        f"  {i + 1:2d}. {f.describe(device_names)}"
        for i, f in enumerate(schedule))
