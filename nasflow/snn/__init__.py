"""nasflow's layer library: neurons, surrogates, multi-step layers, blocks and activity accounting."""

from nasflow.snn.activity import ActivityMonitor, effective_ops, fanout_map
from nasflow.snn.layers import (
    DirectEncoder,
    Flatten,
    SpikingAvgPool2d,
    SpikingMaxPool2d,
    TimeDistributed,
    VotingLayer,
    fold_bn,
)
from nasflow.snn.neurons import ALIF, CUBA, IF, LIF, PLIF, Neuron, NeuronState, reset_states
from nasflow.snn.surrogate import ATan, Dspike, Sigmoid, SuperSpike, Surrogate, Triangle, make_surrogate

__all__ = [
    "ALIF", "ATan", "ActivityMonitor", "CUBA", "DirectEncoder", "Dspike", "Flatten", "IF", "LIF", "Neuron",
    "NeuronState", "PLIF", "Sigmoid", "SpikingAvgPool2d", "SpikingMaxPool2d", "SuperSpike", "Surrogate",
    "TimeDistributed", "Triangle", "VotingLayer", "effective_ops", "fanout_map", "fold_bn", "make_surrogate",
    "reset_states",
]
