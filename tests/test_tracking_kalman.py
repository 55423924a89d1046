import numpy as np
import pytest

from fedfr.tracking.kalman import KalmanFilterXYAH, tlwh_to_xyah, xyah_to_tlwh


def test_box_conversions_round_trip():
    tlwh = np.array([[10.0, 20.0, 50.0, 100.0]])
    np.testing.assert_allclose(tlwh_to_xyah(tlwh), [[35, 70, 0.5, 100]])
    np.testing.assert_allclose(xyah_to_tlwh(tlwh_to_xyah(tlwh)), tlwh)


def test_initiate_predict_update_by_hand():
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([10.0, 20.0, 0.5, 100.0]))
    # h = 100: position std 2*5 = 10, a std 1e-2, velocity std 10*0.625 = 6.25, va std 1e-5
    np.testing.assert_allclose(np.diag(cov), [100, 100, 1e-4, 100, 39.0625, 39.0625, 1e-10,
                                              39.0625])
    mean, cov = kf.predict(mean, cov)
    np.testing.assert_allclose(mean, [10, 20, 0.5, 100, 0, 0, 0, 0])
    # P_xx = 100 + 39.0625 (velocity) + 5^2 (process); P_xv = 39.0625; P_vv = 39.0625 + 0.625^2
    assert cov[0, 0] == pytest.approx(164.0625)
    assert cov[0, 4] == pytest.approx(39.0625)
    assert cov[4, 4] == pytest.approx(39.453125)
    assert cov[2, 2] == pytest.approx(1e-4 + 1e-10 + 1e-4)
    # measurement moved 2 px right: S_xx = 164.0625 + 25, gain on x = 164.0625 / 189.0625
    new_mean, new_cov = kf.update(mean, cov, np.array([12.0, 20.0, 0.5, 100.0]))
    assert new_mean[0] == pytest.approx(10 + 2 * 164.0625 / 189.0625)
    assert new_mean[4] == pytest.approx(2 * 39.0625 / 189.0625)
    np.testing.assert_allclose(new_mean[[1, 2, 3, 5, 6, 7]], [20, 0.5, 100, 0, 0, 0], atol=1e-12)
    assert new_cov[0, 0] == pytest.approx(164.0625 - 164.0625 ** 2 / 189.0625)
    assert new_cov[4, 4] == pytest.approx(39.453125 - 39.0625 ** 2 / 189.0625)


def test_constant_velocity_is_learned_and_multi_predict_matches_predict():
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([0.0, 0.0, 0.4, 80.0]))
    for t in range(1, 30):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, np.array([3.0 * t, -1.0 * t, 0.4, 80.0]))
    assert mean[4] == pytest.approx(3.0, abs=0.05) and mean[5] == pytest.approx(-1.0, abs=0.05)
    means, covs = np.stack([mean, mean * 2]), np.stack([cov, cov])
    m, c = kf.multi_predict(means, covs)
    m0, c0 = kf.predict(mean, cov)
    np.testing.assert_allclose(m[0], m0)
    np.testing.assert_allclose(c[0], c0)
