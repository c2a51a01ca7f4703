"""The registered datasets (:data:`DATASETS`) with their files, checksums, class names and normalisation statistics.

Checksums
---------
* Fashion-MNIST: sha256 of the *decompressed* IDX files, computed from the Debian package ``dataset-fashion-mnist``
  (Debian re-compressed the .gz files, so their md5 differs from the official one, the content does not). The official
  .gz md5 values (Zalando / torchvision) are kept too and checked on download.
* MNIST: no reliable checksum of the decompressed content is known here, so loads get the structural checks only
  (magic, dims, payload size, counts, label range; gzip's own CRC32 catches bit rot in .gz files). Downloads are
  checked against the md5 of the official .gz files (as used by torchvision and others).
* CIFAR-10/100: md5 of each extracted pickle file and of the tarball (official values, as used by torchvision); the
  pickles are never re-compressed, so these are checked on every load.

Statistics (per channel, 0..1 scale, full train split): Fashion-MNIST computed here from the 60000 train images
(0.2860406, 0.3530242); MNIST (0.1307, 0.3081); CIFAR-10 (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616);
CIFAR-100 (0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762) -- population std over all pixels, not the
(0.2023, 0.1994, 0.2010) that circulates for CIFAR-10 (that one is an average of per-image stds).
"""

from __future__ import annotations

from pathlib import Path

from .cifar import read_cifar_split
from .core import DataError, DatasetInfo, FileSpec
from .idx import read_idx_split

__all__ = ["DATASETS", "ALIASES", "get_info", "canonical_name", "FASHION_MNIST_CLASSES", "MNIST_CLASSES",
           "CIFAR10_CLASSES", "CIFAR100_CLASSES"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
MNIST_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest",
    "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard",
    "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum",
    "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper",
    "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm",
)

_FASHION = DatasetInfo(
    name="fashion-mnist", kind="idx", title="Fashion-MNIST (Xiao, Rasul & Vollgraf 2017)",
    classes=FASHION_MNIST_CLASSES, mean=(0.2860406,), std=(0.3530242,), in_chans=1, image_size=(28, 28), flip_ok=True,
    files={
        "train": (
            FileSpec("train-images-idx3-ubyte.gz",
                     sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                     md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            FileSpec("train-labels-idx1-ubyte.gz",
                     sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                     md5="25c81989df183df01b3e8a0aad5dffbe"),
        ),
        "test": (
            FileSpec("t10k-images-idx3-ubyte.gz",
                     sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                     md5="bef4ecab320f06d8554ea6380940ec79"),
            FileSpec("t10k-labels-idx1-ubyte.gz",
                     sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                     md5="bb300cfdad3c16e7a12a480ee83cd310"),
        ),
    },
    subdirs=("fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dir=Path("/usr/share/datasets/fashion-mnist"), apt_package="dataset-fashion-mnist",
    reader=read_idx_split,
)

_MNIST = DatasetInfo(
    name="mnist", kind="idx", title="MNIST (LeCun et al. 1998)",
    classes=MNIST_CLASSES, mean=(0.1307,), std=(0.3081,), in_chans=1, image_size=(28, 28), flip_ok=False,
    files={
        "train": (FileSpec("train-images-idx3-ubyte.gz", md5="f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                  FileSpec("train-labels-idx1-ubyte.gz", md5="d53e105ee54ea40749a09fcbcd1e9432")),
        "test": (FileSpec("t10k-images-idx3-ubyte.gz", md5="9fb629c4189551a2d022fa330f9573f3"),
                 FileSpec("t10k-labels-idx1-ubyte.gz", md5="ec29112dd5afa0611ce80d1b7f02629c")),
    },
    subdirs=("MNIST/raw", "MNIST"),
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
             "http://yann.lecun.com/exdb/mnist/"),
    reader=read_idx_split, verified_content=False,
)

_CIFAR10 = DatasetInfo(
    name="cifar10", kind="cifar", title="CIFAR-10 (Krizhevsky 2009)",
    classes=CIFAR10_CLASSES, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), in_chans=3,
    image_size=(32, 32), flip_ok=True,
    files={
        "train": (FileSpec("data_batch_1", md5="c99cafc152244af753f735de768cd75f"),
                  FileSpec("data_batch_2", md5="d4bba439e000b95fd0a9bffe97cbabec"),
                  FileSpec("data_batch_3", md5="54ebc095f3ab1f0389bbae665268c751"),
                  FileSpec("data_batch_4", md5="634d18415352ddfa80567beed471001a"),
                  FileSpec("data_batch_5", md5="482c414d41f54cd18b22e5b47cb7c3cb")),
        "test": (FileSpec("test_batch", md5="40351d587109b95175f43aff81a1287e"),),
    },
    subdirs=("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar-10"),
    archive_url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a", archive_folder="cifar-10-batches-py",
    reader=read_cifar_split,
)

_CIFAR100 = DatasetInfo(
    name="cifar100", kind="cifar", title="CIFAR-100 (Krizhevsky 2009), fine labels",
    classes=CIFAR100_CLASSES, mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), in_chans=3,
    image_size=(32, 32), flip_ok=True,
    files={
        "train": (FileSpec("train", md5="16019d7e3df5f24257cddd939b257f8d"),),
        "test": (FileSpec("test", md5="f0ef6b0ae62326f3e7ffdfab6717acfc"),),
    },
    subdirs=("cifar-100-python", "cifar100/cifar-100-python", "cifar-100"),
    archive_url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    archive_md5="eb9058c3a382ffc7106e4002c42a8d85", archive_folder="cifar-100-python",
    reader=read_cifar_split,
)

_SYNTHETIC = DatasetInfo(
    name="synthetic", kind="synthetic", title="Synthetic class-template images (blockzoo, for tests)",
    classes=tuple(f"class{k}" for k in range(10)), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), in_chans=3,
    image_size=(32, 32), flip_ok=True,
)

#: Registered datasets by canonical name.
DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (_FASHION, _MNIST, _CIFAR10, _CIFAR100, _SYNTHETIC)}

#: Accepted spellings -> canonical name (matching is case-insensitive, '_' == '-').
ALIASES = {"fashion-mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
           "mnist": "mnist", "cifar10": "cifar10", "cifar-10": "cifar10", "cifar100": "cifar100",
           "cifar-100": "cifar100", "synthetic": "synthetic"}


def canonical_name(name: str) -> str:
    """Canonical registered name for ``name`` (``"FashionMNIST"`` -> ``"fashion-mnist"``); DataError if unknown."""
    key = str(name).strip().lower().replace("_", "-")
    if key in ALIASES:
        return ALIASES[key]
    raise DataError(f"unknown dataset {name!r}: neither a registered dataset ({', '.join(DATASETS)}) nor an existing "
                    f"folder; pass one of these names or the path of an image folder (DIR/train/<class>/*.png)")


def get_info(name: str) -> DatasetInfo:
    return DATASETS[canonical_name(name)]
