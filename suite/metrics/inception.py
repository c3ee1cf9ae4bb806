"""Finding and checking the weights of torch-fidelity's ``inception-v3-compat`` extractor.

torch-fidelity 0.4.0 downloads the weights with ``torch.hub.load_state_dict_from_url`` into
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``) and accepts a local file as ``feature_extractor_weights_path``.
The suite always passes a checked local path, so no metric call downloads anything. Only
``resolve`` downloads, and only when ``eval.inception_download`` allows it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from suite.metrics.fidelity import ExtractorSpec

log = logging.getLogger(__name__)

NAME = "inception-v3-compat"
FILE_NAME = Path(urlparse(URL_INCEPTION_V3).path).name
# torch.hub names a file by the first hex digits of its SHA-256, and checks them on download
HASH_PREFIX = re.search(r"-([0-9a-f]{6,})\.", FILE_NAME).group(1)
FEATURE_LAYER = "2048"
LOGITS_LAYER = "logits_unbiased"
FEATURE_DIM = 2048
NUM_CLASSES = 1008


class InceptionWeightsError(RuntimeError):
    """The Inception weights are missing, truncated or not an inception-v3-compat state dict."""


def hub_cache_path() -> Path:
    """Return where torch-fidelity's own download of the weights is cached."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FILE_NAME


def _how_to_supply() -> str:
    return (f"supply the file with eval.inception_weights = PATH (command line: --inception-weights PATH), "
            f"put {FILE_NAME} into {hub_cache_path().parent} (torch-fidelity's download cache), or set "
            f"eval.inception_download = true to let torch-fidelity download it from {URL_INCEPTION_V3}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(path: Path) -> str:
    """Check that ``path`` contains complete inception-v3-compat weights and return its SHA-256.

    A file with torch-fidelity's download name must match the hash prefix in that name. Any file
    must load as a plain state dict (``weights_only=True``) that fits the network exactly.

    Raises:
        InceptionWeightsError: a hash mismatch (a truncated download), an unreadable file or
            missing and unexpected keys; the message names the file and how to replace it.
    """
    digest = _sha256(path)
    if path.name == FILE_NAME and not digest.startswith(HASH_PREFIX):
        raise InceptionWeightsError(
            f"Inception weights at {path} are truncated or corrupt: SHA-256 starts with {digest[:8]}, "
            f"expected {HASH_PREFIX}; delete the file and {_how_to_supply()}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        FeatureExtractorInceptionV3(NAME, [FEATURE_LAYER], feature_extractor_weights_path=str(path))
    except Exception as error:  # torch.load raises several types for a damaged file
        first_line = (str(error).splitlines() or [""])[0][:200]
        raise InceptionWeightsError(
            f"Inception weights at {path} could not be loaded ({type(error).__name__}: {first_line}); "
            f"the file is truncated or not torch-fidelity's {FILE_NAME}: {_how_to_supply()}") from error
    if not isinstance(state, dict):
        raise InceptionWeightsError(f"Inception weights at {path} are not a state dict; {_how_to_supply()}")
    return digest


def resolve(weights: str, allow_download: bool) -> ExtractorSpec:
    """Find, check and describe the Inception weights before training starts.

    Args:
        weights: ``eval.inception_weights``; empty looks in torch-fidelity's download cache.
        allow_download: ``eval.inception_download``; download into that cache when missing.

    Raises:
        InceptionWeightsError: the file is missing (and may not be downloaded) or fails ``check``.
    """
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InceptionWeightsError(f"Inception weights not found at {path} (eval.inception_weights); "
                                        f"expected torch-fidelity's {FILE_NAME}: {_how_to_supply()}")
    else:
        path = hub_cache_path()
        if not path.is_file():
            if not allow_download:
                raise InceptionWeightsError(
                    f"Inception weights for {NAME} not found: expected {FILE_NAME} at {path}; "
                    f"{_how_to_supply()}. Labelled data sets can use the offline eval.extractor = \"domain\"")
            log.info("downloading %s to %s", URL_INCEPTION_V3, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), hash_prefix=HASH_PREFIX, progress=False)
    digest = check(path)
    return ExtractorSpec(NAME, FEATURE_LAYER, LOGITS_LAYER, FEATURE_DIM, NUM_CLASSES, str(path),
                         cache_id=f"inception-{digest[:12]}")

