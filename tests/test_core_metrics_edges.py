"""Edges of fwdlearn.metrics (found by mutation testing): masked_accuracy's refusals, roc_auc with ties on a
hand-computed area, in float64, and its refusals, average_ranks' dtype."""

import pytest
import torch

from fwdlearn.metrics import average_ranks, masked_accuracy, roc_auc


def test_masked_accuracy_refuses_a_label_that_is_not_a_vector_of_any_rank():
    """A 0-d label failed inside the shape check as an IndexError, not the refusal naming the shape."""
    with pytest.raises(ValueError, match=r"masked_accuracy: y must be a vector of class ids, shape \[N\]; got \(\)$"):
        masked_accuracy(torch.eye(2), torch.tensor(1))


def test_masked_accuracy_refuses_more_score_rows_than_labels():
    with pytest.raises(ValueError, match=r"masked_accuracy: scores must be \[N, classes\] with one row per label, "
                                         r"N = 2; got \(3, 2\)$"):
        masked_accuracy(torch.eye(3, 2), torch.tensor([0, 1]))


def test_masked_accuracy_refuses_a_column_mask_of_as_many_entries():
    """A [N, 1] mask holds N entries but is not the vector of one entry per row."""
    with pytest.raises(ValueError, match=r"masked_accuracy: the mask must have one entry per row of y, shape \(2,\); "
                                         r"got \(2, 1\)$"):
        masked_accuracy(torch.eye(2), torch.tensor([0, 1]), torch.ones(2, 1, dtype=torch.bool))


def test_roc_auc_lists_five_label_values_then_an_ellipsis():
    with pytest.raises(ValueError, match=r"got values \[0.0, 1.0, 2.0, 3.0, 4.0\] ...$"):
        roc_auc(torch.rand(6), torch.arange(6))
    with pytest.raises(ValueError, match=r"got values \[-2.0, -1.0, 0.0, 1.0, 2.0\]$"):
        roc_auc(torch.rand(5), torch.arange(5) - 2)
    with pytest.raises(ValueError, match=r"got values \[0.0, 0.123456, 1.0\]$"):
        roc_auc(torch.rand(3), torch.tensor([0.0, 0.123456, 1.0], dtype=torch.float64))


def test_roc_auc_refuses_labels_without_a_negative():
    with pytest.raises(ValueError, match=r"^roc_auc needs positives and negatives; got 3 positives and 0 negatives$"):
        roc_auc(torch.rand(3), torch.ones(3, dtype=torch.bool))


def test_roc_auc_with_ties_is_the_hand_computed_area():
    """Ranks 1, 2.5, 2.5, 4; the positives' 2.5 + 4 = 6.5, less 2 * 3 / 2, over 2 * 2 pairs: 0.875 (the tied pair
    counts half)."""
    scores, labels = torch.tensor([0.1, 0.4, 0.4, 0.8]), torch.tensor([0, 1, 0, 1])
    assert average_ranks(scores).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert roc_auc(scores, labels) == 0.875
    assert roc_auc(scores, labels.bool()) == 0.875 and roc_auc(-scores, labels) == 0.125


def test_roc_auc_reads_float64_scores_in_float64():
    """Scores 1 and 1 + 1e-12 are apart in float64 (one positive above one negative: 1.0), tied in float32 (0.5)."""
    assert roc_auc(torch.tensor([1.0, 1.0 + 1e-12], dtype=torch.float64), torch.tensor([0, 1])) == 1.0


def test_average_ranks_are_float64_nan_ones_too():
    ranks = average_ranks(torch.tensor([3.0, 1.0, 3.0, 3.0]))
    assert ranks.dtype == torch.float64 and ranks.tolist() == [3.0, 1.0, 3.0, 3.0]
    nan = average_ranks(torch.tensor([1.0, float("nan")]))
    assert nan.dtype == torch.float64 and nan.isnan().all()
