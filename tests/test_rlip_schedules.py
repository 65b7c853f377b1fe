"""Temperature schedules: the paper's flagship and its ablations, from the real Hydra configs."""

from __future__ import annotations

import pytest

from plaidpp.config import compose
from plaidpp.errors import UserError
from plaidpp.rlip.schedules import Schedule


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("flagship", [0.7, 0.7, 0.9, 0.9, 1.1, 1.1, 1.3]),  # the authors' runs (issue 5)
        ("constant", [0.7] * 7),
        ("ramp01", [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]),
        ("ramp02", [0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9]),
    ],
)
def test_schedule_configs_give_the_papers_temperatures(name, expected):
    cfg = compose("rlip", [f"schedule={name}", "tracking.uri=null"])
    assert Schedule.from_mapping(cfg.schedule).temperatures(7) == pytest.approx(expected, abs=1e-9)


def test_cap_and_explicit_values():
    assert Schedule(start=0.7, step=0.2, every=1, max=1.0).temperatures(4) == [0.7, 0.9, 1.0, 1.0]
    assert Schedule(values=(0.5, 1.0)).temperatures(3) == [0.5, 1.0, 1.0]


def test_bad_schedules_are_user_errors():
    with pytest.raises(UserError):
        Schedule(every=0)
    with pytest.raises(UserError):
        Schedule.from_mapping({"strat": 0.7})
    with pytest.raises(ValueError):
        Schedule().temperature(0)
