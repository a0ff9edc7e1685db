"""The NIR core: what a NIR graph means, written once (numpy + nir only; no torch, no Lava).

* ``kinds``: the node-kind table (neuron, linear, structural; spiking, firing, weighted, timed);
* ``conventions``: ``Conventions``, the frozen dt / threshold / reset / initial-state value and its metadata form;
* ``traversal``: inputs, order, back edges, flattening of nested graphs, parameter checks;
* ``shapes``: the one shape rule (padding included) and graph-wide shape inference;
* ``compile``: ``compile_graph`` → populations and linear paths, consumed by the torch reference, the Lava
  backend, netx export and ``hwmodels``;
* ``jsonio``: the one JSON helper and schema-version constant for every result file.

``NIRFormatError`` (``errors``) is the one error for graphs that cannot be interpreted.
"""
