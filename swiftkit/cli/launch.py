"""``NPROC_PER_NODE=N [NNODES= NODE_RANK= MASTER_ADDR= MASTER_PORT=] swiftkit sft|pt|rlhf ...``.

A training command asked for more than one process starts itself again under PyTorch's own launcher,
``python -m torch.distributed.run`` (torchrun), once per rank, and waits for it. torchrun watches the
ranks: when one fails, it stops the others, and this command then ends with one line saying so. On a
single machine the ranks meet on a free port (torchrun's ``--standalone``) unless MASTER_PORT is given;
across machines each node runs the same command with its NODE_RANK and the first node's MASTER_ADDR and
MASTER_PORT (default 29500). A process already started by a launcher (torchrun, ``accelerate launch``:
LOCAL_RANK is set) runs as the rank it was given.
"""

from __future__ import annotations

import os
import subprocess
import sys

from swiftkit.core.distributed import env_count
from swiftkit.core.errors import ConfigError

DEFAULT_PORT = 29500


def torchrun_options(environ=None) -> list[str] | None:
    """torchrun's options for what NPROC_PER_NODE, NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT ask;
    None for one process, or when a launcher already started this one."""
    environ = os.environ if environ is None else environ
    if "LOCAL_RANK" in environ or "TORCHELASTIC_RUN_ID" in environ:
        return None
    nproc = env_count(environ, "NPROC_PER_NODE", 1, 1)
    nnodes = env_count(environ, "NNODES", 1, 1)
    node_rank = env_count(environ, "NODE_RANK", 0, 0)
    if nproc * nnodes == 1:
        return None
    if node_rank >= nnodes:
        raise ConfigError(f"NODE_RANK={node_rank} must be below NNODES={nnodes} (nodes count from 0)")
    options = ["--nproc_per_node", str(nproc)]
    if nnodes == 1 and not environ.get("MASTER_PORT"):
        return ["--standalone", *options]  # a free port on this machine
    port = env_count(environ, "MASTER_PORT", DEFAULT_PORT, 1)
    if nnodes > 1 and not environ.get("MASTER_ADDR"):
        raise ConfigError(f"NNODES={nnodes}: set MASTER_ADDR to the address of the node with NODE_RANK=0 (and the "
                          f"same MASTER_PORT, default {DEFAULT_PORT}, on every node)")
    return [*options, "--nnodes", str(nnodes), "--node_rank", str(node_rank),
            "--master_addr", environ.get("MASTER_ADDR", "127.0.0.1"), "--master_port", str(port)]


def launch(options: list[str], argv: list[str]) -> int:
    """Run ``swiftkit ARGV`` once per rank under torchrun; its exit status (one line on stderr when a rank failed)."""
    command = [sys.executable, "-m", "torch.distributed.run", *options, "-m", "swiftkit", *argv]
    try:
        status = subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 130
    if status != 0:
        print(f"swiftkit {argv[0]}: error: a rank of the distributed run failed (torchrun exit status {status}; "
              "its error is above); a run that had saved a checkpoint continues with --resume_from_checkpoint "
              "under the same NPROC_PER_NODE and NNODES", file=sys.stderr)
    return status
