"""Fast, single-process checks of the pieces the 2-process tests (marked slow) exercise under DDP."""

from __future__ import annotations

import torch
from ddp_toy import collator, make_lit, samples

from fusion.distributed import gather_dict, gather_list, gather_rows, world_size

VAL = samples("V", 9, seed=2, b_rows={1, 4, 5, 8})


def test_without_a_process_group_everything_is_returned_unchanged():
    x = torch.randn(3, 2, requires_grad=True)
    assert world_size() == 1
    assert gather_rows(x, grad=True) is x
    labels = {"grade": torch.tensor([0, -1, 2])}
    assert gather_dict(labels) is labels and gather_list([1, 2]) == [1, 2]


def test_split_metrics_count_a_repeated_patient_once():
    """DistributedSampler pads shards by repeating patients; a repeat must not change the metrics."""
    lit = make_lit().eval()
    with torch.no_grad():
        lit._collect("val", collator()(VAL))
        once = lit.split_metrics("val")
        lit._collect("val", collator()(VAL[:5]))
        lit._collect("val", collator()(VAL[4:] + VAL[:2]))  # patients V0, V1 and V4 seen twice
        padded = lit.split_metrics("val")
    assert padded == once
    assert set(once) >= {"grade_auroc", "survival_cindex", "response_auroc", "loss", "score"}
