"""A study's budgets, checked on an architecture before any network exists (no torch).

SpikeNAS bounds the weight memory (parameters x weight bits); NeuroNAS adds the IMC chip's area,
latency and energy (``hardware/imc.py``). Each budget is an Optuna constraint of the same name,
``(cost - budget) / budget`` (feasible when <= 0), and an invalid architecture breaks every budget
by 1.0. The objectives record these checks and the cell-by-cell sampler plans with ``fits``.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna_spikenas.config import BudgetConfig
from optuna_spikenas.hardware.imc import HardwareProfile, HardwareReport, imc_report
from optuna_spikenas.hardware.memory import MemoryReport, memory_report
from optuna_spikenas.macros import Macro
from optuna_spikenas.space import Architecture, SearchSpace, invalid_reason

CONSTRAINTS = ("memory", "area", "latency", "energy")
"""The budgets a study can have, in this order; each is a constraint of the same name."""

HARDWARE_COST = {"area": "area_mm2", "latency": "latency_ms", "energy": "energy_uj"}
"""The hardware budgets' constraint names and the IMC report's (and config's) keys."""


@dataclass(frozen=True)
class Check:
    """An architecture's validity and costs against the study's budgets, computed analytically.

    ``excess[name]`` is ``(cost - budget) / budget`` for each budget the study has (feasible when
    <= 0); an invalid architecture breaks every budget by 1.0."""

    reason: str | None  # why it is invalid, or None
    memory: MemoryReport | None
    hardware: HardwareReport | None
    budgets: dict[str, float]  # memory in bits, area in mm², latency in ms, energy in µJ
    excess: dict[str, float]

    @property
    def broken(self) -> tuple[str, ...]:
        """The budgets this architecture breaks, in ``CONSTRAINTS`` order."""
        return tuple(name for name in CONSTRAINTS if self.excess.get(name, 0.0) > 0)

    @property
    def feasible(self) -> bool:
        return self.reason is None and not self.broken


def excess(cost: float, budget: float) -> float:
    """How far ``cost`` is over ``budget``, as a fraction of it (feasible when <= 0)."""
    return (cost - budget) / budget


@dataclass(frozen=True)
class Budgets:
    """The budgets of a study's config on its macro (fitted to the dataset): ``check`` prices an
    architecture with the analytic memory and IMC models, ``fits`` says whether it is feasible."""

    space: SearchSpace
    macro: Macro
    profile: HardwareProfile
    budget: BudgetConfig
    timesteps: int

    def limits(self) -> dict[str, float]:
        """Each budget the study has: memory in bits, area in mm², latency in ms, energy in µJ."""
        limits: dict[str, float] = {}
        if self.budget.memory_bits is not None:
            limits["memory"] = self.budget.memory_bits
        hardware = self.budget.hardware_budgets()
        for name, key in HARDWARE_COST.items():
            if key in hardware:
                limits[name] = hardware[key]
        return limits

    def check(self, arch: Architecture) -> Check:
        """Validity and costs of ``arch`` against the budgets."""
        reason = invalid_reason(arch, self.space)
        bits = self.budget.weight_bits
        memory = hardware = None
        try:
            memory = memory_report(arch, self.macro, bits)
            hardware = imc_report(arch, self.macro, self.profile, bits, self.timesteps)
        except ValueError as err:  # images too small for this many cells
            reason = reason or str(err)
        limits = self.limits()
        over = {}
        for name, limit in limits.items():
            if reason is not None or memory is None or hardware is None:
                over[name] = 1.0
            elif name == "memory":
                over[name] = excess(memory.memory_bits, limit)
            else:
                over[name] = excess(getattr(hardware, HARDWARE_COST[name]), limit)
        return Check(reason, memory, hardware, limits, over)

    def fits(self, arch: Architecture) -> bool:
        """True when ``arch`` is valid and within every budget (for samplers)."""
        return self.check(arch).feasible
