"""The density schedule of gradual pruning (TICKET.SCHEDULE, INTERVAL, STEPS, TARGET_DENSITY).

A step runs after every INTERVAL epochs: after epoch e (0-based) when (e + 1) % INTERVAL == 0, as step
k = (e + 1) // INTERVAL. With D = TARGET_DENSITY and N = STEPS the density after step k is

    cubic   d_k = D + (1 - D) * (1 - min(k, N) / N) ** 3     (Zhu & Gupta, 2017)
    linear  d_k = 1 - (1 - D) * min(k, N) / N

so D is reached by step N, i.e. when N x INTERVAL epochs are done; every later step re-ranks at D.
"oneshot" prunes once to D before the first training step (SNIP / SynFlow at initialisation).
"""
from dataclasses import dataclass

SCHEDULES = ("cubic", "linear", "oneshot")


def check_density(density: float, what: str = "TICKET.TARGET_DENSITY") -> float:
    density = float(density)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"{what} must be in (0, 1], got {density}")
    return density


@dataclass(frozen=True)
class DensitySchedule:
    kind: str
    target: float
    interval: int = 1
    steps: int = 1

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown TICKET.SCHEDULE '{self.kind}' ({', '.join(SCHEDULES)})")
        check_density(self.target)
        if self.interval < 1 or self.steps < 1:
            raise ValueError(f"TICKET.INTERVAL and TICKET.STEPS must be >= 1, got {self.interval}, {self.steps}")

    def step_after(self, epoch: int) -> int:
        """The gradual step that runs after epoch `epoch` (0-based), 0 = none."""
        if self.kind == "oneshot" or (epoch + 1) % self.interval:
            return 0
        return (epoch + 1) // self.interval

    def density(self, step: int) -> float:
        """Density after gradual step `step` (>= 1)."""
        frac = min(step, self.steps) / self.steps
        if self.kind == "cubic":
            return self.target + (1 - self.target) * (1 - frac) ** 3
        return 1 - (1 - self.target) * frac

    def target_epoch(self) -> int:
        """Epochs done when the target density is first reached (0 for oneshot)."""
        return 0 if self.kind == "oneshot" else self.steps * self.interval
