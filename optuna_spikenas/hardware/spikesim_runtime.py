"""SpikingJelly's runtime SpikeSim energy estimate of a built network (beside ``imc.py``'s
analytic model, which prices shapes alone)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from optuna_spikenas.hardware.imc import HardwareProfile


def spikesim_energy_uj(
    network: nn.Module, images: torch.Tensor, profile: HardwareProfile, activity: str = "event"
) -> float:
    """SpikingJelly's SpikeSim energy per image, in µJ over all timesteps, from one real forward
    pass of ``network`` on the batch ``images``.

    Scope, unlike ``imc_report``: nn.Conv2d layers only (the head's linears are not counted), one
    column per weight (no bit slices) and convs charged as often as the network runs them (a
    direct-encoded stem once); its ADC term always uses 8 columns per ADC. With
    ``activity="event"``, PE cycles whose input patch carries no spike are not charged (inputs
    that are not binary, like the stem's image, are charged densely); ``"dense"`` charges all.
    """
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.op_counter.spikesim import (
        SpikeSimEnergyConfig,
        estimate_spikesim_energy,
    )

    if activity not in ("dense", "event"):
        raise ValueError(f"activity must be 'dense' or 'event', got {activity!r}")
    e = profile.energy
    config = SpikeSimEnergyConfig(
        xbar_size=profile.crossbar_size,
        device="rram",
        activity_mode=activity,
        tile_buffer_pj=e.tile_buffer,
        temp_buffer_pj=e.temp_buffer,
        sub_pj=e.subtractor,
        adc_pj=e.adc,
        htree_pj=e.htree,
        mux_pj=e.mux,
        mem_fetch_pj=e.memory_fetch,
        neuron_pj=e.neuron,
        rram_xbar_pj=e.xbar_per_kernel_position,
    )
    modes = {module: module.training for module in network.modules()}
    network.eval()  # the estimator only counts inference convs
    functional.reset_net(network)
    try:
        report = estimate_spikesim_energy(network, images, config=config)
    finally:
        functional.reset_net(network)  # leave no state from the profiling pass behind
        for module, mode in modes.items():
            module.training = mode
    return report.energy_total_pj / images.shape[0] / 1e6
