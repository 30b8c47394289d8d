"""The GPU worker: a Celery app (app.py) whose one task (tasks.py) claims compatible
jobs from Postgres, renders them in one pipeline call (engine.py, sampler.py) with
pipelines kept warm (model_cache.py), and stores the images (fresco.storage).

Nothing here imports torch at module import time except the modules used only inside
the render process, so the Celery parent never initialises CUDA before it forks."""
