"""Writers of tiny data sets in the real IJB-C and .bin formats (real ORL faces as JPEG)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from fedfr.face.evaluation.align import ARCFACE_TEMPLATE

ORL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "orl"


def orl_face(subject: int, index: int) -> np.ndarray:
    """ORL image s<subject>/<index>.pgm as (112, 112, 3) uint8 RGB (1-based numbers)."""
    img = Image.open(ORL / f"s{subject}" / f"{index}.pgm").convert("RGB").resize((112, 112))
    return np.asarray(img)


def jpeg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_ijbc(root: Path, subjects: int = 6, seed: int = 0, with_1n: bool = True) -> dict:
    """A tiny IJB-C tree: per subject 3 templates (gallery G1 or G2, two probes), 2 media per
    template, 1-2 frames per media; each loose crop is an ORL face pasted at a random offset
    in a 150 x 150 canvas, its landmarks the ArcFace template shifted by the same offset.
    Returns {"pairs": (t1, t2, label) list, "g1": [...], "g2": [...], "probes": [...]}."""
    rng = np.random.default_rng(seed)
    (root / "meta").mkdir(parents=True)
    (root / "loose_crop").mkdir()
    tid_lines, lmk_lines = [], []
    img_id, tmpl, media = 0, 0, 0
    info: dict = {"g1": [], "g2": [], "probes": [], "subject_of": {}, "templates": {}}
    rows_1n: dict[str, list[str]] = {"g1": [], "g2": [], "probes": []}
    for s in range(1, subjects + 1):
        sid = 100 + s
        for role in ("gallery", "probe", "probe"):
            tmpl += 1
            info["subject_of"][tmpl] = sid
            which = ("g1" if s % 2 else "g2") if role == "gallery" else "probes"
            info[which].append(tmpl)
            names = []
            for _ in range(2):
                media += 1
                for _ in range(int(rng.integers(1, 3))):
                    img_id += 1
                    name = f"{img_id}.jpg"
                    face = orl_face(s, int(rng.integers(1, 11)))
                    canvas = np.zeros((150, 150, 3), np.uint8)
                    ox, oy = rng.integers(0, 38, size=2)
                    canvas[oy:oy + 112, ox:ox + 112] = face
                    (root / "loose_crop" / name).write_bytes(jpeg_bytes(canvas))
                    pts = ARCFACE_TEMPLATE + np.array([ox, oy])
                    score = float(rng.uniform(0.5, 1.0))
                    tid_lines.append(f"{name} {tmpl} {media}")
                    lmk_lines.append(name + " " + " ".join(f"{v:.4f}" for v in pts.ravel())
                                     + f" {score:.6f}")
                    names.append(name)
                    rows_1n[which].append(f"{tmpl},{sid},img/{name},0,0,10,10")
            info["templates"][tmpl] = names
    (root / "meta" / "ijbc_face_tid_mid.txt").write_text("\n".join(tid_lines) + "\n")
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join(lmk_lines) + "\n")
    gallery = info["g1"] + info["g2"]
    pairs = [(g, p, int(info["subject_of"][g] == info["subject_of"][p]))
             for g in gallery for p in info["probes"]]
    (root / "meta" / "ijbc_template_pair_label.txt").write_text(
        "\n".join(f"{a} {b} {c}" for a, b, c in pairs) + "\n")
    if with_1n:
        header = "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,FACE_Y,FACE_WIDTH\n"
        for key, fname in (("g1", "ijbc_1N_gallery_G1.csv"), ("g2", "ijbc_1N_gallery_G2.csv"),
                           ("probes", "ijbc_1N_probe_mixed.csv")):
            (root / "meta" / fname).write_text(header + "\n".join(rows_1n[key]) + "\n")
    info["pairs"] = pairs
    return info


def write_bin(path: Path, pairs: int = 20, seed: int = 0) -> np.ndarray:
    """A tiny .bin: ``pairs`` pairs of ORL faces (alternately same / different subject) as
    JPEG bytes in insightface's pickle layout. Returns issame."""
    rng = np.random.default_rng(seed)
    bins, issame = [], []
    for i in range(pairs):
        a = int(rng.integers(1, 41))
        same = i % 2 == 0
        b = a if same else int((a + rng.integers(1, 40) - 1) % 40 + 1)
        ia, ib = rng.choice(np.arange(1, 11), size=2, replace=False)
        bins += [jpeg_bytes(orl_face(a, int(ia))), jpeg_bytes(orl_face(b, int(ib)))]
        issame.append(same)
    with open(path, "wb") as f:
        pickle.dump((bins, issame), f, protocol=pickle.HIGHEST_PROTOCOL)
    return np.array(issame)
