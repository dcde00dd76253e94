"""fwdlearn.distributed: shards cover the items once, in order; gather_rows concatenates across real processes."""

import pytest
import torch

from fwdlearn.distributed import gather_rows, is_distributed, shard_bounds, world_size


@pytest.mark.parametrize("count,shards", [(10, 3), (2, 4), (0, 2), (7, 1)])
def test_shards_partition_the_items_in_order(count, shards):
    parts = [shard_bounds(count, shards, i) for i in range(shards)]
    covered = [i for start, stop in parts for i in range(start, stop)]
    assert covered == list(range(count))
    assert max(stop - start for start, stop in parts) - min(stop - start for start, stop in parts) <= 1


def test_single_process_is_the_identity():
    rows = torch.randn(3, 2)
    assert not is_distributed() and world_size() == 1
    assert gather_rows(rows) is rows
    with pytest.raises(ValueError, match=r"shard index 2 outside \[0, 2\)"):
        shard_bounds(5, 2, 2)

# gather_rows across real processes (uneven shards) is exercised by tests/test_influence_distributed.py
