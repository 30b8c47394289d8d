"""Code shared by the API and the workers (settings, the job spec, the model registry,
storage, dispatch), and in :mod:`fresco.client` the SDK and CLI, which need only the base
install."""
