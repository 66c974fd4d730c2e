"""The reproducibility and offline guard that every notebook starts with."""

import socket

import numpy as np
import pytest
import torch

from mmtutor import runtime


def test_seed_everything_repeats_numpy_and_torch():
    runtime.seed_everything(123)
    a = (np.random.rand(3), torch.rand(3))
    runtime.seed_everything(123)
    b = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)


def test_set_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("3", TypeError)])
def test_seed_and_threads_reject_bad_values(bad, exc):
    with pytest.raises(exc, match="seed"):
        runtime.seed_everything(bad)
    with pytest.raises(exc if bad != -1 else ValueError, match="threads"):
        runtime.set_threads(bad if bad != -1 else 0)


def test_network_is_forbidden_but_loopback_works():
    runtime.forbid_network()  # conftest.py already does this for the whole session
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(runtime.NetworkAccessError, match="offline"):
            sock.connect(("93.184.216.34", 80))
    assert not issubclass(runtime.NetworkAccessError, OSError)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass


def test_hub_download_fails_loudly():
    """With HF_HUB_OFFLINE=1 (set before huggingface_hub is imported) a download raises at once."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    assert constants.HF_HUB_OFFLINE
    with pytest.raises((LocalEntryNotFoundError, runtime.NetworkAccessError)):
        hf_hub_download("openai-community/gpt2", "config.json", cache_dir="/nonexistent-cache")


def test_setup_notebook_reports_settings(monkeypatch):
    monkeypatch.setenv("MMTUTOR_OFFLINE", "1")
    settings = runtime.setup_notebook(seed=7, threads=torch.get_num_threads())
    assert settings["seed"] == 7 and settings["offline"] is True
    with pytest.raises(TypeError, match="offline"):
        runtime.setup_notebook(offline="yes")


def test_import_tensorflow_returns_the_module():
    tf = runtime.import_tensorflow()
    assert tf.__name__ == "tensorflow" and runtime.import_tensorflow() is tf


def test_describe_names_arrays_and_tensors_by_dtype_and_shape():
    _describe = runtime._describe
    assert _describe(np.zeros((2, 3), dtype=np.float32)) == "a float32 array of shape (2, 3)"
    assert _describe(torch.zeros(4, dtype=torch.int64)) == "a torch.int64 tensor of shape (4,)"
    assert _describe(3) == "int: 3"
    long = _describe("x" * 200)
    assert len(long) == 80 and long.startswith("str: 'xxx") and long.endswith("...")
