"""The kernels and units of a network, seen one at a time: what self-compression watches.

A *unit* is a conv kernel (its mean tensor ``M[k]`` (C, r, r)) or a linear layer's output
unit (its incoming mean weights ``M[:, k]`` (D,)); each has one variance ``s_k``. A unit is
*switched off* when the norm of its mean is below :data:`NEAR_ZERO` (tinybnn's number for the
paper's "close to zero"). The units of a layer are read by the next weight layer: after a conv and
Flatten, rows ``k L .. (k+1) L - 1`` of the linear layer's ``M`` (its *block* for kernel k);
after a linear layer, row k. Their norm is the unit's *outgoing norm*: in the authors' recipe the
block that reads a kernel collapses before the kernel does (docs/SELF_COMPRESSION.md).

Every norm of a unit in tinybnn is computed here, once::

    name             shape   meaning
    unit_norms       (n,)    ||M_k||_F, the mean of each kernel (unit)
    outgoing_norms   (n,)    ||rows of the next layer that read unit k||_F
    variances        (n,)    s_k = softplus(rho_k) (Bayesian layers only)
"""

import numpy as np

from .errors import ConfigError
from .layers import Conv2d, Flatten, Linear

# ||M_k||_F below this: switched off. The paper gives no number; this is tinybnn's choice: the
# authors' released kernels separate cleanly at it (5.7e-5 against >= 0.25; docs/PAPER.md).
NEAR_ZERO = 1e-3


def weight_layers(model):
    """Names of the layers with weights (Conv2d and Linear), in order."""
    return [n for n, layer in model.layers if isinstance(layer, (Conv2d, Linear))]


def prunable_layers(model):
    """Names of the layers whose kernels/units can be removed: every weight layer but the last
    (the last one's units are the outputs)."""
    return weight_layers(model)[:-1]


def unit_means(layer):
    """(n, d) means, one row per kernel (conv) or unit (linear, its incoming weights); a view."""
    M = layer.params["M"]
    return M.reshape(M.shape[0], -1) if isinstance(layer, Conv2d) else M.T


def n_units(layer):
    """How many kernels (units) the layer has."""
    return layer.n_kernels if isinstance(layer, Conv2d) else layer.d_out


def unit_norms(layer):
    """||M_k||_F for every kernel (unit) of ``layer`` (n,)."""
    return np.linalg.norm(unit_means(layer), axis=1)


def next_weight_layer(model, name):
    """(name, layer, flattened) of the weight layer that reads ``name``'s units; ``flattened``
    says whether a Flatten stands between them (then unit k feeds a block of rows)."""
    names = [n for n, _ in model.layers]
    if name not in prunable_layers(model):
        raise ConfigError(f"layer {name!r} has no layer reading its units; layers that do: "
                          f"{prunable_layers(model) or 'none'}")
    i = names.index(name)
    j = next(j for j in range(i + 1, len(names))
             if isinstance(model.layers[j][1], (Conv2d, Linear)))
    flattened = any(isinstance(model.layers[m][1], Flatten) for m in range(i + 1, j))
    return names[j], model.layers[j][1], flattened


def reading_rows(model, name, units):
    """Indices of the next layer's input rows (Linear) or input channels (Conv2d) that read
    ``units`` of layer ``name``, in the order given."""
    _, nxt, flattened = next_weight_layer(model, name)
    units = np.asarray(units, dtype=np.int64)
    if isinstance(nxt, Conv2d) or not flattened:
        return units
    L = nxt.d_in // n_units(model[name])
    return (units[:, None] * L + np.arange(L)[None, :]).ravel()


def outgoing_norms(model, name):
    """For each unit k of layer ``name``: the norm of the next layer's weights that read it."""
    _, nxt, _ = next_weight_layer(model, name)
    W = nxt.params["M"]
    n = n_units(model[name])
    if isinstance(nxt, Conv2d):  # input channel k: M[:, k]
        return np.linalg.norm(W.transpose(1, 0, 2, 3).reshape(n, -1), axis=1)
    return np.linalg.norm(W.reshape(n, -1), axis=1)  # rows k L .. (k+1) L - 1 (L = 1 unflattened)


def variances(layer):
    """s_k for every kernel (unit), or None for a vanilla layer."""
    return layer.s if layer.bayesian else None


def unit_record(model):
    """{layer: {"norms", "outgoing_norms", "variances"}} of every prunable layer, as lists:
    what training records after each epoch (JSON-able; variances None for a vanilla net)."""
    record = {}
    for name in prunable_layers(model):
        layer = model[name]
        s = variances(layer)
        record[name] = {"norms": unit_norms(layer).tolist(),
                        "outgoing_norms": outgoing_norms(model, name).tolist(),
                        "variances": None if s is None else s.tolist()}
    return record


def switched_off(norms, threshold=NEAR_ZERO):
    """Indices of the units whose norm is below ``threshold``."""
    return [int(k) for k in np.flatnonzero(np.asarray(norms) < threshold)]


# ---------------------------------------------------------------------------------------------
# reading training histories (tinybnn.train.fit records unit_record after every epoch)
# ---------------------------------------------------------------------------------------------


def trajectory(stages, layer, key="norms"):
    """The norm of every kernel through one or more trainings, one after the other.

    ``stages``: dicts with ``kernel_ids`` (for each kernel of the layer during that stage's
    training, in order, its column: its position in the first stage's network, 0 .. N0 - 1),
    ``history`` (tinybnn.train.fit's) and, for the first, optionally ``start_units`` (the
    unit_record before training): the stages of tinybnn.compress.self_compress, or
    ``[{"kernel_ids": range(N), "history": h}]`` for one training. (For a run that started from
    an already pruned network, the columns are its kernels' positions, not their original ids;
    map them back through the run's ``kernel_ids``.) Returns (epochs (E,), values (E, N0)): cumulative epochs (0 = before training,
    when known), and each kernel's ``key`` ("norms", "outgoing_norms" or "variances") by its
    id, NaN once it has been removed.
    """
    n0 = len(stages[0]["kernel_ids"])
    epochs, rows = [], []
    if "start_units" in stages[0]:
        epochs.append(0)
        rows.append(np.asarray(stages[0]["start_units"][layer][key], dtype=float))
    done = 0
    for r in stages:
        for h in r.get("history", []):
            for snap in h.get("snapshots", []) + [h]:
                row = np.full(n0, np.nan)
                row[r["kernel_ids"]] = snap["units"][layer][key]
                epochs.append(done + snap["epoch"])
                rows.append(row)
        done += len(r.get("history", []))
    return np.array(epochs, dtype=float), np.array(rows)


def switch_off_counts(history, layer, threshold=NEAR_ZERO):
    """[kernels (units) below ``threshold`` after each epoch of ``history``]."""
    return [len(switched_off(h["units"][layer]["norms"], threshold)) for h in history]
