"""blockzoo.data: image-classification datasets held in memory as uint8 tensors, and a fast augmenting loader.

Datasets (:data:`DATASETS`): ``"fashion-mnist"`` and ``"mnist"`` (IDX gzip files), ``"cifar10"`` and ``"cifar100"``
(python pickle batches, read with a restricted unpickler that cannot run code), and ``"synthetic"`` (learnable,
deterministic, for tests); and image folders of your own (``DIR/train/<class>/*.png``, ``DIR/val/<class>/...``,
:mod:`blockzoo.data.imagefolder`), passed by path wherever a dataset name goes. Every file is checked (gzip, IDX
magic/dims/size, counts, label range, checksums) and a bad or missing file raises :class:`DataError` whose message
names the file and the fix.

>>> ds = load_dataset("fashion-mnist", "train", subset=1000, seed=0)          # doctest: +SKIP
>>> for x, y in Loader(ds, 128, train=True, seed=0): ...                       # doctest: +SKIP

Files are looked up in ``data_dir`` / ``$BLOCKZOO_DATA`` / the system folder / ``~/.cache/blockzoo/<name>``; fetch them
with ``python -m blockzoo.data fetch fashion-mnist`` (:func:`ensure_dataset`).
"""

from .augment import crop_flip, random_crop_flip
from .core import FETCH_CMD, DataError, Dataset, DatasetInfo, FileSpec
from .datasets import (
                       SPLITS,
                       available_datasets,
                       check_img_size,
                       data_fingerprint,
                       dataset_label,
                       dataset_shape,
                       is_registered,
                       load_dataset,
                       load_split,
                       subset_indices,
                       take_subset,
)
from .fetch import (
                       ENV_VAR,
                       cache_dir,
                       cache_root,
                       candidate_dirs,
                       default_data_dir,
                       ensure_dataset,
                       find_data_dir,
                       verify_dataset,
)
from .imagefolder import is_image_folder, load_image_folder, save_image_folder
from .loader import Loader, default_crop_padding, epoch_seed
from .registry import DATASETS, canonical_name, get_info

__all__ = [
    "DATASETS", "DataError", "Dataset", "DatasetInfo", "ENV_VAR", "FETCH_CMD", "FileSpec", "Loader", "SPLITS",
    "available_datasets", "cache_dir", "cache_root", "check_img_size", "candidate_dirs", "canonical_name", "crop_flip",
    "data_fingerprint", "dataset_label", "dataset_shape", "default_crop_padding", "default_data_dir", "ensure_dataset",
    "epoch_seed", "find_data_dir", "get_info", "is_image_folder", "is_registered", "load_dataset", "load_image_folder",
    "load_split", "random_crop_flip", "save_image_folder", "subset_indices", "take_subset", "verify_dataset",
]
