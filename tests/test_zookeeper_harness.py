"""The ZooKeeper harness starts a real server that kazoo and tooz can use, and leaves nothing behind."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from gridwatch.harness import ZooKeeperServer
from gridwatch.harness.zookeeper import four_letter_word


@pytest.fixture(scope="module")
def zk(zk_ok) -> Iterator[ZooKeeperServer]:
    with ZooKeeperServer() as server:
        yield server


def test_kazoo_ephemeral_node(zk: ZooKeeperServer) -> None:
    assert zk.url == f"zookeeper://127.0.0.1:{zk.port}"
    assert four_letter_word(zk.port) == "imok"
    client = KazooClient(hosts=f"127.0.0.1:{zk.port}", timeout=5)
    client.start(timeout=10)
    try:
        client.create("/gridwatch/probe", b"x", ephemeral=True, makepath=True)
        assert client.exists("/gridwatch/probe") is not None
        data, _ = client.get("/gridwatch/probe")
        assert data == b"x"
    finally:
        client.stop()
        client.close()


def test_tooz_group_membership(zk: ZooKeeperServer) -> None:
    from tooz import coordination

    coord = coordination.get_coordinator(zk.url + "?timeout=2", b"m1")
    coord.start()
    try:
        coord.join_group_create(b"g")  # waits itself (returns None); get_members returns a future-like
        assert b"m1" in coord.get_members(b"g").get()
    finally:
        coord.stop()


def test_stop_removes_process_and_dir(zk_ok) -> None:
    server = ZooKeeperServer(tick_ms=200)
    with server:
        pid, tmp = server.pid, server.dir
        assert pid is not None and tmp is not None and tmp.is_dir()
    assert server.pid is None and not tmp.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped by wait(): the pid is gone, not a zombie
