"""Code shared by the API and the workers: settings, the job spec, the model registry,
storage, and the client SDK and CLI."""
