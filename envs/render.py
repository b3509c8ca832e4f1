"""Rendering of one served request, shared by every environment (``render()``).

Every environment renders the same thing: the last request it served — the slate with each
item's fused score and the multi-task model's predictions, the user's responses, the fusion
weights, the user's observed state now and the rewards — plus env-specific lines (the
advertiser's ad slot, the hierarchical goal). The environments record the request with
:class:`RequestRecorder` only when a render mode is set, so stepping without rendering costs
nothing extra.

Modes (``RENDER_MODES``, declared in every env's ``metadata["render_modes"]``):

- ``"ansi"``: the request as text (``str``);
- ``"rgb_array"``: the same as a small ``(H, W, 3) uint8`` image drawn with numpy: one group of
  bars per slate position (p̂ of each task, then the fused score scaled over the slate; the
  background is green where the user clicked, red where an ad was served), a strip with the
  observed state (one grey cell per entry, white = 1) and one bar per agent's reward (green
  to the right of the centre line when positive, red to the left when negative);
- ``"human"``: the text printed to stdout on every step (a terminal is this env's display);
  ``render()`` returns ``None``.

As in Gymnasium: ``render()`` without a render mode warns and returns ``None``; the list
modes (``"rgb_array_list"``, ``"ansi_list"``) come from ``gymnasium.make``'s
``RenderCollection``; any other mode is refused at construction with a ``ValueError`` naming
the supported ones (as Gymnasium's own environments assert).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np

from marl_rec.envs import simulator as simulator_module
from marl_rec.envs.simulator import UserSimulator, observation_names

RENDER_MODES: list[str] = ["ansi", "rgb_array", "human"]
RENDER_FPS = 4  # metadata["render_fps"]: frames per second a video of requests plays at

# colours of the bars in "rgb_array" (one per predicted task, cycled, then the fused score)
_TASK_COLOURS = np.array([[66, 133, 244], [219, 68, 55], [244, 180, 0], [15, 157, 88], [150, 80, 190]],
                         dtype=np.uint8)
# per-candidate observation entries: the slate table shows the served candidates instead
_CANDIDATE_ENTRY = re.compile(r"^candidate\d+_")
_SCORE_COLOUR = np.array([90, 90, 90], dtype=np.uint8)
_CLICK_BACKGROUND = np.array([214, 245, 214], dtype=np.uint8)
_AD_BACKGROUND = np.array([250, 210, 210], dtype=np.uint8)
_POSITIVE, _NEGATIVE = np.array([15, 157, 88], np.uint8), np.array([219, 68, 55], np.uint8)


def check_render_mode(render_mode: str | None, modes: list[str] = RENDER_MODES) -> str | None:
    """Return ``render_mode`` if it is ``None`` or one of ``modes``; raise a ValueError otherwise."""
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode {render_mode!r} is not supported; supported render modes: {modes} "
                         "(gymnasium.make adds the '_list' forms)")
    return render_mode


def prediction_names(sim: UserSimulator) -> list[str]:
    """Names of the multi-task model's predictions (the last axis of ``sim.cand_pred``)."""
    count = sim.cand_pred.shape[-1]
    for names in (getattr(simulator_module, "PREDICTED_TASKS", ()), simulator_module.TASKS):
        if len(names) == count:
            return list(names)
    return [f"task{i}" for i in range(count)]


def max_request_reward(sim: UserSimulator) -> float:
    """The most engagement one request can earn (every slot clicked, liked, shared, fully watched)."""
    c = sim.config
    weights = np.asarray(c.reward_weights, dtype=np.float64)
    return c.slate_size * float(weights[:3].sum() + weights[3] * c.max_duration)


@dataclass
class ServedRequest:
    """One served request as ``render()`` shows it (slate positions best first)."""

    request: int  # 1-based index of the request in its session
    session: int  # 1-based session index
    weights: np.ndarray  # fusion weights the action mapped to (one per predicted task)
    items: np.ndarray  # (K,) item ids of the organic slate
    scores: np.ndarray  # (K,) fused scores
    predictions: np.ndarray  # (K, tasks) the multi-task model's p̂ per task
    clicks: np.ndarray | None = None  # (K,) the user's clicks
    ad_slot: int = 0  # 1..K: the ad replaced that position; 0: no ad
    ad_click: bool = False
    lines: dict[str, str] = field(default_factory=dict)  # env-specific lines (goal, ad cap, ...)


class RequestRecorder:
    """Records the request a B = 1 simulator serves and renders it in the env's render mode.

    ``before_step(action)`` reads the slate the simulator is about to serve (its candidates
    change during ``step``); ``after_step(result, rewards)`` adds the responses and rewards.
    Both read the simulator's public state only (``rank``, ``fused_scores``,
    ``fusion_weights``, ``cand_items``, ``cand_pred``, ``observe``), so they follow the
    simulator when its observation or candidates change.
    """

    def __init__(self, sim: UserSimulator, name: str, render_mode: str | None, reward_scale: float | None = None,
                 modes: list[str] = RENDER_MODES) -> None:
        self.sim, self.name = sim, name
        self.render_mode = check_render_mode(render_mode, modes)
        self.reward_scale = reward_scale or max_request_reward(sim)
        self.last: ServedRequest | None = None
        self.rewards: dict[str, float] = {}
        self.lines: dict[str, str] = {}  # lines shown until the next reset (e.g. the current goal)

    @property
    def active(self) -> bool:
        return self.render_mode is not None

    def reset(self) -> None:
        self.last, self.rewards, self.lines = None, {}, {}
        if self.render_mode == "human":
            print(self.ansi())

    def before_step(self, action: np.ndarray) -> None:
        """Record the slate ``action`` ((1, action_dim) fusion actions) is about to serve."""
        if not self.active:
            return
        sim = self.sim
        slate = sim.rank(action)[0]
        state = sim.state
        self.last = ServedRequest(
            request=int(state["request"][0]) + 1, session=int(state["session_index"][0]) + 1,
            weights=np.asarray(sim.fusion_weights(action))[0].astype(np.float64),
            items=sim.cand_items[0, slate].copy(), scores=sim.fused_scores(action)[0, slate].astype(np.float64),
            predictions=sim.cand_pred[0, slate].astype(np.float64))

    def after_step(self, result: Any, rewards: dict[str, float], ad_slot: int = 0) -> None:
        """Add the simulator's ``StepResult`` (responses, ad) and the agents' rewards."""
        if not self.active:
            return
        self.rewards = dict(rewards)
        if self.last is not None:
            self.last.clicks = np.asarray(result.info["clicks"][0]).astype(bool)
            self.last.ad_slot = int(ad_slot)
            self.last.ad_click = bool(result.info["ad_click"][0])
        if self.render_mode == "human":
            print(self.ansi())

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gymnasium.logger.warn(
                f"{self.name}: render() called without a render mode; pass render_mode= one of "
                f"{RENDER_MODES} to the constructor (or gymnasium.make / pettingzoo.make)")
            return None
        if self.render_mode == "ansi":
            return self.ansi()
        if self.render_mode == "rgb_array":
            return self.rgb_array()
        return None  # "human" printed during step

    # ------------------------------------------------------------------ text
    def ansi(self) -> str:
        out = []
        last = self.last
        if last is None:
            out.append(f"{self.name} · no request served yet")
        else:
            out.append(f"{self.name} · session {last.session} · request {last.request}")
            tasks = prediction_names(self.sim)
            weights = "  ".join(f"{task} {w:.2f}" for task, w in zip(tasks, last.weights))
            out.append(f"fusion weights: {weights}")
            header = "pos   item     fused  " + "  ".join(f"{'p̂_' + task:>7}" for task in tasks) + "  clicked"
            out.append(header)
            for j in range(last.items.size):
                preds = "  ".join(f"{p:7.3f}" for p in last.predictions[j])
                clicked = "-" if last.clicks is None else ("yes" if last.clicks[j] else "no")
                row = f"{j + 1:>3}  {last.items[j]:>5}  {last.scores[j]:8.3f}  {preds}  {clicked:>7}"
                if last.ad_slot == j + 1:
                    row += f"   <- ad served here ({'clicked' if last.ad_click else 'not clicked'})"
                out.append(row)
        for key, value in {**self.lines, **(last.lines if last else {})}.items():
            out.append(f"{key}: {value}")
        if self.rewards:
            out.append("reward: " + "  ".join(f"{agent} {r:.3f}" for agent, r in self.rewards.items()))
        out.append("observed state:")
        out.extend(_wrap([f"{name}={value:.2f}" for name, value in self._observation_items()]))
        return "\n".join(out)

    def _observation_items(self) -> list[tuple[str, float]]:
        """The user's observed state now, by name (the per-candidate entries left out)."""
        obs = np.asarray(self.sim.observe()[0], dtype=np.float64)
        names = observation_names(self.sim.config)
        if len(names) != obs.size:  # a layout without names: number the entries
            names = [f"obs{i}" for i in range(obs.size)]
        return [(name, value) for name, value in zip(names, obs) if not _CANDIDATE_ENTRY.match(name)]

    # ----------------------------------------------------------------- image
    def rgb_array(self, bar_height: int = 60, bar_width: int = 6) -> np.ndarray:
        """``(H, W, 3) uint8`` picture of the request (layout: the module docstring)."""
        k, tasks = self.sim.config.slate_size, self.sim.cand_pred.shape[-1]
        group = (tasks + 1) * bar_width + 2 * bar_width  # bars + a gap on each side
        width = max(k * group, 120)
        obs = np.clip(np.array([v for _, v in self._observation_items()]), 0.0, 1.0)
        agents = list(self.rewards) or ["reward"]
        reward_rows = 8 * len(agents)
        height = bar_height + 4 + 10 + 4 + reward_rows + 2
        image = np.full((height, width, 3), 255, dtype=np.uint8)
        last = self.last
        if last is not None:
            lo, hi = float(last.scores.min()), float(last.scores.max())
            # fused scores are log-scale and negative: show them relative to the slate's range
            score_fraction = (last.scores - lo) / (hi - lo) * 0.9 + 0.1 if hi > lo else np.ones(k)
            for j in range(min(k, last.items.size)):
                x0 = j * group
                if last.ad_slot == j + 1:
                    image[:bar_height, x0:x0 + group] = _AD_BACKGROUND
                elif last.clicks is not None and last.clicks[j]:
                    image[:bar_height, x0:x0 + group] = _CLICK_BACKGROUND
                values = list(np.clip(last.predictions[j], 0.0, 1.0)) + [score_fraction[j]]
                colours = [_TASK_COLOURS[i % len(_TASK_COLOURS)] for i in range(tasks)] + [_SCORE_COLOUR]
                for b, (value, colour) in enumerate(zip(values, colours)):
                    top = bar_height - int(round(value * (bar_height - 2)))
                    x = x0 + bar_width + b * bar_width
                    image[top:bar_height, x:x + bar_width - 1] = colour
        # observed state: one grey cell per entry
        y = bar_height + 4
        cell = max(width // max(obs.size, 1), 1)
        for i, value in enumerate(obs[: width // cell]):
            image[y:y + 10, i * cell:(i + 1) * cell] = np.uint8(round(255 * value))
        # rewards: one bar per agent around the centre line
        y += 14
        centre = width // 2
        for row, agent in enumerate(agents):
            value = self.rewards.get(agent, 0.0)
            length = int(round(min(abs(value) / self.reward_scale, 1.0) * (centre - 1)))
            top = y + 8 * row
            if value >= 0:
                image[top:top + 6, centre:centre + length] = _POSITIVE
            else:
                image[top:top + 6, centre - length:centre] = _NEGATIVE
        image[y:y + reward_rows, centre] = 0
        return image


def _wrap(tokens: list[str], width: int = 100) -> list[str]:
    lines, current = [], "  "
    for token in tokens:
        if len(current) + len(token) + 1 > width and current.strip():
            lines.append(current.rstrip())
            current = "  "
        current += token + " "
    if current.strip():
        lines.append(current.rstrip())
    return lines


__all__ = ["RENDER_FPS", "RENDER_MODES", "RequestRecorder", "ServedRequest", "check_render_mode", "max_request_reward",
           "prediction_names"]
