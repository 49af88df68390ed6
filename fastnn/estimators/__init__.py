"""scikit-learn drop-in estimators: ``MLPClassifier`` and ``MLPRegressor`` on fastnn's kernels.

Change the import, keep the code::

    from fastnn import MLPClassifier        # was: from sklearn.neural_network import ...

The constructor parameters, their defaults and meanings, and the fitted attributes are those of
``sklearn.neural_network``'s estimators (scikit-learn >= 1.6; it is the optional extra
``fastnn[sklearn]`` and is imported only by this module). Training runs on fastnn's native loop:
one ``fastnn.training.fit`` call per ``fit`` (the whole run of epochs in native code with its
workspaces allocated once), scikit-learn's per-epoch logic (``tol`` / ``n_iter_no_change``, the
"adaptive" and "invscaling" schedules, ``loss_curve_``, ``verbose``) in the fit's per-epoch
callback (``_monitor.Monitor``). ``solver="lbfgs"`` is ``scipy.optimize.minimize(method=
"L-BFGS-B")`` in float64 over the flattened parameters, each evaluation one call of the
backend's full-batch forward, loss and backward (``Ops.objective``). Every loss, the Poisson
loss included, runs in the native loop: the regressor's losses are fastnn's
"half_squared_error" (scikit-learn's objective, gradient z - y) and "poisson" (half the Poisson
deviance, log link), so no step, decay or epsilon is rescaled to emulate another loss.

With ``dtype="float64"`` and one batch holding the whole training set (so that the shuffling
plays no part), a fit gives scikit-learn's ``coefs_``, ``loss_curve_`` and ``n_iter_`` to
rounding, for sgd (with or without Nesterov momentum, every schedule), adam and lbfgs, with
sample weights and the L2 penalty (tests/test_estimators.py checks this). "invscaling" is
``learning_rate_init / (t_ + 1) ** power_t`` updated at the end of each epoch, with ``t_`` the
samples seen, which is also when scikit-learn updates it (its optimizer's ``iteration_ends``).

What is added: ``dtype`` (float32 by default: the weights and all training arithmetic; predictions
come back in the input's float dtype, float64 unless X is float32, as scikit-learn does),
``class_weight`` for the classifier, ``validation_loss_curve_`` with early stopping.

Inputs are read as they are held: a sparse X (CSR; CSC and COO converted once) is trained on and
predicted from as CSR rows, never densified, as scikit-learn does; a float32 or float64 X is read
in place whatever ``dtype`` is (Fortran order and read-only memmaps too), each batch's rows
converted as the native loop gathers them, so a float64 X of a float32 model is not copied.

What differs from scikit-learn, on purpose or by construction (each also in the docstrings):

* early stopping watches the *validation loss* (not the accuracy / R^2, which is coarse and
  noisy: a classifier's accuracy can stay flat while its loss still improves); the scores are
  still recorded in ``validation_scores_`` as scikit-learn does, the losses in
  ``validation_loss_curve_``, and the weights of the epoch with the lowest validation loss are
  kept;
* the L2 penalty on a mini-batch is ``alpha / batch_size`` (scikit-learn divides by the size of
  each batch, so only a last, smaller batch differs); ``loss_curve_``'s L2 term is evaluated on
  the weights each epoch starts from (scikit-learn adds it batch by batch on the weights before
  each update: the same when one batch holds the whole training set);
* sample weights are rescaled to mean 1 over the training set, and a batch's gradient is divided
  by its size (scikit-learn divides each batch by the sum of its weights): the two agree in
  expectation, and exactly when a batch holds the whole training set;
* the early-stopping split is stratified for every single-output classifier (scikit-learn's
  documentation says so; its code only stratifies binary problems);
* shuffling draws from a NumPy Generator seeded from ``random_state``: the same seed gives the same
  model bit for bit, but not scikit-learn's shuffles; the initial weights and the early-stopping
  split are drawn exactly as scikit-learn draws them;
* lbfgs on a multi-output squared error minimises the objective whose gradient scikit-learn
  computes (half the squared error summed over the outputs); scikit-learn hands L-BFGS the mean
  over the outputs as the function value, which does not match that gradient. ``loss_`` is
  reported in scikit-learn's scale (the mean over the outputs). One output: identical;
* ``partial_fit`` is absent with ``solver="lbfgs"`` on the regressor too, as on the classifier
  (scikit-learn's MLPRegressor offers it and runs a whole L-BFGS fit);
* fits run BLAS on one thread, as ``fastnn.training.fit`` does: the same ``random_state`` gives
  the same weights whatever the thread settings (a Dask worker's or this process's).

The package: ``_base`` (parameters, validation, the fitted attributes over the fastnn model),
``_monitor`` (scikit-learn's per-epoch rules), ``_stochastic`` (sgd, adam), ``_lbfgs``,
``_classifier`` and ``_regressor``.
"""

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastnn.MLPClassifier and fastnn.MLPRegressor need scikit-learn: "
        "pip install 'fastnn[sklearn]'"
    ) from exc

from ._classifier import MLPClassifier
from ._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
