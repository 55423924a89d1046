"""Market-1501 reader (Zheng et al., ICCV 2015), and the Market-style folder parser that the
DukeMTMC-reID reader and the synthetic generator share.

Layout (torchreid's): ``<root>/market1501/Market-1501-v15.09.15/{bounding_box_train, query,
bounding_box_test}/*.jpg``; the legacy flat layout ``<root>/market1501/{bounding_box_train, ...}``
and a root that holds the three folders itself are accepted too (``meta['layout']`` says which).
File name ``0002_c1s1_000451_03.jpg``: person ``0002``, camera 1, sequence 1, frame 000451,
box 03. Parse rule: regex ``([-\\d]+)_c(\\d)`` at the start of the name; pid -1 (junk) is dropped,
pid 0 (distractor) is kept; cameras 1..6 become camid 0..5. The optional ``images/`` folder (500k
distractors) is not read.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import check_range, list_files, need_dir, parse_name
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.registry import register_dataset

MARKET_NAME = re.compile(r"([-\d]+)_c(\d)")
PARTS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def read_market_folder(folder: Path, *, num_cams: int, max_pid: int, drop_junk: bool,
                       suffixes: tuple[str, ...] = (".jpg",)) -> list[ReidImage]:
    """Records of one Market-style folder, sorted by file name.

    ``num_cams``: cameras are numbered 1..num_cams in names; ``max_pid``: largest valid pid;
    ``drop_junk``: drop pid -1 images (Market's rule; Duke has none).
    """
    out = []
    for path in list_files(folder, suffixes):
        m = parse_name(MARKET_NAME, path, "PPPP_cC... e.g. 0002_c1s1_000451_03.jpg")
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1 and drop_junk:
            continue
        check_range(path, "person id", pid, 0, max_pid)
        check_range(path, "camera", cam, 1, num_cams)
        out.append(ReidImage(path, pid, cam - 1))
    return out


def read_market_layout(base: Path, name: str, *, num_cams: int, max_pid: int, drop_junk: bool,
                       meta: dict) -> ReidSplit:
    """The three Market folders under ``base`` as a ReidSplit."""
    parts = {}
    for part, sub in PARTS.items():
        folder = need_dir(base / sub, f"the {name} {part} images ({sub}/*.jpg)")
        parts[part] = read_market_folder(folder, num_cams=num_cams, max_pid=max_pid,
                                         drop_junk=drop_junk)
    return ReidSplit(name, base, parts["train"], parts["query"], parts["gallery"], meta)


def locate(root: Path, dataset_dir: str, inner: str) -> tuple[Path, str]:
    """Where the three folders are: ``root/dataset_dir/inner`` (standard), ``root/dataset_dir``
    (flat legacy), ``root/inner`` or ``root`` itself (pointed at directly)."""
    candidates = [(root / dataset_dir / inner, "standard"), (root / dataset_dir, "flat-legacy"),
                  (root / inner, "direct"), (root, "direct")]
    for path, kind in candidates:
        if (path / PARTS["train"]).is_dir():
            return path, kind
    tried = ", ".join(str(p / PARTS["train"]) for p, _ in candidates)
    raise DataFormatError(f"{root}: no {dataset_dir} data found (expected a folder "
                          f"{PARTS['train']}/ beside query/ and bounding_box_test/; "
                          f"looked at {tried})")


@register_dataset("market1501")
def read_market1501(root: Path) -> ReidSplit:
    """Market-1501: 12936 train / 3368 query / 15913 gallery images in the full set."""
    base, layout = locate(root, "market1501", "Market-1501-v15.09.15")
    return read_market_layout(base, "market1501", num_cams=6, max_pid=1501, drop_junk=True,
                              meta={"layout": layout, "protocol": "market1501"})
