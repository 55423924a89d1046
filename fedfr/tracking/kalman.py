"""A constant-velocity Kalman filter on boxes in ``(x, y, a, h)`` space (centre x, centre y,
aspect ratio w/h, height), as ByteTrack's: state ``(x, y, a, h, vx, vy, va, vh)``, time step
one frame, process and measurement noise proportional to the box height
(``std_weight_position = 1/20``, ``std_weight_velocity = 1/160``).

Shapes: ``mean`` (8,), ``covariance`` (8, 8), measurement (4,); the ``multi_`` functions take
(N, 8) and (N, 8, 8).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

NDIM = 4


def tlwh_to_xyah(tlwh: np.ndarray) -> np.ndarray:
    """(..., 4) left, top, width, height -> centre x, centre y, w/h, h."""
    tlwh = np.asarray(tlwh, np.float64)
    out = tlwh.copy()
    out[..., :2] += tlwh[..., 2:] / 2
    out[..., 2] = tlwh[..., 2] / tlwh[..., 3]
    return out


def xyah_to_tlwh(xyah: np.ndarray) -> np.ndarray:
    """(..., 4) centre x, centre y, w/h, h -> left, top, width, height."""
    xyah = np.asarray(xyah, np.float64)
    out = xyah.copy()
    out[..., 2] = xyah[..., 2] * xyah[..., 3]
    out[..., :2] -= out[..., 2:] / 2
    return out


class KalmanFilterXYAH:
    """ByteTrack's box filter: ``initiate``, ``predict``/``multi_predict``, ``project``,
    ``update``."""

    def __init__(self, std_weight_position: float = 1.0 / 20,
                 std_weight_velocity: float = 1.0 / 160):
        self.motion = np.eye(2 * NDIM)
        self.motion[:NDIM, NDIM:] = np.eye(NDIM)  # x' = x + v (dt = 1 frame)
        self.observe = np.eye(NDIM, 2 * NDIM)
        self.w_pos = std_weight_position
        self.w_vel = std_weight_velocity

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new track from one ``xyah`` measurement: zero velocity, std 2*w_pos*h on position
        (1e-2 on a), 10*w_vel*h on velocity (1e-5 on va)."""
        z = np.asarray(measurement, np.float64)
        mean = np.concatenate([z, np.zeros(NDIM)])
        h = z[3]
        std = np.array([2 * self.w_pos * h, 2 * self.w_pos * h, 1e-2, 2 * self.w_pos * h,
                        10 * self.w_vel * h, 10 * self.w_vel * h, 1e-5, 10 * self.w_vel * h])
        return mean, np.diag(std ** 2)

    def _process_noise(self, h: np.ndarray) -> np.ndarray:
        """(N,) heights -> (N, 8, 8) diagonal process noise."""
        h = np.asarray(h, np.float64)
        one = np.ones_like(h)
        std = np.stack([self.w_pos * h, self.w_pos * h, 1e-2 * one, self.w_pos * h,
                        self.w_vel * h, self.w_vel * h, 1e-5 * one, self.w_vel * h], axis=-1)
        out = np.zeros(h.shape + (2 * NDIM, 2 * NDIM))
        idx = np.arange(2 * NDIM)
        out[..., idx, idx] = std ** 2
        return out

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead: mean' = F mean, cov' = F cov F^T + Q(h)."""
        m, c = self.multi_predict(mean[None], covariance[None])
        return m[0], c[0]

    def multi_predict(self, mean: np.ndarray, covariance: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` for (N, 8) means and (N, 8, 8) covariances."""
        q = self._process_noise(mean[:, 3])
        new_mean = mean @ self.motion.T
        new_cov = self.motion @ covariance @ self.motion.T + q
        return new_mean, new_cov

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Measurement-space mean (4,) and covariance (4, 4): H cov H^T + R, R from std
        (w_pos*h, w_pos*h, 1e-1, w_pos*h)."""
        h = mean[3]
        std = np.array([self.w_pos * h, self.w_pos * h, 1e-1, self.w_pos * h])
        proj_cov = self.observe @ covariance @ self.observe.T + np.diag(std ** 2)
        return self.observe @ mean, proj_cov

    def update(self, mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Correct with one ``xyah`` measurement: K = P H^T S^-1 (Cholesky solve),
        mean' = mean + K (z - H mean), cov' = cov - K S K^T."""
        proj_mean, proj_cov = self.project(mean, covariance)
        chol = scipy.linalg.cho_factor(proj_cov, lower=True, check_finite=False)
        gain = scipy.linalg.cho_solve(chol, (covariance @ self.observe.T).T,
                                      check_finite=False).T
        innovation = np.asarray(measurement, np.float64) - proj_mean
        new_mean = mean + gain @ innovation
        new_cov = covariance - gain @ proj_cov @ gain.T
        return new_mean, new_cov
