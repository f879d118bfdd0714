"""``tinybnn import``: weights trained elsewhere (read by :data:`tinybnn.importers.IMPORTERS`)
written as a tinybnn model file, with a report of what was read, converted and dropped.

``import_run`` writes the model file (atomically, tinybnn/io.py) and echoes the lines of
:func:`import_report`; a file that cannot be read raises before anything is written.
"""

from .. import io
from ..importers import IMPORTERS
from ..units import NEAR_ZERO, unit_norms, weight_layers


def import_run(fmt, source, out, *, echo=print):
    """Read ``source`` in the format ``fmt`` (a key of IMPORTERS), write the model file ``out``
    and echo :func:`import_report`, line by line; returns (model, meta)."""
    model, meta = IMPORTERS[fmt](source)
    io.save(out, model, meta)
    for line in import_report(model, meta, out):
        echo(line)
    return model, meta


def import_report(model, meta, out):
    """The lines `tinybnn import` prints: what was read, converted, dropped and written."""
    got, n = meta["imported"], meta["options"]["kernels"]
    lines = [f"read {got['source']} ({got['format']}, a {got['pickle_form']} of "
             f"{len(got['source_shapes'])} {got['dtype']} arrays, sha256 {got['source_sha256']})"]
    lines += [f"  {c}" for c in got["converted"]]
    lines += [f"  {k} {tuple(got['source_shapes'][k])} dropped: {d['why']} (its values range "
              f"from {d['min']:.3g} to {d['max']:.3g})" for k, d in got["dropped"].items()]
    norms = unit_norms(model[weight_layers(model)[0]])
    low = sorted(norms[norms < NEAR_ZERO])
    lines.append(f"kernels with a mean norm below {NEAR_ZERO:g}: {len(low)} of {n}"
                 + (f" ({', '.join(f'{v:.2g}' for v in low)})" if low else ""))
    lines.append(f"wrote {out}: the Bayesian paper CNN, N = {n}, {model.dtype}, for "
                 f"{meta['options']['dataset']} (try: tinybnn evaluate --model {out})")
    return lines
