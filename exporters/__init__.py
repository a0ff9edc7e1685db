"""Exporters: torch ⇄ NIR ⇄ Lava / lava-dl netx (uses nasflow.snn, never nasflow search code).

* ``exporters.core``: the NIR core (numpy + nir only): node-kind table, ``Conventions``, traversal, the one
  shape and padding rule, and ``compile_graph`` (populations and linear paths) that every consumer reads;
* ``exporters.nir_io``: ``read_nir`` / ``write_nir`` with clear errors naming the file and node;
* ``exporters.nir_export``: ``to_nir(model)`` and the converter registry (``register_converter``);
* ``exporters.nir_torch``: ``GraphModule`` / ``simulate``, the reference simulator of any NIR graph;
* ``exporters.lava``: NIR → Lava (float and Loihi fixed point), split by job;
* ``exporters.netx``: NIR → lava-dl netx ``.net`` and its Lava run;
* ``exporters.equivalence``: per-node spike precision/recall, accuracy from an output node.

Submodules are not imported here, so that ``import exporters.core`` stays light (no torch, no Lava).
"""
