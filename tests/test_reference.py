"""The Part II reference model: its data, its training, and that callers get independent copies."""

import pytest
import torch

from mmtutor.reference import (PAIRS_PER_CLIP, accuracy, reference_architecture, reference_datasets,
                               train_loader, train_reference)


def test_datasets_have_the_documented_sizes():
    data = reference_datasets()
    assert {split: len(ds) for split, ds in data.items()} == {"train": 1280, "val": 800, "test": 800}
    images, log_mel, labels = data["test"][:3]
    assert images.shape == (3, 1, 8, 8) and log_mel.shape == (3, 32, 96) and labels.dtype == torch.int64
    assert set(PAIRS_PER_CLIP) == {"train", "val", "test"}


def test_architecture_has_the_documented_parameter_count():
    assert sum(p.numel() for p in reference_architecture().parameters()) == 563_850


def test_trained_reference_is_accurate_deterministic_and_copied():
    model, history = train_reference()
    assert not model.training and len(history.epochs) >= 1
    acc = accuracy(model)
    assert acc >= 0.98
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()                                   # a caller compressing its copy in place ...
    again, _ = train_reference()
    assert accuracy(again) == acc                        # ... leaves the next caller's copy untouched
    images, log_mel, _ = reference_datasets()["test"][:8]
    assert torch.equal(again(images, log_mel), train_reference()[0](images, log_mel))


def test_bad_input():
    with pytest.raises(ValueError, match="split"):
        accuracy(reference_architecture(), split="holdout")
    with pytest.raises(TypeError, match="seed"):
        train_reference(seed=0.5)
    with pytest.raises(ValueError, match="batch_size"):
        train_loader(reference_datasets()["train"], batch_size=0)
