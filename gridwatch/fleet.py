"""This process's place in a fleet of workers: membership, which cameras are its own, and fencing.

Membership and assignment come from OpenStack tooz, not hand-rolled leases: each worker joins a *partitioned group*
(consistent hashing, its capacity as weight) on the coordination backend (the Redis gridwatch already uses, or
ZooKeeper), heartbeats on its own thread, and sees others join and leave through ``run_watchers()``. A camera is a
worker's when ``assign`` (the partitioner's ring, with bounded loads) names it; every worker computes the same
answer from the same members, so ownership is disjoint and covers every camera without any worker telling another
what to do.

Fencing. A worker that was frozen (SIGSTOP, a long GC pause, a VM migration) may come back after the others took its
cameras. Its own heartbeat thread measures the gap between two of its attempts; a gap longer than the membership
timeout means "I may have been declared dead": the worker marks itself lost *before* its next beat, so no analysis of
the stale set is published (``valid()`` is false from the moment it wakes), drops every camera, rejoins and takes
what the ring gives it now. A worker that is merely cut off from Redis keeps analysing and spools its alerts (the
spool's purpose); if the others took its cameras meanwhile, it sees it is no longer a member when Redis is back and
drops them. Overlapping owners of one camera make one case, not two: the case store joins a camera zone's incidents
into its open case (``dedupe``), so a handover never doubles a case.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tooz import ToozError, coordination, partitioner
from tooz.hashring import HashRing

from gridwatch.config import FleetConfig
from gridwatch.telemetry import WorkerInfo
from streams.urls import mask_url

log = logging.getLogger(__name__)

PARTITIONS = 32  # ring points per unit of weight; every member of a group must use the same number (tooz's default)
LOAD_BOUND = 1.2  # no worker gets more than this times its fair share (consistent hashing with bounded loads)


def assign(ring: HashRing, cameras: Iterable[str], bound: float = LOAD_BOUND) -> dict[str, bytes]:
    """camera -> member, the same on every member that sees the same members: consistent hashing with bounded loads.

    Plain consistent hashing puts 492 cameras on 16 equal workers with the busiest at 1.3x its fair share (balls
    in bins, however many points the ring has). Here each camera goes to the first member clockwise from its hash
    that is below ``bound`` x its weighted share (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with
    Bounded Loads", SODA 2018), walked in a fixed order of camera ids, so every member computes the same answer and
    a join or leave still moves only about 1/N of the cameras (measured in bench/fleet.py). tooz's Partitioner
    gives the ring and its membership; it has no bounded variant, hence this function.
    """
    cams = sorted(cameras)
    if not ring.nodes or not cams:
        return {}
    total = sum(ring.nodes.values())
    room = {n: math.ceil(bound * len(cams) * w / total) for n, w in ring.nodes.items()}
    load: dict[bytes, int] = dict.fromkeys(ring.nodes, 0)
    out = {}
    for cid in cams:
        key, full = cid.encode(), set()
        while True:
            node = next(iter(ring.get_nodes(key, ignore_nodes=full)))
            if load[node] < room[node] or len(full) + 1 >= len(ring.nodes):
                break
            full.add(node)  # full: the next member clockwise
        out[cid] = node
        load[node] += 1
    return out


def tooz_url(url: str, fleet: FleetConfig) -> str:
    """A gridwatch Redis URL (``redis://[:pw@]host:port/db``, ``unix:///path.sock``) or a ZooKeeper URL in tooz's
    form, with the timeouts.

    tooz's Redis driver reads the database and timeouts from the query, not the path; its socket timeout must stay
    below the membership timeout, or one hung call would outlast the membership it is meant to keep.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "zookeeper":
        query["timeout"] = str(max(1, round(fleet.membership_timeout_s)))  # the ZooKeeper session timeout
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"fleet.url {mask_url(url)!r}: use redis://, rediss:// or zookeeper://host:port")
    socket_s = str(max(1, int(fleet.membership_timeout_s / 2)))
    query.update(timeout=socket_s, socket_connect_timeout=socket_s, membership_timeout=f"{fleet.membership_timeout_s:g}")
    if parts.scheme == "unix":  # the embedded Valkey's socket: tooz's Redis driver takes a path without a host
        query.setdefault("db", "0")
        return urlunsplit(("redis", "", parts.path, urlencode(query), ""))
    query["db"] = parts.path.strip("/") or query.get("db", "0")
    if parts.scheme == "rediss":
        query["ssl"] = "true"
    return urlunsplit(("redis", parts.netloc, "", urlencode(query), ""))


class FleetMember:
    """Joins the fleet, keeps the membership alive and tells the pipeline which cameras are this worker's.

    ``on_change(owned)`` is called from the membership thread with the new set whenever it changes (and with an
    empty set when fenced); ``valid()`` is what the pipeline checks before it publishes anything.
    """

    def __init__(self, url: str, worker: WorkerInfo, fleet: FleetConfig, prefix: str = "gw",
                 on_change: Callable[[set[str]], None] | None = None):
        self.worker, self.fleet, self.on_change = worker, fleet, on_change
        self.url = tooz_url(url, fleet)
        self.group = f"{prefix}.{fleet.group}".encode()
        self.member_id = worker.name.encode()
        self._cameras: list[str] = []  # the ids to share (enabled cameras of the current config)
        self._owned: set[str] = set()
        self._applied: set[str] | None = None  # what on_change was last given
        self._lock = threading.Lock()
        self._apply_lock = threading.Lock()  # one on_change at a time, always with the newest set
        self._settled_at: float | None = None  # members unchanged since (monotonic); None: still settling
        self._started = time.monotonic()
        self._settling_done = False
        self._computed: tuple | None = None  # (ring members, cameras) that _owned was computed from
        self._stop = threading.Event()
        self._last_attempt = time.monotonic()
        self._lost = threading.Event()  # set by whoever first notices the membership may be gone
        self._members_seen = 0
        self.fenced = 0  # how many times this worker dropped its cameras because it had been declared dead
        self.coord = coordination.get_coordinator(self.url, self.member_id)
        self.partitioner = None
        self._threads = [threading.Thread(target=self._beat, name="fleet-heartbeat", daemon=True),
                         threading.Thread(target=self._watch, name="fleet-membership", daemon=True)]

    # -- lifecycle

    def start(self, cameras: Iterable[str]) -> "FleetMember":
        self._cameras = sorted(cameras)
        self.coord.start(start_heart=False)  # our own heartbeat thread: it also measures freezes (fencing)
        self._started = time.monotonic()
        self._join()
        self._last_attempt = time.monotonic()
        for t in self._threads:
            t.start()
        self._recompute()
        log.info("worker %s joined fleet group %s (capacity %d) on %s", self.worker.name, self.group.decode(),
                 self.worker.capacity, mask_url(self.url))
        return self

    def stop(self) -> None:
        """Leave at once, so the others take the cameras now instead of after the membership timeout."""
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(5)
        try:
            if self.partitioner is not None:
                self.coord.leave_partitioned_group(self.partitioner)
        except ToozError as err:
            log.warning("leaving the fleet group: %s", err)
        finally:
            try:
                self.coord.stop()
            except ToozError:
                pass

    def _join(self) -> None:
        """Join (or rejoin) the group; the partitioner's ring follows members through the watchers."""
        try:
            self.coord.join_group_create(self.group, capabilities={"weight": self.worker.capacity})
        except coordination.MemberAlreadyJoined:
            pass
        if self.partitioner is None:
            self.partitioner = partitioner.Partitioner(self.coord, self.group, partitions=PARTITIONS)

    # -- what the pipeline asks

    def valid(self) -> bool:
        """May this worker act on its cameras now? False from the moment a freeze is visible, until it rejoined."""
        return not self._lost.is_set() and time.monotonic() - self._last_attempt < self.fleet.membership_timeout_s

    def owned(self) -> set[str]:
        with self._lock:
            return set(self._owned)

    def share(self, cameras: Iterable[str]) -> set[str]:
        """The cameras to share changed (a config change): recompute this worker's part now."""
        self._cameras = sorted(cameras)
        return self._recompute()

    def stats(self) -> dict:
        """For the worker's report: how often it was fenced, when it last (re)joined, how many members it sees."""
        return {"fenced": self.fenced, "members": self._members_seen}

    # -- threads

    def _beat(self) -> None:
        every = self.fleet.heartbeat_s
        while not self._stop.is_set():
            now = time.monotonic()
            if now - self._last_attempt > self.fleet.membership_timeout_s:
                # frozen past the timeout: the others may own our cameras now. Lost before the next beat, so
                # the beat below cannot make a stale member look alive to ourselves.
                log.warning("worker %s was frozen for %.1f s (membership timeout %.1f s): dropping its cameras",
                            self.worker.name, now - self._last_attempt, self.fleet.membership_timeout_s)
                self._lost.set()
            self._last_attempt = now
            try:
                self.coord.heartbeat()
            except ToozError as err:  # the backend is away: keep analysing (alerts spool); the watcher decides
                log.debug("heartbeat failed: %s", err)
            self._stop.wait(every)

    def _watch(self) -> None:
        every = self.fleet.heartbeat_s / 2
        while not self._stop.wait(every):
            try:
                if self._lost.is_set():
                    self._fence()
                self.coord.run_watchers()  # joins and leaves since the last call move the ring: it is the members
                members = self.partitioner.ring.nodes
                if len(members) != self._members_seen or self._settled_at is None:
                    self._settled_at = time.monotonic()  # (only the start's settling reads it)
                self._members_seen = len(members)
                if self.member_id not in members:
                    log.warning("worker %s is no longer a member of %s (declared dead while away): dropping its "
                                "cameras", self.worker.name, self.group.decode())
                    self._lost.set()
                    self._fence()
                    self.coord.run_watchers()
                self._recompute()
            except coordination.GroupNotCreated:  # the backend lost its data (a Redis restart): join again; the
                self._join()  # others do too and the ring comes back as it was, so nothing is dropped meanwhile
            except ToozError as err:
                log.debug("fleet membership: %s", err)

    def _fence(self) -> None:
        """Drop every camera first, then rejoin; the ring gives back what is ours now."""
        self._set_owned(set())
        self._computed = None
        self.fenced += 1
        self._join()
        self._lost.clear()

    def _settled(self) -> bool:
        """A worker takes cameras once the members it sees stopped changing for two heartbeats (or after the
        membership timeout): when a whole fleet starts at once, the first one up would otherwise open every camera
        and hand most of them on a second later."""
        if self._settled_at is None:
            return False
        now = time.monotonic()
        return now - self._settled_at >= 2 * self.fleet.heartbeat_s or now - self._started >= \
            self.fleet.membership_timeout_s

    def _recompute(self) -> set[str]:
        if self._lost.is_set() or self.partitioner is None or self.member_id not in self.partitioner.ring.nodes:
            return self.owned()  # not (yet) on the ring, e.g. rejoining after a Redis restart: keep what we run
        if not self._settling_done:
            if not self._settled():
                return self.owned()
            self._settling_done = True
        basis = (tuple(sorted(self.partitioner.ring.nodes.items())), tuple(self._cameras))
        if basis == self._computed:  # nobody joined or left and the cameras are the same: so is our share
            return self.owned()
        mine = {c for c, member in assign(self.partitioner.ring, self._cameras).items() if member == self.member_id}
        self._set_owned(mine)
        self._computed = basis
        return mine

    def _set_owned(self, owned: set[str]) -> None:
        with self._lock:
            if owned == self._owned:
                return
            gained, lost = owned - self._owned, self._owned - owned
            self._owned = set(owned)
        log.info("worker %s owns %d cameras (+%d -%d)", self.worker.name, len(owned), len(gained), len(lost))
        # the membership thread and a config change may both get here: whoever applies, applies the newest set,
        # so two calls can never leave the pipeline on the older one
        with self._apply_lock:
            newest = self.owned()
            if newest != self._applied and self.on_change is not None:
                self.on_change(newest)
                self._applied = newest
