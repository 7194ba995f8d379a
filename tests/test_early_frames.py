"""Ultrafast-style protocols (simulation/early_frames.py): k early frames as the inputs, the default unchanged."""
from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from iterdce.commands.simulate import main as simulate_main
from iterdce.core.errors import UsageError
from iterdce.simulation.case import simulate_case
from iterdce.simulation.config import DEFAULT_TIMES_S, MIXED_PROTOCOLS, SimulationConfig
from iterdce.simulation.early_frames import EARLY_WINDOW_S, MAX_EARLY_FRAMES, early_frame_times, with_early_frames
from iterdce.simulation.protocol import draw_protocol
from iterdce.simulation.sites import site_profile

SHAPE = (48, 48, 16)


def test_cli_early_frames_are_the_inputs_then_the_delayed_phases(tmp_path, capsys):
    out = tmp_path / "Dataset003_Ultrafast"
    assert simulate_main(["-o", str(out), "-n", "2", "--shape", *map(str, SHAPE), "--seed", "2",
                          "--timing-jitter", "2", "--early-frames", "3", "--quiet"]) == 0
    info = json.loads((out / "dataset.json").read_text())
    assert info["input_phases"] == [0, 1, 2, 3] and info["simulation"]["early_frames"] == 3
    assert info["phase_times_s"] == [0.0, 20.0, 55.0, 90.0, *DEFAULT_TIMES_S[2:]]
    with open(out / "acquisition.csv", newline="") as handle:
        arrival = {row["case"]: float(row["bolus_arrival_s"]) for row in csv.DictReader(handle)}
    for case, bolus in arrival.items():
        times = json.loads((out / "timesTr" / f"{case}.json").read_text())["phase_times_s"]
        assert len(sorted((out / "imagesTr").glob(f"{case}_*.nii.gz"))) == len(times) == 1 + 3 + 4
        frames, delayed = times[1:4], times[4:]
        assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:]))
        assert all(0.0 < t <= bolus + 90.0 for t in frames) and frames[-1] > bolus
        assert min(delayed) > max(frames) + 60.0


def test_default_is_unchanged_and_draws_do_not_depend_on_frames():
    default, explicit = (simulate_case(4, 0, SimulationConfig(shape=SHAPE, **extra)) for extra in ({},
                                                                                                   {"early_frames": 0}))
    assert default.times_s.tolist() == list(DEFAULT_TIMES_S)
    assert default.images.tobytes() == explicit.images.tobytes()
    assert default.labels.tobytes() == explicit.labels.tobytes()
    assert "early_frames" not in SimulationConfig().to_json()  # dataset.json as before the option
    site = site_profile("A")
    plain, fast = (draw_protocol(1, 3, SimulationConfig(shape=SHAPE, site=site, early_frames=k)) for k in (0, 4))
    assert replace(fast, nominal_times_s=()) == replace(plain, nominal_times_s=())
    assert fast.nominal_times_s == with_early_frames(plain.nominal_times_s, 4, site.jitter_s[1])


def test_frame_times_and_mixed_protocols():
    assert early_frame_times(0) == () and early_frame_times(1) == (EARLY_WINDOW_S[1],)
    assert early_frame_times(4) == (20.0, 43.3, 66.7, 90.0)
    config = SimulationConfig(protocols=MIXED_PROTOCOLS, early_frames=2)
    config.validate()
    assert [config.case_times(i) for i in range(3)] == [
        (0.0, 20.0, 90.0, 155.0, 225.0, 295.0, 365.0), (0.0, 20.0, 90.0, 165.0, 255.0, 345.0),
        (0.0, 20.0, 90.0, 210.0, 330.0)]


@pytest.mark.parametrize(("settings", "message"), [
    ({"early_frames": -1}, "integer from 0"),
    ({"early_frames": MAX_EARLY_FRAMES + 1}, "integer from 0"),
    ({"early_frames": 10, "timing_jitter_s": 5.0}, "too close for timing jitter"),
    ({"early_frames": 4, "site": site_profile("D"), "shape": SHAPE}, None),
    ({"early_frames": 6, "site": site_profile("D"), "shape": SHAPE}, "too close for timing jitter"),
    ({"early_frames": 2, "phase_times_s": (0.0, 60.0, 90.0)}, "nothing left to predict"),
])
def test_validation(settings, message):
    config = SimulationConfig(**settings)
    if message is None:
        config.validate()
    else:
        with pytest.raises(UsageError, match=message):
            config.validate()


def test_site_case_keeps_its_delayed_phases():
    case = simulate_case(5, 0, SimulationConfig(shape=(64, 56, 16), site=site_profile("C"), early_frames=4))
    times = np.asarray(case.times_s)
    assert case.images.shape[0] == times.size >= 1 + 4 + 1
    assert np.all(np.diff(times) > 0) and np.all(times[5:] > times[4] + 2 * site_profile("C").jitter_s[1])
