"""Edges of fwdlearn.diagnostics.alignment (found by mutation testing): cosines and angles of hand-made vectors,
alignment over several tensors and its refusals, feedback alignment per row."""

import math

import pytest
import torch


def test_cosines_and_angles_of_hand_made_vectors():
    from fwdlearn.diagnostics.alignment import angle_degrees, cosine, per_sample_cosine

    assert cosine(torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0])) == pytest.approx(24 / 25, rel=1e-15)
    assert angle_degrees(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])) == pytest.approx(45.0, rel=1e-12)
    big = torch.tensor([-1e200, -1e200, 1.0], dtype=torch.float64)  # (scaled by its largest magnitude, a negative one)
    assert cosine(big, big) == pytest.approx(1.0, rel=1e-15) and cosine(big, -big) == pytest.approx(-1.0, rel=1e-15)
    torch.testing.assert_close(per_sample_cosine(torch.stack([big, big]), torch.stack([big, -big])),
                               torch.tensor([1.0, -1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^cannot align tensors of different shapes \(2, 3\) and \(3, 2\)$"):
        cosine(torch.ones(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"^cannot align tensors of different shapes \(2, 3\) and \(3, 2\)$"):
        per_sample_cosine(torch.ones(2, 3), torch.ones(3, 2))


def test_an_angle_is_read_from_a_cosine_rounded_past_one():
    """These float32 entries give a float64 cosine of -1.0000000000000002 with their negation (and 1.0000000000000002
    with themselves): math.acos of it raised 'math domain error'."""
    from fwdlearn.diagnostics.alignment import angle_degrees, gradient_alignment

    x = torch.tensor([-0.007537308149039745, -0.9144954681396484, -1.0885837078094482, -0.26659631729125977,
                      0.18942345678806305, -0.21902281045913696, 2.057591199874878])
    assert angle_degrees(x, -x) == 180.0 and angle_degrees(x, x) == 0.0
    opposite = gradient_alignment([x], [-x])
    assert opposite.per_tensor["0"][1] == 180.0 and opposite.degrees == 180.0


def test_gradient_alignment_over_all_tensors_is_the_cosine_of_their_concatenation():
    """[1, 0] . [0, 1] (cosine 0, 90 degrees) and [3] . [3] (1, 0 degrees): together [1, 0, 3] . [0, 1, 3] = 9 over
    10, not the mean 0.5 of the cosines nor 45 degrees."""
    from fwdlearn.diagnostics.alignment import gradient_alignment

    a = {"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([3.0])}
    got = gradient_alignment(a, {"w": torch.tensor([0.0, 1.0]), "b": torch.tensor([3.0])})
    assert got.per_tensor == {"w": (0.0, 90.0), "b": (pytest.approx(1.0, rel=1e-15), pytest.approx(0.0, abs=1e-6))}
    assert got.cosine == pytest.approx(0.9, rel=1e-15) and got.degrees == pytest.approx(math.degrees(math.acos(0.9)))
    listed = gradient_alignment([torch.tensor([1.0, 0.0]), torch.tensor([3.0])], [torch.tensor([0.0, 1.0]),
                                                                                   torch.tensor([3.0])])
    assert list(listed.per_tensor) == ["0", "1"] and listed.cosine == pytest.approx(0.9, rel=1e-15)


def test_gradient_alignment_refusals_name_what_differs():
    from fwdlearn.diagnostics.alignment import gradient_alignment

    one = torch.ones(1)
    with pytest.raises(TypeError, match=r"^gradient_alignment needs two dicts or two sequences, not one of each$"):
        gradient_alignment([one], {"a": one})
    with pytest.raises(TypeError, match=r"^gradient_alignment needs two dicts or two sequences, not one of each$"):
        gradient_alignment({"a": one}, [one])
    with pytest.raises(ValueError, match=r"^gradient sets have different names: \['a', 'b'\]$"):
        gradient_alignment({"a": one, "c": one}, {"b": one, "c": one})
    with pytest.raises(ValueError, match=r"^gradient sets have different lengths: 1 and 2$"):
        gradient_alignment([one], [one, one])
    with pytest.raises(ValueError, match=r"^gradient sets have different lengths: 2 and 1$"):
        gradient_alignment([one, one], [one])
    with pytest.raises(ValueError, match=r"^gradient_alignment needs at least one tensor$"):
        gradient_alignment([], [])
    with pytest.raises(ValueError, match=r"^gradient_alignment got None for entry 0 \(both sets\), entry 1 \(the first "
                                         r"set\), entry 2 \(the second set\): a parameter whose \.grad"):
        gradient_alignment([None, None, one], [None, one, None])
    with pytest.raises(ValueError, match=r"^gradient_alignment got None for 'w' \(both sets\): "):
        gradient_alignment({"w": None}, {"w": None})


def test_feedback_alignment_averages_the_cosine_of_each_row():
    """Rows [1, 0, 0] . [1, 0, 0] (1) and [0, 1, 0] . [1, 0, 0] (0): 0.5 (per column: (1 / sqrt 2 + 0 + 0) / 3)."""
    from fwdlearn.diagnostics.alignment import feedback_alignment

    signal = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    true = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert feedback_alignment({"h1": (signal, true), "h2": (true, true)}) == {"h1": 0.5, "h2": 1.0}
