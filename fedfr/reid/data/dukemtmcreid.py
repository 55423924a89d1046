"""DukeMTMC-reID reader (Zheng et al., ICCV 2017; withdrawn by its creators in 2019).

Layout (torchreid's): ``<root>/dukemtmc-reid/DukeMTMC-reID/{bounding_box_train, query,
bounding_box_test}/*.jpg``; a root holding the three folders itself is accepted too. File name
``0005_c2_f0046985.jpg``: person 0005, camera 2, frame 46985. Parse rule: regex
``([-\\d]+)_c(\\d)``; cameras 1..8 become camid 0..7; no junk filter (Duke has no pid -1), so a
pid -1 name is an error here. Full set: 16522 train / 2228 query / 17661 gallery images.
"""

from __future__ import annotations

from pathlib import Path

from fedfr.reid.data.market1501 import locate, read_market_layout
from fedfr.reid.data.records import ReidSplit
from fedfr.reid.data.registry import register_dataset


@register_dataset("dukemtmcreid")
def read_dukemtmcreid(root: Path) -> ReidSplit:
    """DukeMTMC-reID, 702 train identities, 8 cameras."""
    base, layout = locate(root, "dukemtmc-reid", "DukeMTMC-reID")
    return read_market_layout(base, "dukemtmcreid", num_cams=8, max_pid=9999, drop_junk=False,
                              meta={"layout": layout, "protocol": "market1501"})
