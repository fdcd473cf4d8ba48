"""Normalizing flows on the unit hypercube for phase-space sampling (i-flow / MadNIS style)."""

from diffgen.flows import checkpoint  # noqa: F401
from diffgen.flows.channels import ChannelMap, Map1D, axis_map, cauchy, identity_map, multichannel, peak_map, pole
from diffgen.flows.coupling import binary_masks, coupling_layer
from diffgen.flows.flow import Flow, spline_flow
from diffgen.flows.sampler import Sampler, flow_sampler, uniform_sampler
from diffgen.flows.spline import rq_spline_forward, rq_spline_inverse
from diffgen.flows.train import LOSSES, TrainState, init_train_state, loss_fn, make_optimizer, train

__all__ = ["Flow", "spline_flow", "binary_masks", "coupling_layer", "rq_spline_forward", "rq_spline_inverse",
           "Sampler", "flow_sampler", "uniform_sampler", "ChannelMap", "identity_map", "peak_map", "multichannel",
           "Map1D", "axis_map", "cauchy", "pole",
           "TrainState", "init_train_state", "train", "loss_fn", "make_optimizer", "LOSSES", "checkpoint"]
