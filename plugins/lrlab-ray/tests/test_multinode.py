"""A Ray cluster of two nodes (two raylets on this machine, one CPU each): the ``ray``
executor joins it by address, spreads the runs over both nodes, and every result comes
back to the driver and is stored."""

import pandas as pd
import pytest

from lrlab.sweep import run_sweep


@pytest.fixture(scope="module")
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()
    assert not ray.is_initialized()


def test_runs_spread_over_both_nodes_and_every_result_is_stored(two_nodes, sweepdir):
    import ray

    result = run_sweep(sweepdir / "sweep.toml", model="slow(seconds=2)",
                       lr=[0.01, 0.03, 0.1, 0.3], out=str(sweepdir / "out"), name="nodes",
                       executor=f"ray(address={two_nodes.address})", report=False)
    assert not ray.is_initialized(), "the executor left its connection open"
    runs = result.runs
    assert len(runs) == 4 and list(runs["error"]) == [""] * 4, runs["error"].tolist()
    assert (runs["val_acc"] > 0.5).all()
    nodes = {(sweepdir / f"node-{rid}.txt").read_text() for rid in runs["run_id"]}
    assert len(nodes) == 2, "every run was trained on the same node"
    stored = pd.read_parquet(sweepdir / "out" / "nodes" / "runs.parquet")
    assert set(stored["run_id"]) == set(runs["run_id"])
