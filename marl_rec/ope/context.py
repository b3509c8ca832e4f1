"""One logged dataset prepared for off-policy evaluation, shared by every estimator run on it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from marl_rec.data.dataset import OfflineDataset
from marl_rec.ope.behaviour import BehaviourConfig, BehaviourModel, fit_behaviour_policy
from marl_rec.ope.fqe import FittedQ, FQEConfig, fit_fqe
from marl_rec.ope.policy import ActionMemo, is_stochastic

T = TypeVar("T")


class MissingBehaviourLogProbs(ValueError):
    """An estimator needs the behaviour policy's log-probabilities (the IS family, DR) and the
    dataset has none and no behaviour model was given: the one estimator error a study
    reports as "not applicable" instead of failing (a ValueError, for callers that catch those)."""


class OPEContext:
    """A dataset plus what the estimators share on it.

    * ``gamma``: the discount of the value being estimated (returns count from each
      episode's first logged step);
    * ``initial_observations``: where FQE reports its value (default: the first state of
      every logged episode — the dataset's start-state distribution);
    * behaviour log-probabilities: the dataset's column if present, else the log-density of
      ``behaviour`` (a fitted :class:`BehaviourModel`, or a :class:`BehaviourConfig` to fit
      one on first use); with neither, the IS family raises :class:`MissingBehaviourLogProbs`;
    * FQE models per (policy, config), so FQE, conservative FQE and DR fit each once;
    * tables the estimators compute over the whole dataset for a policy (:meth:`policy_table`),
      e.g. DR's and WDR's Q̂(s_t, a_t) and V̂(s_t) of one FQE model, or a deterministic policy's
      actions at the dataset's states (:meth:`acting`), so each is computed once.
      The caches hold the policy object by identity: call :meth:`clear_policy_cache` when a
      policy's parameters change (the :class:`~marl_rec.ope.evaluator.OPEEvaluator` does).
    """

    def __init__(self, dataset: OfflineDataset, gamma: float = 0.99,
                 behaviour: BehaviourModel | BehaviourConfig | None = None,
                 initial_observations: np.ndarray | None = None) -> None:
        if not isinstance(dataset, OfflineDataset):
            raise TypeError(f"dataset must be an OfflineDataset, got {type(dataset).__name__}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.dataset, self.gamma, self.behaviour = dataset, float(gamma), behaviour
        if initial_observations is None:
            initial_observations = dataset.initial_observations()
        initial_observations = np.asarray(initial_observations, dtype=np.float32)
        if initial_observations.ndim != 2 or initial_observations.shape[1] != dataset.obs_dim or \
                len(initial_observations) == 0:
            raise ValueError(f"initial_observations must have shape (n >= 1, {dataset.obs_dim}), "
                             f"got {initial_observations.shape}")
        if not np.all(np.isfinite(initial_observations)):
            raise ValueError("initial_observations contains NaN or infinite values")
        self.initial_observations = initial_observations
        bounds = dataset.episode_bounds()
        self.episode_bounds = bounds
        self.episode_of_row = np.cumsum(dataset.episode_starts) - 1
        self.step_of_row = np.arange(len(dataset)) - bounds[self.episode_of_row, 0]
        self.num_episodes, self.horizon = len(bounds), int((bounds[:, 1] - bounds[:, 0]).max())
        self._behaviour_log_probs: np.ndarray | None = None
        self._fitted: dict[tuple[int, FQEConfig], tuple[Any, FittedQ]] = {}
        self._tables: dict[tuple[int, Hashable], tuple[Any, Any]] = {}

    # ------------------------------------------------------------ behaviour
    @property
    def behaviour_log_probs(self) -> np.ndarray:
        """(N,) log μ(a_t|s_t) of the logged actions: logged, or from the behaviour model."""
        if self._behaviour_log_probs is None:
            logged = self.dataset.behaviour_log_probs
            if logged is not None:
                values = np.asarray(logged, dtype=np.float64)
            elif self.behaviour is not None:
                if isinstance(self.behaviour, BehaviourConfig):
                    self.behaviour = fit_behaviour_policy(self.dataset, self.behaviour)
                values = self.behaviour.log_prob(self.dataset.observations, self.dataset.actions)
            else:
                raise MissingBehaviourLogProbs(
                    "the dataset has no 'behaviour_log_probs' column and no behaviour model was given: "
                    "pass behaviour=fit_behaviour_policy(dataset) (or a BehaviourConfig) to OPEContext")
            if not np.all(np.isfinite(values)):
                bad = int(np.flatnonzero(~np.isfinite(values))[0])
                raise ValueError(f"behaviour log-probabilities must be finite (row {bad} is {values[bad]})")
            self._behaviour_log_probs = values
        return self._behaviour_log_probs

    # ------------------------------------------------------------- layout
    def pad(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(E, T) matrix of per-transition ``values``, episode i in row i, ``fill`` after its end."""
        out = np.full((self.num_episodes, self.horizon), fill, dtype=np.float64)
        out[self.episode_of_row, self.step_of_row] = values
        return out

    # ---------------------------------------------------------------- FQE
    @staticmethod
    def fit_key(config: FQEConfig) -> FQEConfig:
        """What identifies the FQE model that ``config`` fits: the interval settings do not
        change the fit, so models (and the tables computed with them) are shared across them."""
        return replace(config, num_bootstrap=1, confidence=0.95, name="")

    def fitted_q(self, policy: Any, config: FQEConfig) -> FittedQ:
        """The FQE model of ``policy`` under ``config``, fitted on first request."""
        key = (id(policy), self.fit_key(config))
        if key not in self._fitted:
            self._fitted[key] = (policy, fit_fqe(self.dataset, self.acting(policy), self.gamma, config))
        return self._fitted[key][1]

    def acting(self, policy: Any) -> Any:
        """``policy`` for the estimators to act with: a deterministic one as an :class:`ActionMemo`
        whose actions at the dataset's observations, next observations and the initial
        observations are computed once (in :meth:`policy_table`); a stochastic one as it is."""
        if is_stochastic(policy):
            return policy
        return ActionMemo(policy, {"observations": self.dataset.observations,
                                   "next_observations": self.dataset.next_observations,
                                   "initial_observations": self.initial_observations},
                          functools.partial(self.policy_table, policy))

    def policy_table(self, policy: Any, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` for ``policy`` (by identity) and ``key``, computed on first request and
        then returned as is (the caller must not modify it). ``key`` must name everything the
        table depends on besides the policy and this dataset (e.g. ``fit_key`` of the FQE config
        and the smoothing of the target), and ``compute`` must not depend on state that earlier
        estimators change (a policy's own random stream): the cache may then skip the call."""
        full_key = (id(policy), key)
        if full_key not in self._tables:
            self._tables[full_key] = (policy, compute())
        return self._tables[full_key][1]

    def clear_policy_cache(self) -> None:
        """Forget the fitted FQE models and the policies' tables (their policies may have changed)."""
        self._fitted.clear()
        self._tables.clear()


__all__ = ["OPEContext"]
