"""Temperature schedules: the paper's flagship and its ablations, from the real Hydra configs."""

from __future__ import annotations

import pytest

from plaidpp.config import compose
from plaidpp.errors import UserError
from plaidpp.settings import validate
from plaidpp.settings.rlip import ScheduleSettings


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
    assert cfg.schedule.temperatures(7) == pytest.approx(expected, abs=1e-9)


def test_cap_and_explicit_values():
    assert ScheduleSettings("capped", start=0.7, step=0.2, every=1, max=1.0).temperatures(4) == [0.7, 0.9, 1.0, 1.0]
    assert ScheduleSettings("listed", values=[0.5, 1.0]).temperatures(3) == [0.5, 1.0, 1.0]


def test_bad_schedules_are_one_line_errors_naming_the_key():
    with pytest.raises(UserError, match=r"^schedule.every: 0 must be >= 1$"):
        compose("rlip", ["schedule.every=0"])
    with pytest.raises(UserError, match=r"unknown setting schedule.strat \(did you mean schedule.start\?\)"):
        compose("rlip", ["schedule.strat=0.7"])
    with pytest.raises(UserError, match="values"):
        validate(ScheduleSettings("empty", values=[]))
    with pytest.raises(ValueError):
        ScheduleSettings("flagship").temperature(0)
