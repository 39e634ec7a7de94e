"""Model and dataset sources: turn the ``model`` and ``dataset`` sections of a config into a
``torch.nn.Module`` and a shard reader.

    loaded = load_model(cfg.model)            # LoadedModel(module, weights_digest, description)
    source = open_dataset(cfg)                # len(source), source.sample_shape, source.dataset_id
    batch = source.read(0, 256)               # Batch(x, labels, index, ids)
"""

from .arrays import ArraySource
from .base import Batch, DatasetSource
from .datasets import open_dataset, open_source
from .digits import DigitsSource, digits_arrays, digits_split
from .errors import DatasetError, ModelLoadError, SourceError
from .images import ImageFolderSource
from .models import LoadedModel, file_digest, load_model
from .zarr_array import ZarrSource

__all__ = [
    "ArraySource",
    "Batch",
    "DatasetError",
    "DatasetSource",
    "DigitsSource",
    "ImageFolderSource",
    "LoadedModel",
    "ModelLoadError",
    "SourceError",
    "ZarrSource",
    "digits_arrays",
    "digits_split",
    "file_digest",
    "load_model",
    "open_dataset",
    "open_source",
]
