"""Several nodes: the processes a cluster starts (the same command on every machine with its own
NODE_RANK, torchrun, srun) join each other before the Trainer, so that they share one run directory.

Lightning connects the ranks only inside `trainer.fit`, but a run's directory (its TensorBoard run,
lock, config.yaml and checkpoints) is chosen before the Trainer is built, and a rank cannot derive
rank 0's: `version_<N>` is claimed with os.mkdir, and Hydra's timestamped folders differ per rank
(hydra#2070). So when every process of a run was started from outside, gradlab initialises
torch.distributed itself (rank 0's store at MASTER_ADDR:MASTER_PORT, `ddp_timeout_s`), checks that
every rank composed the same config, lets rank 0 claim the run directory and broadcasts it.
Lightning's DDPStrategy then finds the process group initialised and uses it (in Lightning 2.6 its
setup_distributed connects only when `torch.distributed.is_initialized()` is false). Workers that
Lightning starts itself (trainer=ddp_cpu on one machine) are not started from outside: rank 0 gives
them its directory in GRADLAB_RUN_DIR (rundirs).
"""

from __future__ import annotations

import atexit
import os
import pickle
import re
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from omegaconf import DictConfig, OmegaConf

from gradlab.checks.config import ConfigError
from gradlab.run import rundirs

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
NOTHING_RAN = "Nothing was run and no run directory was created."
TIMEOUT_S = 300  # conf/train.yaml's ddp_timeout_s, for a resumed run saved before that key existed
_joined = False  # this process joined its run's other ranks (join()); one run per process does
_GLOO_LOST = re.compile(r"gloo|pair closure|[Cc]onnection (reset|closed|refused)|[Tt]imed out")


class NodesLost(RuntimeError):
    """The other processes of a run went away, or did not come within ddp_timeout_s."""


@dataclass
class Launch:
    """This process's place in a run whose every process a launcher started."""

    rank: int
    world_size: int
    main_address: str
    main_port: int
    device: torch.device  # the one Lightning gives this rank: cuda:<local rank> or cpu

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"  # what Lightning's DDPStrategy would choose


def connect(cfg: DictConfig, trainer) -> None:
    """When a launcher started every process of this run: joins the other ranks and checks that they
    all run the same config (ConfigError, NodesLost otherwise). Nothing for other runs. `trainer`: the
    configured Trainer without logger or callbacks (gradlab.checks.config.check_arguments builds it)."""
    found = launch(trainer)
    if found is not None:
        join(found, timeout_s(cfg))
        check_same_config(cfg)


def strategy(cfg: DictConfig):
    """trainer.strategy for the Trainer: a DDP strategy name built with ddp_timeout_s (Lightning's
    default is torch's 30 minutes of waiting for a rank that died), anything else as configured."""
    from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

    name = cfg.trainer.get("strategy", "auto")
    if not (isinstance(name, str) and name in StrategyRegistry):
        return name
    spec = StrategyRegistry[name]  # its class and arguments: "ddp" is DDPStrategy(start_method="popen")
    if not issubclass(spec["strategy"], DDPStrategy):
        return name
    return spec["strategy"](**spec["init_params"], timeout=timedelta(seconds=timeout_s(cfg)))


def launch(trainer) -> Launch | None:
    """This process's Launch when every process of its run was started from outside (several nodes,
    torchrun, srun); None for one process, and for DDP whose workers Lightning starts itself.

    Refuses (ConfigError) a WORLD_SIZE other than num_nodes x devices, which Lightning would ignore
    under plain environment variables and so wait for ranks that never come, and a several-node
    launch it cannot join before the Trainer (below)."""
    from lightning.pytorch.plugins.environments import LightningEnvironment

    if trainer is None:  # a config without trainer keys: one process
        return None
    if rundirs.ddp_child_run_dir() is not None:  # a worker Lightning started: rank 0's directory comes with it
        return None
    # Lightning's view of this process, from the Trainer: its cluster environment, its ranks
    expected = trainer.num_nodes * trainer.num_devices
    given = os.environ.get("WORLD_SIZE")
    if given is not None and given != str(expected):
        raise ConfigError(
            f"bad launch: the environment says WORLD_SIZE={given!r}, but this config runs trainer.num_nodes="
            f"{trainer.num_nodes} x trainer.devices={trainer.num_devices} = {expected} processes. Allowed: "
            f"WORLD_SIZE={expected} (num_nodes x devices), or trainer.num_nodes and trainer.devices that "
            f"multiply to {given}. {NOTHING_RAN}"
        )
    if trainer.world_size == 1:
        return None
    environment = trainer.strategy.cluster_environment
    node_rank = environment.node_rank()
    if not 0 <= node_rank < trainer.num_nodes:
        raise ConfigError(f"bad launch: NODE_RANK={node_rank} with trainer.num_nodes={trainer.num_nodes}. "
                          f"Allowed: NODE_RANK from 0 to {trainer.num_nodes - 1}, a different one on each node. "
                          f"{NOTHING_RAN}")
    if not environment.creates_processes_externally and trainer.num_devices > 1:
        if trainer.num_nodes == 1:
            return None  # one machine: Lightning starts the workers when it fits (trainer=ddp_cpu)
        raise ConfigError(
            f"bad launch: NODE_RANK={node_rank} with trainer.devices={trainer.num_devices} "
            f"starts the other {trainer.num_devices - 1} process(es) of each node only inside Lightning's "
            "fit, after the run directory is chosen, so the nodes could not share one. Allowed: "
            "trainer.devices=1 with one command per node, or a launcher that starts every process "
            f"(torchrun --nnodes={trainer.num_nodes} --nproc_per_node={trainer.num_devices}, srun "
            f"--ntasks-per-node={trainer.num_devices}); README, \"DDP, GPU and SLURM\". {NOTHING_RAN}"
        )
    if trainer.num_nodes > 1 and isinstance(environment, LightningEnvironment) and "MASTER_PORT" not in os.environ:
        # Lightning would pick a free port of its own on each node, and the nodes would never meet
        raise ConfigError(f"bad launch: trainer.num_nodes={trainer.num_nodes} without MASTER_PORT. Allowed: "
                          "MASTER_PORT=<a free port of the NODE_RANK=0 machine>, the same on every node. "
                          f"{NOTHING_RAN}")
    return Launch(trainer.global_rank, trainer.world_size, environment.main_address, environment.main_port,
                  trainer.strategy.root_device)


def join(launch: Launch, timeout_s: float) -> None:
    """Connects this process to the run's other ranks through rank 0's store at MASTER_ADDR:MASTER_PORT,
    waiting for them at most `timeout_s`; the same timeout then ends a collective whose peer is gone
    or stuck. Under torchrun the store is torchrun's own (env://)."""
    import torch
    import torch.distributed as dist

    global _joined
    if launch.backend == "nccl":  # NCCL's collectives below run on the current GPU: each rank its own
        torch.cuda.set_device(launch.device)
    os.environ["MASTER_ADDR"] = launch.main_address  # as Lightning sets them, for whatever reads them later
    os.environ["MASTER_PORT"] = str(launch.main_port)
    joined = threading.Event()
    threading.Thread(target=_give_up_unless, args=(joined, launch, timeout_s), daemon=True).start()
    timeout = timedelta(seconds=timeout_s)
    try:
        if dist.is_torchelastic_launched():
            dist.init_process_group(launch.backend, init_method="env://", rank=launch.rank,
                                    world_size=launch.world_size, timeout=timeout)
        else:
            store = dist.TCPStore(launch.main_address, launch.main_port, launch.world_size, launch.rank == 0,
                                  timeout, master_listen_fd=_listen(launch) if launch.rank == 0 else None)
            dist.init_process_group(launch.backend, store=store, rank=launch.rank, world_size=launch.world_size,
                                    timeout=timeout)
    except (dist.DistError, OSError) as e:
        raise NodesLost(lost_message(e, timeout_s, joining=True)) from None
    finally:
        joined.set()
    _joined = True
    leave_at_exit()


def leave_at_exit() -> None:
    """Closes the process group before the interpreter ends, whatever ends it: left to the end of the
    interpreter, gloo's threads can be torn down while still running ("terminate called without an
    active exception", SIGABRT) when a rank exits just after another. For the ranks joined here, and
    for the DDP workers Lightning starts (gradlab.run.recipe)."""
    atexit.unregister(_leave)  # once
    atexit.register(_leave)


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _listen(launch: Launch) -> int:
    """A socket listening on MASTER_ADDR:MASTER_PORT alone, for rank 0's store: left to itself,
    torch's store listens on every address of the machine (::), where only MASTER_ADDR is asked for."""
    sock = socket.socket(socket.AF_INET6 if ":" in launch.main_address else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a run that just ended may hold it in TIME_WAIT
    try:
        sock.bind((launch.main_address, launch.main_port))
        sock.listen()
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on MASTER_ADDR:MASTER_PORT={launch.main_address}:"
                               f"{launch.main_port}: {e.strerror}") from None
    return sock.detach()  # the store's from now on


def _give_up_unless(joined: threading.Event, launch: Launch, timeout_s: float) -> None:
    """Ends the process if it has not joined a while after the timeout: torch's store client waits
    without one for a MASTER_PORT where something else listens and never answers."""
    if not joined.wait(timeout_s + 5):
        error = TimeoutError(f"no answer from {launch.main_address}:{launch.main_port}")
        print(f"gradlab: {lost_message(error, timeout_s, joining=True)}", file=sys.stderr, flush=True)
        os._exit(4)  # nothing written yet; the main thread is inside torch and cannot be interrupted


def check_same_config(cfg: DictConfig) -> None:
    """ConfigError on every rank when a rank composed another config than rank 0 (a node started with
    another command line), naming each difference, before anything is written."""
    import torch.distributed as dist

    if not _joined_now():
        return
    mine = _flat(OmegaConf.to_container(cfg, resolve=True))
    everyone: list[dict] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(everyone, mine)
    differences = []
    for rank, theirs in enumerate(everyone[1:], start=1):
        for key in sorted(everyone[0].keys() | theirs.keys()):
            if everyone[0].get(key, "(absent)") != theirs.get(key, "(absent)"):
                differences.append(f"rank {rank} has {key}={theirs.get(key, '(absent)')!r}, rank 0 "
                                   f"{key}={everyone[0].get(key, '(absent)')!r}")
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise ConfigError(
            f"bad launch: the processes of this run were started with different configs ({shown}). Allowed: "
            "the same command line on every node, only NODE_RANK (or the launcher's rank) differing. "
            f"{NOTHING_RAN}"
        )


def from_rank_0(decide: Callable[[], T]) -> T:
    """`decide()` on rank 0, its answer (or its error) on every rank of a joined run; `decide()`
    itself in a process that joined none."""
    import torch.distributed as dist

    if not _joined_now():
        return decide()
    box: list = [None]
    mine: Exception | None = None
    if dist.get_rank() == 0:
        try:
            box[0] = (decide(), None)
        except Exception as e:  # the others stop with the same error, rather than waiting for the answer
            mine = e
            box[0] = (None, _portable(e))
    dist.broadcast_object_list(box, src=0)
    answer, error = box[0]
    if mine is not None:
        raise mine
    if error is not None:
        raise pickle.loads(error[0]) if error[0] is not None else RuntimeError(error[1])
    return answer


def _portable(error: Exception) -> tuple[bytes | None, str]:
    """`error` pickled, if it survives the trip (an exception whose __init__ takes other arguments
    than its message would not be rebuilt on the other side), and its text for a RuntimeError if not."""
    try:
        data = pickle.dumps(error)
        pickle.loads(data)
    except Exception:
        data = None
    return data, f"{type(error).__name__} on rank 0: {error}"


def lost(error: BaseException) -> bool:
    """Whether `error` says another rank of this run is gone or stuck. torch raises the store's and
    NCCL's errors as DistError, but gloo's as plain RuntimeErrors, known by their text: "[...gloo/
    transport/tcp/pair.cc:545] Read error ...: Connection reset by peer" (a rank died), "Application
    timeout caused pair closure" (a rank hung past the timeout)."""
    import torch.distributed as dist

    return isinstance(error, dist.DistError) or (
        isinstance(error, RuntimeError) and dist.is_initialized() and _GLOO_LOST.search(str(error)) is not None)


def timeout_s(cfg: DictConfig) -> float:
    return cfg.get("ddp_timeout_s", TIMEOUT_S)  # a run saved before the key existed has none


def lost_message(error: BaseException, timeout_s: float, joining: bool = False) -> str:
    """One line for a run whose other processes went away or never came."""
    # the first sentence, without gloo's source location: "Read error [127.0.0.1]:4567: Connection reset by peer"
    detail = re.sub(r"^\[[^\]]*\] ", "", " ".join(str(error).split())).split(". ")[0][:300]
    if joining:
        return (f"could not connect the processes of this run ({detail}; each waits ddp_timeout_s={timeout_s:g} s "
                "for the others). Start the same command on every node, each with its own NODE_RANK, the same "
                "MASTER_ADDR and a free MASTER_PORT of that machine; nothing was written")
    return (f"lost the other processes of this run (one stopped, or did not answer within ddp_timeout_s="
            f"{timeout_s:g} s): {detail}. The checkpoints written before it, if any, are kept (resume=true "
            "continues from the newest last.ckpt)")


def _joined_now() -> bool:
    """join() ran in this process and its group is still there (a sweep's job end destroys it)."""
    import torch.distributed as dist

    return _joined and dist.is_initialized()


def _flat(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}
