"""Predictions and metrics for any network, Bayesian or vanilla, with one interface.

``predict(model, x)`` returns the predictive mean (class probabilities for a classifier) and,
for a Bayesian network, the predictive covariance; a vanilla network has none. ``evaluate``
turns a data split into the metrics that training and compression report.

Metrics of a classifier on n examples with labels ``y``:

- ``accuracy``: fraction with argmax of the mean equal to the label;
- ``nll``: the training data term: the Gaussian NLL of the one-hot label (Bayesian, with the
  jitter) or the cross-entropy (vanilla), per example;
- ``log_loss``: ``-log p_y`` of the predictive mean, comparable between the two kinds;
- ``mean_predictive_variance``: the mean over examples of ``tr(S)/K`` (Bayesian only);
- ``per_class_accuracy``: the accuracy on each class's examples.
"""

import numpy as np

from .errors import ShapeError
from .functions import softmax
from .losses import JITTER, gaussian_nll, one_hot
from .gaussian import Full, Diagonal

EVAL_BATCH = 500  # examples per forward pass when predicting; bounds the memory


def predict(model, x, *, batch_size=EVAL_BATCH):
    """(mean (n, K), covariance (n, K, K) or None) of the predictive distribution, in batches."""
    if batch_size < 1:
        raise ShapeError(f"batch_size must be >= 1, found {batch_size}")
    means, covs = [], []
    for i in range(0, len(x), batch_size):
        out = model.forward(x[i:i + batch_size])
        if not model.bayesian:
            means.append(softmax(out.mean) if model.task == "classification" else out.mean)
            continue
        means.append(out.mean)
        if isinstance(out, Full):
            covs.append(out.cov)
        elif isinstance(out, Diagonal):
            eye = np.eye(out.var.shape[1], dtype=out.var.dtype)
            covs.append(np.einsum("bk,kl->bkl", out.var, eye))  # diag(var)  (B, K, K)
    if not means:
        raise ShapeError("predict needs at least one example, found 0")
    return np.concatenate(means), (np.concatenate(covs) if covs else None)


def classification_metrics(mean, cov, y, *, jitter=JITTER):
    """The metrics above from a predictive mean (n, K), covariance (n, K, K) or None, labels."""
    y = np.asarray(y)
    K = mean.shape[1]
    target = one_hot(y, K, mean.dtype)
    pred = mean.argmax(axis=1)
    p_y = mean[np.arange(len(y)), y]
    metrics = {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "log_loss": float(-np.log(np.maximum(p_y, np.finfo(mean.dtype).tiny)).mean()),
        "per_class_accuracy": [float((pred[y == k] == k).mean()) if np.any(y == k) else None
                               for k in range(K)],
    }
    if cov is not None:
        metrics["nll"] = float(gaussian_nll(Full(mean, cov), target, jitter)[0])
        metrics["mean_predictive_variance"] = float(np.trace(cov, axis1=1, axis2=2).mean() / K)
    else:
        metrics["nll"] = metrics["log_loss"]  # for a vanilla net the NLL is the cross-entropy
        metrics["mean_predictive_variance"] = None
    return metrics


def evaluate(model, split, *, jitter=JITTER, batch_size=EVAL_BATCH):
    """Metrics of ``model`` on a data split (``split.x``, ``split.y``) as a dict."""
    if model.task != "classification":
        mean, cov = predict(model, split.x, batch_size=batch_size)
        err = mean - split.y
        out = {"n": int(len(split.y)), "rmse": float(np.sqrt((err**2).mean()))}
        if cov is not None:
            out["nll"] = float(gaussian_nll(Full(mean, cov), split.y, jitter)[0])
            out["mean_predictive_variance"] = float(np.trace(cov, axis1=1, axis2=2).mean()
                                                    / mean.shape[1])
        return out
    mean, cov = predict(model, split.x, batch_size=batch_size)
    return classification_metrics(mean, cov, split.y, jitter=jitter)
