"""The fast loops: every inner loop of tinybnn, each a numba kernel beside its NumPy twin.

- :mod:`~tinybnn.kernels.loops`: how they are compiled (:class:`~tinybnn.kernels.loops.BatchLoop`);
- :mod:`~tinybnn.kernels.conv`, :mod:`~tinybnn.kernels.relu`, :mod:`~tinybnn.kernels.pool`:
  convolution patches, ReLU and max-pool passes;
- :mod:`~tinybnn.kernels.factored`, :mod:`~tinybnn.kernels.factored_mean`: the factored covariance
  path of a first conv read by a linear layer;
- :mod:`~tinybnn.kernels.step`, :mod:`~tinybnn.kernels.softmax`: the small loops every training
  step repeats (Adam, the Gaussian NLL, the L1 penalty, the first-order softmax);
- :mod:`~tinybnn.kernels.threads`: numba's threads and BLAS's kept out of each other's way.

Importing this package compiles nothing; import the module you need.

Each kernel is a plain loop compiled by numba (``cache=True``, so a second run does not
recompile) and has a NumPy twin with the suffix ``_numpy`` that computes the same numbers in
vectorised NumPy; ``tests/test_kernels_*.py`` check each pair in float64 and float32. With
``NUMBA_DISABLE_JIT=1`` the loops run as plain Python, so you can step through them in a debugger.

How they are made fast (docs/COST.md has the measurements):

- one pass over memory where NumPy would make several (ReLU returns the rectified mean and the
  masked row scale together; max-pool finds the argmax and gathers the maximum together);
- the innermost loop runs along the contiguous axis (the patch axis ``d`` in the factored path);
- ``numba.prange`` over the batch, the only axis long enough to share between threads; a kernel
  whose output is summed over the batch gives each thread its own partial sum (no races), added
  up at the end;
- each loop is compiled twice (:class:`~tinybnn.kernels.loops.BatchLoop`): shared between
  threads, and serial. Below :data:`~tinybnn.kernels.loops.PARALLEL_MIN_BATCH` examples the
  serial one runs: a small batch's work is too little to share, and the second thread,
  spinning between loops, slows the first one down (this machine's two cores are not
  independent: a busy second core slows a one-thread step by 16 %). One image per update:
  1.08 ms a step serial against 1.44 ms with 2 threads (docs/COST.md has the crossover,
  measured);
- large dense products are left to BLAS (``@`` in the layers), never called inside these loops;
  and since both thread pools spin for a while after their work ends, a network that uses these
  loops runs its BLAS on one thread (:mod:`tinybnn.kernels.threads`), so the two pools do not
  fight over the 2 cores;
- a loop allocates nothing: its scratch arrays come from its Python caller, because numba
  compiles every ``np.zeros`` or ``np.empty`` it meets, and a fresh run waits for that
  (benchmarks/README.md, the cold start).

Shapes: B batch, C channels, H W image, r kernel size, P = Ho Wo conv output positions,
d = C r r patch length (ordered (c, i, j) like ``M.reshape(N, -1)``), N channels, L positions
per channel after pooling, K units of the next layer.
"""
