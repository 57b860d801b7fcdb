#!/usr/bin/python3
"""Runs the randomized fault checker (fault_run.py, whose docstring lists the
rules it checks) for one seed or many.

    /usr/bin/python3 tests/fault/checker.py --seeds 5 --minutes 2   # a soak
    /usr/bin/python3 tests/fault/checker.py --seed 7 --minutes 0.25 # replay
    /usr/bin/python3 tests/fault/checker.py --topology scaled-out   # cluster

Each seed's fault schedule lasts --minutes; seeds run one after the other in
temporary directories (removed when the seed passes). Binaries come from
bazel-bin (`bazel build //service:parley-service //gateway:parley-gateway`)
or PARLEY_BIN_DIR. A failing seed prints its schedule, the violations with
their frames, and the command that replays it; the exit status is 1 when any
seed failed.
"""

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fault_run import TOPOLOGIES, run_seed  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int,
                        help="run only this seed (replays a failure)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="how many seeds to run, from --first-seed")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=0.25,
                        help="length of each seed's fault schedule")
    parser.add_argument("--topology", choices=sorted(TOPOLOGIES),
                        default="one-box",
                        help="one-box: one service on SQLite; scaled-out: "
                        "2 replicas on PostgreSQL and NATS")
    args = parser.parse_args(argv)
    seeds = ([args.seed] if args.seed is not None else
             range(args.first_seed, args.first_seed + args.seeds))
    failed = []
    for seed in seeds:
        workdir = tempfile.mkdtemp(prefix=f"parley-fault-{seed}-")
        result = run_seed(seed, args.minutes, workdir,
                          TOPOLOGIES[args.topology])
        print(result.summary() if result.ok else result.report(), flush=True)
        if result.ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            failed.append(seed)
    print(f"{len(seeds) - len(failed)} seeds passed, {len(failed)} failed"
          + (f": {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
