"""The system under test and the faults applied to it.

Cluster runs parley-service and two parley-gateways on loopback (real
binaries from PARLEY_BIN_DIR or bazel-bin, free ports, one temporary data
dir), each gateway's upstream going through its own LinkProxy, and applies
the faults of fault_schedule. AdminBot sends messages as the user "bot"
through the admin API, the way a backend would.

Blocking harness calls (process start, log waits, admin RPCs) run in
threads; everything else runs on the checker's event loop.
"""

import asyncio
import os
import signal
import sys

import grpc
from google.protobuf import json_format

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402
from fault_client import SendRecord  # noqa: E402
from fault_proxy import LinkProxy  # noqa: E402

GATEWAYS = 2
# A gateway retries its upstream at most this often, so a run is not spent
# waiting on the default 5 s backoff.
GATEWAY_FLAGS = ("--upstream_backoff_max=1s",)
ADMIN_TIMEOUT = 2.0
RETRYABLE_RPC = frozenset({grpc.StatusCode.UNAVAILABLE,
                           grpc.StatusCode.DEADLINE_EXCEEDED,
                           grpc.StatusCode.CANCELLED})


class Cluster:
    """parley-service, GATEWAYS gateways behind link proxies, and faults."""

    def __init__(self, workdir, procs, recorder, max_replay):
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, "data")
        self.procs = procs
        self.rec = recorder
        self.max_replay = max_replay
        self.service = None
        self.admin = None
        self.admin_up = asyncio.Event()
        # Clients of killed services, closed only at stop() so that a call in
        # flight fails with UNAVAILABLE rather than on a closed channel.
        self._old_admins = []
        self.proxies = []
        self.gateways = []  # None while a gateway is down.
        self.devices = []  # Set by the checker; client_drop picks from it.
        self.bot = None  # Set by the checker; service_kill bursts through it.
        self._starts = 0
        self._stopped = False

    async def start(self):
        await self._start_service()
        for i in range(GATEWAYS):
            proxy = LinkProxy(self.service.link_address)
            await proxy.start()
            self.proxies.append(proxy)
            self.gateways.append(await self._start_gateway(i))

    def audit_target(self):
        """(service, admin) to read the store's truth through."""
        return self.service, self.admin

    def gateway_addresses(self):
        """Addresses of the gateways running now."""
        return [g.address for g in self.gateways if g is not None]

    async def admin_call(self, method, **fields):
        """An admin RPC on the current service (in a thread)."""
        await self.admin_up.wait()
        admin = self.admin
        return await asyncio.to_thread(admin.call, method,
                                       timeout=ADMIN_TIMEOUT, **fields)

    async def apply(self, fault):
        """Applies one fault and heals it."""
        self.rec.log("-", 0, "fault", {"kind": fault.kind,
                                        "target": fault.target,
                                        "hold": fault.hold})
        await getattr(self, "_" + fault.kind)(fault)
        self.rec.log("-", 0, "healed", {"kind": fault.kind})

    async def heal(self):
        """Undoes whatever a fault may have left broken."""
        if self._stopped:
            self.service.send_signal(signal.SIGCONT)
            self._stopped = False
        for proxy in self.proxies:
            proxy.resume()

    async def stop(self):
        """Stops every process by PID, newest first, and the proxies."""
        await self.heal()
        for admin in self._old_admins + [self.admin]:
            if admin is not None:
                admin.close()
        await asyncio.to_thread(self.procs.stop_all)
        for proxy in self.proxies:
            await proxy.close()

    async def _start_service(self):
        self._starts += 1
        self.service = self.procs.add(await asyncio.to_thread(
            harness.start_service, self.workdir, data_dir=self.data_dir,
            extra=[f"--max_replay={self.max_replay}"],
            name=f"service-{self._starts}"))
        for proxy in self.proxies:
            proxy.retarget(self.service.link_address)
        self.admin = harness.AdminClient(self.service)
        self.admin_up.set()

    async def _start_gateway(self, i):
        self._starts += 1
        return self.procs.add(await asyncio.to_thread(
            harness.start_gateway, self.workdir, self.proxies[i].address,
            extra=GATEWAY_FLAGS, name=f"gateway{i}-{self._starts}"))

    # The faults (see fault_schedule.KINDS).

    async def _service_kill(self, fault):
        self.admin_up.clear()
        self._old_admins.append(self.admin)
        await asyncio.to_thread(self.service.kill)
        await asyncio.sleep(fault.hold)
        await self._start_service()
        await self.bot.burst()

    async def _gateway_kill(self, fault):
        gateway = self.gateways[fault.target]
        self.gateways[fault.target] = None
        await asyncio.to_thread(gateway.kill)
        await asyncio.sleep(fault.hold)
        self.gateways[fault.target] = await self._start_gateway(fault.target)

    async def _service_stop(self, fault):
        self.service.send_signal(signal.SIGSTOP)
        self._stopped = True
        await asyncio.sleep(fault.hold)
        await self.heal()

    async def _client_drop(self, fault):
        self.devices[fault.target].drop()

    async def _link_cut(self, fault):
        self.proxies[fault.target].cut()

    async def _link_stall(self, fault):
        self.proxies[fault.target].stall()
        await asyncio.sleep(fault.hold)
        self.proxies[fault.target].resume()


class AdminBot:
    """The user "bot" sending through Admin.SendMessage: to random targets
    while sending is on, and to every burst target at once right after each
    service restart (while the gateways are still re-announcing their
    sessions). A send that fails retryably is retried with the same
    client_msg_id until acked."""

    USER = "bot"

    def __init__(self, cluster, targets, burst_targets, rng, recorder,
                 changes, tasks, rate):
        self.cluster = cluster
        self.targets = targets  # Recipient dicts drawn from at random.
        self.burst_targets = burst_targets
        self.rng = rng
        self.rec = recorder
        self.changes = changes
        self.tasks = tasks
        self.rate = rate
        self.sends = {}
        self.pending = set()
        self._sending = True
        self._count = 0

    async def run(self):
        while self._sending:
            await asyncio.sleep(self.rng.expovariate(self.rate))
            if self._sending:
                self.tasks.spawn(self.send_one())

    def stop_sending(self):
        self._sending = False

    async def burst(self):
        """One send to every target at once (every user, so that each
        session has something stored while it is being re-announced)."""
        await asyncio.gather(*(self.send_one(to)
                               for to in self.burst_targets))

    async def send_one(self, to=None):
        """Sends to `to` (a Recipient dict; default: a random target) until
        acked or refused."""
        self._count += 1
        cid = f"bot-{self._count}"
        to = to or self.rng.choice(self.targets)
        record = SendRecord(self.USER, cid, to, f"{cid} from bot")
        self.sends[cid] = record
        self.pending.add(cid)
        pb = harness.protos()
        request = pb.admin.SendMessageRequest(
            to=json_format.ParseDict(to, pb.client.Recipient()),
            text=record.text, client_msg_id=cid, **{"from": self.USER})
        while True:
            self.rec.log(self.USER, 0, ">", {"send": {"clientMsgId": cid,
                                                      "to": to}})
            try:
                ack = await self.cluster.admin_call("SendMessage",
                                                    request=request)
                break
            except grpc.RpcError as e:
                self.rec.log(self.USER, 0, "rpc_error",
                             {"code": str(e.code())})
                if e.code() not in RETRYABLE_RPC:
                    self.rec.violate("admin send failed", self.USER, 0,
                                     f"{cid}: {e.code()} {e.details()}")
                    record.failed = str(e.code())
                    self.pending.discard(cid)
                    self.changes.notify()
                    return
                await asyncio.sleep(self.rng.uniform(0.1, 0.3))
        ack = json_format.MessageToDict(ack)
        self.rec.log(self.USER, 0, "<", {"ack": ack})
        record.acks.append(ack)
        record.settled_by = "ack"
        self.pending.discard(cid)
        self.changes.notify()


class ReplicatedCluster(Cluster):
    """The scaled-out shape: REPLICAS parley-service replicas on one real
    PostgreSQL, live deliveries between them over a real nats-server, and
    GATEWAYS gateways each given every replica's address, every gateway ->
    replica link through its own LinkProxy (so a restarted replica, on a new
    port, keeps its address in the gateways' lists)."""

    REPLICAS = 2

    def __init__(self, workdir, procs, recorder, max_replay):
        super().__init__(workdir, procs, recorder, max_replay)
        self.pg = None
        self.nats = None
        self.replicas = []  # None while a replica is down.
        self.replica_admins = []
        self._stopped_replicas = set()
        self._next_admin = 0

    @property
    def live(self):
        """Indices of the replicas running (and not stopped) now."""
        return [i for i, r in enumerate(self.replicas)
                if r is not None and i not in self._stopped_replicas]

    async def start(self):
        import engines  # Only the scaled-out topology needs them.
        self.pg = await asyncio.to_thread(engines.start_postgres, self.procs,
                                          self.workdir)
        self.nats = await asyncio.to_thread(engines.start_nats, self.procs,
                                            self.workdir)
        for r in range(self.REPLICAS):
            self.replicas.append(None)
            self.replica_admins.append(None)
            await self._start_replica(r)
        for g in range(GATEWAYS):
            row = []
            for r in range(self.REPLICAS):
                proxy = LinkProxy(self.replicas[r].link_address)
                await proxy.start()
                row.append(proxy)
            self.proxies.append(row)
            self.gateways.append(await self._start_gateway(g))

    async def admin_call(self, method, **fields):
        """An admin RPC on a live replica, round robin."""
        while True:
            await self.admin_up.wait()
            live = self.live
            if live:
                break
            self.admin_up.clear()
        self._next_admin += 1
        admin = self.replica_admins[live[self._next_admin % len(live)]]
        return await asyncio.to_thread(admin.call, method,
                                       timeout=ADMIN_TIMEOUT, **fields)

    def audit_target(self):
        r = self.live[0]
        return self.replicas[r], self.replica_admins[r]

    async def heal(self):
        for r in list(self._stopped_replicas):
            self.replicas[r].send_signal(signal.SIGCONT)
        self._stopped_replicas.clear()
        self.admin_up.set()
        for row in self.proxies:
            for proxy in row:
                proxy.resume()

    async def stop(self):
        await self.heal()
        for admin in self._old_admins + self.replica_admins:
            if admin is not None:
                admin.close()
        await asyncio.to_thread(self.procs.stop_all)
        for row in self.proxies:
            for proxy in row:
                await proxy.close()

    async def _start_replica(self, r):
        self._starts += 1
        replica = self.procs.add(await asyncio.to_thread(
            harness.start_service, self.workdir,
            data_dir=os.path.join(self.workdir, f"replica{r}"),
            extra=[f"--max_replay={self.max_replay}",
                   f"--store={self.pg.url}", f"--nats={self.nats.url}",
                   f"--replica_id=replica{r}"],
            name=f"replica{r}-{self._starts}"))
        self.replicas[r] = replica
        self.replica_admins[r] = harness.AdminClient(replica)
        for row in self.proxies:
            row[r].retarget(replica.link_address)
        self.service = replica
        self.admin = self.replica_admins[r]
        self.admin_up.set()

    async def _start_gateway(self, g):
        self._starts += 1
        addresses = ",".join(p.address for p in self.proxies[g])
        return self.procs.add(await asyncio.to_thread(
            harness.start_gateway, self.workdir, addresses,
            extra=GATEWAY_FLAGS, name=f"gateway{g}-{self._starts}"))

    # The faults of fault_schedule.CLUSTER_KINDS.

    async def _replica_kill(self, fault):
        r = fault.target
        replica = self.replicas[r]
        self.replicas[r] = None
        self._old_admins.append(self.replica_admins[r])
        await asyncio.to_thread(replica.kill)
        await asyncio.sleep(fault.hold)
        await self._start_replica(r)
        await self.bot.burst()

    async def _replica_stop(self, fault):
        self.replicas[fault.target].send_signal(signal.SIGSTOP)
        self._stopped_replicas.add(fault.target)
        await asyncio.sleep(fault.hold)
        await self.heal()

    async def _nats_kill(self, fault):
        await asyncio.to_thread(self.nats.stop, signal.SIGKILL)
        await asyncio.sleep(fault.hold)
        await asyncio.to_thread(self.nats.start)

    async def _pg_restart(self, fault):
        await asyncio.to_thread(self.pg.stop)
        await asyncio.sleep(fault.hold)
        await asyncio.to_thread(self.pg.start)

    async def _link_cut(self, fault):
        for proxy in self.proxies[fault.target]:
            proxy.cut()

    async def _link_stall(self, fault):
        for proxy in self.proxies[fault.target]:
            proxy.stall()
        await asyncio.sleep(fault.hold)
        for proxy in self.proxies[fault.target]:
            proxy.resume()
