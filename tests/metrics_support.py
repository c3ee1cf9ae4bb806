"""Shared fixtures of the metrics tests: no network, and one suite cache for the whole session.

Each metrics test module imports ``offline`` (autouse) and ``mnist``, so the domain classifier
is trained once per session at ``TEST_CLASSIFIER_EPOCHS`` and then loaded from the cache.
"""

import socket

import pytest
import torch

from suite import data
from suite.config import DataConfig
from suite.metrics import cache

CPU = torch.device("cpu")
TEST_CLASSIFIER_EPOCHS = 4  # enough for >95% held-out accuracy; the default 12 is tested as slow


def _refuse_connection(*args, **kwargs):
    raise OSError("network access is disabled in the metrics tests")


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory):
    """No network; one suite cache per session, so the domain classifier trains once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _refuse_connection)
        patch.setenv(cache.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "aegan-suite-cache"))
        yield


@pytest.fixture(scope="module")
def mnist(offline):
    return data.load(DataConfig())
