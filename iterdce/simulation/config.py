"""Settings of one phantom run: grid, protocol and acquisition imperfections, checked in one place."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from iterdce.core.errors import UsageError
from iterdce.simulation.early_frames import delayed_phase_problem, early_frame_problems, with_early_frames
from iterdce.simulation.sites import SiteProfile, site_shortest_times

DEFAULT_TIMES_S = (0.0, 85.0, 155.0, 225.0, 295.0, 365.0)
# ``--protocols mixed``: three protocols of a multi-centre collection (6, 5 and 4 phases; gaps 70, 90, 120 s)
MIXED_PROTOCOLS = (DEFAULT_TIMES_S, (0.0, 75.0, 165.0, 255.0, 345.0), (0.0, 90.0, 210.0, 330.0))
MIN_SHAPE = (24, 24, 8)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that shapes the simulated images except the seed and the number of cases."""

    shape: tuple[int, ...] = (128, 128, 48)
    spacing: tuple[float, ...] = (1.6, 1.6, 2.0)
    phase_times_s: tuple[float, ...] = DEFAULT_TIMES_S
    snr: float = 40.0
    timing_jitter_s: float = 0.0
    fat_suppression: bool = True
    motion_mm: float = 0.0
    tr_s: float = 0.004
    flip_angle_deg: float = 12.0
    field_strength_t: float = 3.0
    agent: str = "gadopentetate"
    site: SiteProfile | None = None  # when set, each case draws its protocol from the site's ranges
    protocols: tuple[tuple[float, ...], ...] = ()  # when set, case i is acquired with protocols[i % len]
    early_frames: int = 0  # k >= 1: k ultrafast frames in the first 90 s replace the early phases (early_frames.py)

    @property
    def jitter_bound_s(self) -> float:
        """The largest timing jitter any case can get: the site's upper bound, else ``timing_jitter_s``."""
        return self.site.jitter_s[1] if self.site is not None else self.timing_jitter_s

    def acquired(self, times_s: tuple[float, ...]) -> tuple[float, ...]:
        """A base protocol as acquired: with this run's early frames (unchanged without them)."""
        return with_early_frames(times_s, self.early_frames, self.jitter_bound_s)

    def case_times(self, index: int) -> tuple[float, ...]:
        """Nominal phase times of case ``index``: its protocol of ``protocols``, else ``phase_times_s``, as
        acquired (with the early frames)."""
        return self.acquired(tuple(self.protocols[index % len(self.protocols)]) if self.protocols
                             else tuple(self.phase_times_s))

    def validate(self) -> None:
        """Raise ValueError naming every setting that is out of range."""
        problems = []
        if len(self.shape) != 3 or any(int(s) != s or s < m for s, m in zip(self.shape, MIN_SHAPE)):
            problems.append(f"shape must be 3 integers of at least {MIN_SHAPE}, got {tuple(self.shape)}")
        if len(self.spacing) != 3 or any(not (0.05 <= s <= 20.0) for s in self.spacing):
            problems.append(f"spacing must be 3 values between 0.05 and 20 mm, got {tuple(self.spacing)}")
        problems += early_frame_problems(self.early_frames, self.jitter_bound_s)
        for times in [list(self.phase_times_s), *(list(p) for p in self.protocols)]:
            problems += self._timing_problems(times)
            if not problems:
                problems += delayed_phase_problem(times, int(self.early_frames), self.jitter_bound_s)
        if not self.snr > 0:
            problems.append(f"snr must be positive, got {self.snr}")
        if not 0 <= self.motion_mm <= 10:
            problems.append(f"motion must be between 0 and 10 mm, got {self.motion_mm}")
        if not (0.001 <= self.tr_s <= 0.1 and 1 <= self.flip_angle_deg <= 90):
            problems.append(f"TR {self.tr_s} s / flip angle {self.flip_angle_deg} deg out of range")
        if self.site is not None:
            self.site.validate()
            if not problems:  # the site's earliest protocol keeps the fewest delayed phases
                problems += delayed_phase_problem(site_shortest_times(self.site), int(self.early_frames),
                                                  self.jitter_bound_s)
            if self.protocols:
                problems.append("mixed protocols cannot be combined with a site profile (it draws the protocol)")
        if problems:
            raise UsageError("invalid simulation settings: " + "; ".join(sorted(set(problems), key=problems.index)))

    def _timing_problems(self, times: list[float]) -> list[str]:
        """What is wrong with one protocol's times under this run's timing jitter."""
        problems = []
        gaps = [b - a for a, b in zip(times, times[1:])]
        if len(times) < 3 or any(g <= 0 for g in gaps):
            problems.append(f"phase_times_s must be at least 3 strictly increasing times, got {times}")
        elif times[1] <= 0:
            problems.append(f"the first post-contrast phase must come after injection (t > 0), got {times[1]}")
        if gaps and self.timing_jitter_s < 0:
            problems.append(f"timing jitter must be >= 0 s, got {self.timing_jitter_s}")
        elif gaps and min(gaps) > 0 and self.timing_jitter_s >= min(gaps) / 2 - 0.5:
            problems.append(f"timing jitter {self.timing_jitter_s} s must be below half the shortest gap "
                            f"between phases minus 0.5 s ({min(gaps) / 2 - 0.5:g} s) to keep times increasing")
        elif len(times) > 1 and times[1] - self.timing_jitter_s <= 1.0:
            problems.append(f"timing jitter {self.timing_jitter_s} s could move the first post-contrast phase "
                            "before injection")
        return problems

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form, stored in dataset.json for provenance (``early_frames`` only when used, so a run
        without them writes the same dataset.json as before the option existed)."""
        payload = asdict(self)
        if not self.early_frames:
            del payload["early_frames"]
        for key in ("shape", "spacing", "phase_times_s"):
            payload[key] = list(payload[key])
        payload["protocols"] = [list(p) for p in self.protocols]
        payload["site"] = None if self.site is None else self.site.to_json()
        return payload
