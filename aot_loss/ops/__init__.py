"""The op layer: the ``aot_loss::`` operators and who computes them.

- ``library``: the op schemas, defined once, and the loading of the native library.
- ``native``: finds and loads the native library; what it serves (devices, costs, dtypes,
  limits) as the library itself reports it.
- ``dominance``, ``soft_sort`` (with ``pav``, its torch kernels): one module per op, holding
  its pure-torch default kernel, its fake (meta) kernel and its registered autograd formula.
- ``dispatch``: the one decision between an op's native kernel and its torch kernel.
- ``autograd``: the eager fast path of each op's formula, and the entry points the layers
  above call.

Nothing here imports the layers above (options are read, not validated, here).
"""
