import numpy as np

from fedfr.tracking.bytetrack import TrackOutput
from fedfr.tracking.motchallenge import read_rows
from fedfr.tracking.writers import AicWriter, MotWriter, read_aic


def _t(tid, tlwh, score=0.9):
    return TrackOutput(tid, np.array(tlwh, float), score, 1, None)


def test_mot_writer_rows_and_global_id_mapping(tmp_path):
    path = tmp_path / "res" / "SEQ.txt"
    with MotWriter(path) as w:
        w.write(1, [_t(1, [10, 20, 30, 40]), _t(2, [1.234, 2, 3, 4], 0.51234)])
        w.write(2, [_t(1, [11, 20, 30, 40])], ids={1: 7})
    lines = path.read_text().splitlines()
    assert lines[0] == "1,1,10.00,20.00,30.00,40.00,0.9000,-1,-1,-1"
    assert lines[1] == "1,2,1.23,2.00,3.00,4.00,0.5123,-1,-1,-1"
    assert lines[2].startswith("2,7,11.00,")
    rows = read_rows(path, 10)
    assert rows.shape == (3, 10)


def test_aic_writer(tmp_path):
    path = tmp_path / "track1.txt"
    with AicWriter(path, {"c001": 1, "c002": 2}, pixel_offset=1) as w:
        w.write("c002", 5, [_t(3, [10.4, 20.6, 30, 40])], ids={3: 12},
                world={3: (1.5, -2.25)})
    assert path.read_text() == "2 12 5 9 20 30 40 1.500000 -2.250000\n"
    np.testing.assert_allclose(read_aic(path)[0, :3], [2, 12, 5])
