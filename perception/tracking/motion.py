"""Bird's-eye-view motion models: a constant-velocity Kalman filter and a CTRV extended Kalman filter.

Both keep x, y first in their state (so the association reads the position block the same way) and
take a position measurement with its 2x2 covariance; CTRV also takes the measured heading. Height
and box size are smoothed outside the motion model (they hardly move).
"""

from __future__ import annotations

import math

import numpy as np

from .config import ClassModel

_EYE = {n: np.eye(n) for n in (4, 5)}


def wrap_angle(a: np.ndarray | float) -> np.ndarray:
    """Angles wrapped into [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def wrap(a: float) -> float:
    """One angle wrapped into [-pi, pi) (plain floats: per-track code stays cheap)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def _kalman_update(x: np.ndarray, cov: np.ndarray, y: np.ndarray, h: np.ndarray, r: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Kalman update with innovation ``y`` (Joseph form keeps the covariance symmetric positive definite)."""
    S = h @ cov @ h.T + r
    K = np.linalg.solve(S, h @ cov).T
    ikh = _EYE[len(x)] - K @ h
    return x + K @ y, ikh @ cov @ ikh.T + K @ r @ K.T


class ConstantVelocity:
    """State (x, y, vx, vy); white-noise acceleration of ``accel_std``."""

    dim = 4
    H = np.eye(2, 4)

    @staticmethod
    def init(z: np.ndarray, r: np.ndarray, yaw: float, yaw_var: float, cm: ClassModel) -> tuple[np.ndarray, np.ndarray]:
        cov = np.zeros((4, 4))
        cov[:2, :2] = r
        cov[2:, 2:] = np.eye(2) * cm.init_speed_std**2
        return np.array([z[0], z[1], 0.0, 0.0]), cov

    @staticmethod
    def predict(x: np.ndarray, cov: np.ndarray, dt: float, cm: ClassModel) -> tuple[np.ndarray, np.ndarray]:
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dt
        q = cm.accel_std**2
        Q = np.zeros((4, 4))
        Q[:2, :2] = np.eye(2) * q * dt**4 / 4
        Q[:2, 2:] = Q[2:, :2] = np.eye(2) * q * dt**3 / 2
        Q[2:, 2:] = np.eye(2) * q * dt**2
        return F @ x, F @ cov @ F.T + Q

    @staticmethod
    def update(x: np.ndarray, cov: np.ndarray, z: np.ndarray, r: np.ndarray, yaw: float, yaw_var: float
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        H = ConstantVelocity.H
        return _kalman_update(x, cov, z - H @ x, H, r)

    @staticmethod
    def velocity(x: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x[2:4].copy(), cov[2:4, 2:4].copy()

    @staticmethod
    def heading(x: np.ndarray, cov: np.ndarray) -> tuple[float, float, float]:
        """(yaw, yaw variance, yaw rate) from the velocity; NaN yaw when nearly still."""
        v = float(np.hypot(x[2], x[3]))
        if v < 1e-3:
            return float("nan"), float("nan"), 0.0
        j = np.array([-x[3], x[2]]) / v**2
        return float(np.arctan2(x[3], x[2])), float(j @ cov[2:4, 2:4] @ j), 0.0


class CTRV:
    """State (x, y, yaw, v, yaw rate): constant turn rate and velocity, EKF; ``accel_std`` drives the
    speed, ``yaw_accel_std`` the turn rate. The heading measurement is folded onto the track's heading
    (a box's yaw is ambiguous by pi), so a signed speed also covers objects seen back to front."""

    dim = 5
    H = np.array([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0], [0, 0, 1.0, 0, 0]])

    @staticmethod
    def init(z: np.ndarray, r: np.ndarray, yaw: float, yaw_var: float, cm: ClassModel) -> tuple[np.ndarray, np.ndarray]:
        cov = np.diag([0.0, 0.0, yaw_var, cm.init_speed_std**2, 0.3**2])
        cov[:2, :2] = r
        return np.array([z[0], z[1], yaw, 0.0, 0.0]), cov

    @staticmethod
    def predict(x: np.ndarray, cov: np.ndarray, dt: float, cm: ClassModel) -> tuple[np.ndarray, np.ndarray]:
        px, py, th, v, w = (float(a) for a in x)
        c, s = math.cos(th), math.sin(th)
        if abs(w) > 1e-4:
            th2 = th + w * dt
            c2, s2 = math.cos(th2), math.sin(th2)
            nx, ny = px + v / w * (s2 - s), py + v / w * (c - c2)
            f02, f03, f04 = v / w * (c2 - c), (s2 - s) / w, v * dt * c2 / w - v / w**2 * (s2 - s)
            f12, f13, f14 = v / w * (s2 - s), (c - c2) / w, v * dt * s2 / w - v / w**2 * (c - c2)
        else:
            nx, ny = px + v * c * dt, py + v * s * dt
            f02, f03, f04 = -v * s * dt, c * dt, -0.5 * v * s * dt**2
            f12, f13, f14 = v * c * dt, s * dt, 0.5 * v * c * dt**2
        F = np.array([[1.0, 0.0, f02, f03, f04], [0.0, 1.0, f12, f13, f14], [0.0, 0.0, 1.0, 0.0, dt],
                      [0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])  # fmt: skip
        h = 0.5 * dt**2
        G = np.array([[h * c, 0.0], [h * s, 0.0], [0.0, h], [dt, 0.0], [0.0, dt]])
        Q = (G * [cm.accel_std**2, cm.yaw_accel_std**2]) @ G.T
        return np.array([nx, ny, wrap(th + w * dt), v, w]), F @ cov @ F.T + Q

    @staticmethod
    def update(x: np.ndarray, cov: np.ndarray, z: np.ndarray, r: np.ndarray, yaw: float, yaw_var: float
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        dyaw = wrap(yaw - float(x[2]))
        if abs(dyaw) > math.pi / 2:  # the box is seen back to front: the same heading line
            dyaw = wrap(dyaw + math.pi)
        y = np.array([z[0] - x[0], z[1] - x[1], dyaw])
        Rf = np.zeros((3, 3))
        Rf[:2, :2] = r
        Rf[2, 2] = yaw_var
        x2, P2 = _kalman_update(x, cov, y, CTRV.H, Rf)
        x2[2] = wrap(float(x2[2]))
        return x2, P2

    @staticmethod
    def velocity(x: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        th, v = x[2], x[3]
        c, s = np.cos(th), np.sin(th)
        J = np.array([[-v * s, c], [v * c, s]])  # d(vx, vy) / d(yaw, v)
        return np.array([v * c, v * s]), J @ cov[2:4, 2:4] @ J.T

    @staticmethod
    def heading(x: np.ndarray, cov: np.ndarray) -> tuple[float, float, float]:
        return float(x[2]), float(cov[2, 2]), float(x[4])


MODELS: dict[str, type[ConstantVelocity] | type[CTRV]] = {"cv": ConstantVelocity, "ctrv": CTRV}
