"""The helpers of the benchmark row "structured pruning (fusion model)" (the full row runs in the bench test)."""

import pytest
import torch

from mmtutor.bench import TARGETS
from mmtutor.bench.structured_pruning import AMOUNT, NAME, prune_and_fine_tune, round_trip_max_difference
from mmtutor.compress.prune import avdigits_architecture
from mmtutor.reference import reference_architecture, reference_datasets


def test_row_name_has_a_target():
    assert NAME in TARGETS and 0 < AMOUNT < 1


def test_prune_and_fine_tune_shrinks_trains_and_round_trips():
    torch.manual_seed(0)
    model = reference_architecture(dim=32, hidden=32)
    pruned, history = prune_and_fine_tune(model, amount=0.5, epochs=0)
    assert history is None and not pruned.training
    assert avdigits_architecture(pruned)["dim"] == 16 and model.fusion.joint.out_features == 32
    tuned, history = prune_and_fine_tune(model, amount=0.5, epochs=1)
    assert len(history.epochs) == 1 and not tuned.training
    assert not torch.equal(tuned.fusion.joint.weight, pruned.fusion.joint.weight)   # it trained
    images, log_mel, _ = reference_datasets()["test"][:16]
    assert round_trip_max_difference(tuned, images, log_mel) == 0.0


def test_bad_epochs():
    with pytest.raises(ValueError, match="epochs"):
        prune_and_fine_tune(reference_architecture(dim=16, hidden=16), epochs=-1)
