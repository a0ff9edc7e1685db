"""Exporters: torch ⇄ NIR ⇄ Lava / lava-dl netx (uses nasflow.snn, never nasflow search code).

NIR core (numpy + nir + torch):

* ``exporters.graph``: evaluation order, back edges (one step late), shape inference, ``NIRFormatError``;
* ``exporters.nir_io``: ``read_nir`` / ``write_nir`` with clear errors naming the file and node;
* ``exporters.nir_export``: ``to_nir(model)`` and the converter registry (``register_converter``);
* ``exporters.nir_torch``: ``GraphModule`` / ``simulate``, the reference simulator of any NIR graph;
* ``exporters.equivalence``: per-node spike precision/recall, accuracy from an output node.

Backends (Lava, netx) live in their own modules and are imported only when used. Submodules are not
imported here, so that ``import exporters.graph`` stays light.
"""
