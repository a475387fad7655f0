"""Two nodes on one box: trainer.num_nodes=2 as two processes started the way a cluster starts them,
the same command line on both and only NODE_RANK differing, checked
against the run directory, the TensorBoard run, the lock, the sockets and a single process's weights."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from conftest import ROOT, make_cfg, run_script

from gradlab.run.recipe import train

TWO_NODES = ("trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=2")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node(rank: int, port: int, cwd: Path, *args: str, **launch: str | None) -> subprocess.Popen:
    """scripts/train.py as node `rank` of two would run it: a cluster's environment, the same command.
    `launch`: environment variables to set instead (None: to leave out)."""
    env = {**os.environ, "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "WORLD_SIZE": "2", "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1", **launch}
    env = {key: value for key, value in env.items() if value is not None}
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags (-m) before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *flags, *TWO_NODES, *overrides],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen], timeout: float = 120) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each; a process still running after `timeout` is killed."""
    ended = []
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        ended.append((proc.returncode, out, err))
    return ended


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def _watch_sockets(procs: list[subprocess.Popen]) -> list:
    """Every TCP socket the processes hold while they run (polled until they end)."""
    seen = []
    while any(p.poll() is None for p in procs):
        for proc in procs:
            try:
                seen += psutil.Process(proc.pid).net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                pass
        time.sleep(0.05)
    return seen


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def _folders(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir() and p.name != "checkpoints"}


def _assert_same_weights(run_dir: Path, oracle_dir: Path) -> None:
    """Full-batch gradient descent: the mean of the two ranks' gradients is the one process's."""
    for key, value in _weights(oracle_dir).items():
        torch.testing.assert_close(_weights(run_dir)[key], value, rtol=1e-5, atol=1e-5)


ONE_RUN = {"lightning_logs", "lightning_logs/default", "lightning_logs/default/version_0"}


@pytest.mark.slow
def test_two_nodes_on_one_box_share_one_run_on_loopback_and_end_with_one_process_weights(tmp_path):
    port = _free_port()
    nodes = [_node(rank, port, tmp_path, "trainer.max_epochs=30") for rank in (0, 1)]
    sockets = _watch_sockets(nodes)
    (code0, _, err0), (code1, out1, err1) = _finish(nodes)
    assert (code0, code1) == (0, 0), err0 + err1

    # every socket on loopback, the store's listening one included (torch's own would listen on ::)
    assert any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets)
    assert sockets and all(_loopback(s.laddr.ip) and (not s.raddr or _loopback(s.raddr.ip)) for s in sockets), \
        sorted({(s.laddr, s.raddr, s.status) for s in sockets})

    assert _folders(tmp_path) == ONE_RUN  # no second version_<N>, no Hydra folder of either rank
    run_dir = tmp_path / "lightning_logs" / "default" / "version_0"
    assert len(list(tmp_path.rglob("gradlab.lock"))) == 1
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events and {e.parent for e in events} == {run_dir}  # one TensorBoard run
    assert {e.name.rsplit(".", 2)[1] for e in events} == {str(nodes[0].pid)}  # written by node 0 alone
    assert out1 == ""  # node 1 trains silently: one report, node 0's

    single = train(make_cfg("trainer.max_epochs=30", root_dir=tmp_path / "single"))
    _assert_same_weights(run_dir, single.run_dir)


@pytest.mark.slow
def test_two_nodes_resume_their_run_and_end_with_the_weights_of_one_uninterrupted_process(tmp_path):
    port = _free_port()
    first = _finish([_node(r, port, tmp_path, "trainer.max_epochs=15") for r in (0, 1)])
    assert [code for code, _, _ in first] == [0, 0], first
    port = _free_port()
    again = _finish([_node(r, port, tmp_path, "resume=true", "trainer.max_epochs=30") for r in (0, 1)])
    assert [code for code, _, _ in again] == [0, 0], again
    assert _folders(tmp_path) == ONE_RUN
    run_dir = tmp_path / "lightning_logs" / "default" / "version_0"
    assert len(yaml.safe_load((run_dir / "resumes.yaml").read_text())) == 1  # recorded once, by rank 0

    single = train(make_cfg("trainer.max_epochs=30", root_dir=tmp_path / "single"))
    _assert_same_weights(run_dir, single.run_dir)


@pytest.mark.slow  # a fresh interpreter each (the environment is the point), ~4 s
@pytest.mark.parametrize(("args", "launch", "said"), [
    ((), {"WORLD_SIZE": "3"}, ["WORLD_SIZE='3'", "trainer.num_nodes=2 x trainer.devices=1 = 2"]),
    ((), {"MASTER_PORT": None}, ["trainer.num_nodes=2 without MASTER_PORT"]),
    (("trainer.devices=2",), {"WORLD_SIZE": "4"}, ["NODE_RANK=0 with trainer.devices=2", "torchrun"]),
    ((), {"NODE_RANK": "2"}, ["NODE_RANK=2 with trainer.num_nodes=2", "from 0 to 1"]),
], ids=["WORLD_SIZE is not nodes x devices", "no MASTER_PORT", "NODE_RANK with 2 devices", "NODE_RANK too large"])
def test_a_launch_the_nodes_could_not_share_a_run_in_is_refused_before_any_folder(tmp_path, args, launch, said):
    (code, _, err), = _finish([_node(0, _free_port(), tmp_path, *args, **launch)])
    assert code == 2, err
    assert all(text in err for text in said), err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGSTOP], ids=["node 1 dies", "node 1 hangs"])
def test_node_0_ends_with_one_line_and_exit_4_when_node_1_dies_or_hangs(tmp_path, stop):
    timeout_s = 5
    port = _free_port()
    nodes = [_node(rank, port, tmp_path, "trainer.max_epochs=1000000", f"ddp_timeout_s={timeout_s}")
             for rank in (0, 1)]
    run_dir = tmp_path / "lightning_logs" / "default" / "version_0"
    try:
        deadline = time.monotonic() + 90
        while not list(run_dir.glob("events.out.tfevents.*")) and time.monotonic() < deadline:
            time.sleep(0.1)  # until they train (node 0 opens TensorBoard's writer at the start)
        assert nodes[0].poll() is None and nodes[1].poll() is None
        time.sleep(0.5)
        nodes[1].send_signal(stop)
        stopped = time.monotonic()
        _, err = nodes[0].communicate(timeout=timeout_s + 10)
        waited = time.monotonic() - stopped
    finally:
        for node in nodes:
            node.kill()
            node.communicate()
    assert nodes[0].returncode == 4
    assert waited < timeout_s + 5  # the gloo timeout, not torch's 30 minutes
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradlab: lost the other processes of this run"), err
    assert f"ddp_timeout_s={timeout_s}" in lines[0]


@pytest.mark.slow
def test_sigterm_on_node_0_stops_both_nodes_at_the_end_of_an_epoch_with_one_checkpoint(tmp_path):
    port = _free_port()
    nodes = [_node(rank, port, tmp_path, "trainer.max_epochs=1000000", "ddp_timeout_s=5") for rank in (0, 1)]
    run_dir = tmp_path / "lightning_logs" / "default" / "version_0"
    try:
        deadline = time.monotonic() + 90
        while not list(run_dir.glob("events.out.tfevents.*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        nodes[0].send_signal(signal.SIGTERM)  # node 1 is not signalled: the nodes agree at the epoch's end
        ended = _finish(nodes, timeout=60)
    finally:
        for node in nodes:
            node.kill()
    assert [code for code, _, _ in ended] == [143, 143], ended
    assert "resume=true" in ended[0][1]  # the command to continue, on every node
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] >= 1 and _folders(tmp_path) == ONE_RUN


@pytest.mark.slow
def test_a_node_started_with_another_command_line_is_refused_on_both_before_any_folder(tmp_path):
    port = _free_port()
    ended = _finish([_node(0, port, tmp_path), _node(1, port, tmp_path, "optimizer.lr=0.1")])
    for code, _, err in ended:
        assert code == 2, err
        assert "rank 1 has optimizer.lr=0.1, rank 0 optimizer.lr=0.01" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_node_0_alone_gives_up_after_the_timeout_and_writes_nothing(tmp_path):
    started = time.monotonic()
    (code, _, err), = _finish([_node(0, _free_port(), tmp_path, "ddp_timeout_s=3")], timeout=60)
    assert code == 4 and err.startswith("gradlab: could not connect the processes of this run"), err
    assert "ddp_timeout_s=3" in err and len(err.strip().splitlines()) == 1
    assert time.monotonic() - started < 45  # start-up (a loaded machine) + 3 s, not 30 minutes
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_what_rank_0_refuses_while_claiming_the_run_ends_every_node_with_its_message(tmp_path):
    assert run_script("train.py", "trainer.max_epochs=5", cwd=tmp_path).returncode == 0
    run_dir = tmp_path / "lightning_logs" / "default" / "version_0"
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); os.ftruncate(fd, 0); "
            "os.write(fd, b'host test pid 1'); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run_dir / "gradlab.lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"  # another process writes the run
        port = _free_port()
        ended = _finish([_node(r, port, tmp_path, "resume=true", "trainer.max_epochs=10") for r in (0, 1)])
    finally:
        holder.kill()
        holder.communicate()
    assert [code for code, _, _ in ended] == [2, 2], ended
    for code, _, err in ended:  # node 1 gets rank 0's refusal, rather than waiting for a run directory
        assert code == 2 and "is in use by host test pid 1" in err and "Traceback" not in err, err
    assert _folders(tmp_path) == ONE_RUN


@pytest.mark.slow
def test_a_sweep_started_on_two_nodes_is_refused_before_any_folder(tmp_path):
    (code, _, err), = _finish([_node(0, _free_port(), tmp_path, "-m", "optimizer.lr=0.01,0.1")])
    assert code == 2 and "a sweep (-m) cannot be started on several nodes" in err and "NODE_RANK=0" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_master_port_in_use_ends_node_0_with_one_line_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (code, _, err), = _finish([_node(0, port, tmp_path, "ddp_timeout_s=3")], timeout=60)
    assert code == 4 and f"127.0.0.1:{port}" in err and "in use" in err, err
    assert list(tmp_path.iterdir()) == []
