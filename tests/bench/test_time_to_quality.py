"""bench/time_to_quality.py: the threshold rule, the ratios and the round-robin CPU clock, on
synthetic learning curves and fake learners (no d3rlpy, no simulator, no real timing)."""

import pytest

from marl_rec.algos.registry import make_config
from bench_scripts import load

ttq = load("time_to_quality")


def curve(*points: tuple[float, float]) -> list[dict[str, float]]:
    """(cpu seconds, return) pairs as a learner's history; wall = 2 × cpu, 10 updates per second."""
    return [{"cpu": t, "wall": 2 * t, "updates": int(10 * t), "return": r, "q_estimate": 0.0} for t, r in points]


def test_threshold_is_a_fraction_of_d3rlpys_best_after_its_start_and_times_are_cpu() -> None:
    ours = curve((0, 100), (2, 110), (3, 121), (10, 124))
    theirs = curve((0, 100), (2, 105), (9, 118), (12, 126), (20, 125))  # best 126 → threshold 119.7
    result = ttq.compare("bcq", ours, theirs)
    assert result.d3rlpy_best == 126
    assert result.threshold == pytest.approx(0.95 * 126)
    assert (result.ours_cpu, result.d3rlpy_cpu) == (3, 12)
    assert (result.ours_wall, result.d3rlpy_wall) == (6, 24)
    assert (result.ours_updates, result.d3rlpy_updates) == (30, 120)
    assert result.speedup == pytest.approx(4.0)
    assert result.untrained_return == 100 and result.threshold_floor == pytest.approx(110.0)
    assert result.threshold_valid and result.final_no_worse is False  # 124 < 125
    assert result.target_met is False


def test_target_met_needs_a_valid_threshold_the_speedup_and_a_final_no_worse() -> None:
    theirs = curve((0, 100), (3, 110), (12, 126), (20, 125))
    assert ttq.compare("bcq", curve((0, 100), (4, 121), (20, 125)), theirs).target_met  # 3.0x, final equal
    slow = ttq.compare("bcq", curve((0, 100), (4.5, 121), (20, 125)), theirs)
    assert slow.speedup == pytest.approx(12 / 4.5) and not slow.target_met
    never = ttq.compare("bcq", curve((0, 100), (4, 110), (20, 119)), theirs)
    assert never.ours_cpu is None and never.speedup is None and not never.target_met


def test_a_threshold_within_min_gain_of_the_untrained_return_is_not_valid() -> None:
    # the legacy world's case: the untrained start already earns about what training reaches
    ours = curve((0, 108), (2, 104), (30, 109))
    theirs = curve((0, 107), (2, 103.5), (20, 101), (30, 100))
    result = ttq.compare("bcq", ours, theirs)
    assert result.untrained_return == 108  # the better start of the two
    assert result.threshold == pytest.approx(0.95 * 103.5) and result.threshold < result.threshold_floor
    assert result.speedup == pytest.approx(1.0) and result.final_no_worse
    assert not result.threshold_valid and not result.target_met
    assert not ttq.compare("bcq", ours, theirs, min_gain=0.0).threshold_valid  # still below the start
    assert ttq.compare("bcq", ours, curve((0, 107), (2, 125)), min_gain=0.0).threshold_valid


def test_the_untrained_start_never_counts_as_reaching_quality_and_sustained_means_kept() -> None:
    ours = curve((0, 130), (2, 100), (4, 121), (6, 115), (8, 122), (10, 123))
    theirs = curve((0, 100), (2, 110), (4, 126), (8, 126))
    result = ttq.compare("bcq", ours, theirs)
    assert result.ours_cpu == 4  # not 0, though the start is above the threshold
    assert result.ours_sustained == 8  # the dip at 6 s breaks the first crossing
    assert result.d3rlpy_sustained == 4
    assert result.ours_best == 123


def test_equal_network_sizes_separates_the_per_size_ratio_from_the_preset_ratio() -> None:
    paper = make_config("bcq", "paper")
    start, end = curve((0, 100), (2, 121)), curve((0, 100), (2, 126))
    assert ttq.compare("bcq", start, end, paper, paper, "paper").equal_network_sizes
    rec = ttq.compare("bcq", start, end, make_config("bcq", "rec"), paper, "rec")
    assert not rec.equal_network_sizes
    assert rec.ours_sizes != rec.d3rlpy_sizes and set(rec.ours_sizes) == {"vae_hidden", "actor_hidden",
                                                                          "critic_hidden", "batch_size"}


def test_compare_rejects_a_curve_without_evaluations_after_the_start() -> None:
    with pytest.raises(ValueError, match="untrained start"):
        ttq.compare("bcq", curve((0, 100)), curve((0, 100), (2, 120)))
    with pytest.raises(ValueError, match="quality_fraction"):
        ttq.compare("bcq", curve((0, 100), (2, 1)), curve((0, 100), (2, 1)), quality_fraction=1.5)


def test_evaluation_points_grow_geometrically_below_the_budget() -> None:
    assert ttq.evaluation_points(10.0, 2.0) == [2.0, 3.0, 4.5, 6.75]
    with pytest.raises(ValueError, match="factor"):
        ttq.evaluation_points(10.0, 2.0, factor=1.0)


class FakeClock:
    """process_time / perf_counter that advance only when a fake update runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingPolicy:
    def __init__(self, value: float) -> None:
        self.value = value


def test_learners_take_turns_on_their_own_cpu_clock_until_each_budget_is_spent(monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(ttq.time, "process_time", clock)
    monkeypatch.setattr(ttq.time, "perf_counter", clock)
    order: list[str] = []

    def stepper(label: str, seconds: float):
        def step() -> None:
            clock.now += seconds
            order.append(label)
        return step

    points = ttq.evaluation_points(4.0, 1.0)  # 1, 1.5, 2.25, 3.375
    fast = ttq.Learner("fast", None, stepper("fast", 0.25), CountingPolicy(1.0), list(points), 4.0)
    slow = ttq.Learner("slow", None, stepper("slow", 1.0), CountingPolicy(2.0), list(points), 4.0)

    def evaluator(policy, step):
        return {"eval/return": policy.value * 100 + step, "eval/q_estimate": 0.0}

    class NoReference:
        def rate(self) -> float:
            return 1.0

    ttq.train_in_turns([fast, slow], 1.0, evaluator, NoReference())
    assert fast.done and slow.done
    assert (fast.updates, slow.updates) == (16, 4)  # 4 CPU s each, at 0.25 s and 1 s per update
    assert fast.cpu == pytest.approx(4.0) and slow.cpu == pytest.approx(4.0)
    # the untrained start, then one evaluation per point passed (slow's 1 s updates overshoot each)
    assert [h["cpu"] for h in fast.history] == pytest.approx([0, 1, 1.5, 2.25, 3.5, 4.0])
    assert [h["cpu"] for h in slow.history] == pytest.approx([0, 1, 2, 3, 4])
    assert [h["return"] for h in fast.history][:2] == [100, 104]  # evaluated after 4 updates
    assert order[:4] == ["fast"] * 4 and order[4] == "slow"  # one slice (1 CPU s) each, in turn


def test_paper_sizes_give_ours_the_decoder_output_d3rlpys_bcq_is_given() -> None:
    for decoder in ("tanh", "linear"):
        assert make_config("bcq", "paper", **ttq.paper_overrides("bcq", decoder)).vae_output == decoder
    assert ttq.paper_overrides("cql", "linear") == {"bc_warmup_updates": 0}
