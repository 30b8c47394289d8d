"""A farm per test module for the OpenAI-compatibility tests: the API and a worker process as the README
starts them, storing in a real S3 server (moto), and the official `openai` package pointed
at it with ``base_url`` and a farm API key. Started once per module (a farm takes tens of
seconds to start on a CPU; "package" scope would be the whole session in a folder with no
__init__.py) and stopped with it; jobs other tests left queued are ended before and after."""
from __future__ import annotations

import openai
import pytest
import redis
from support.farm import Farm, cancel_unfinished_jobs


@pytest.fixture(scope="module")
def openai_farm(tmp_path_factory, session_env, s3_server):
    f = Farm(tmp_path_factory.mktemp("openai-farm"))
    f.env.update(s3_server.env())

    def clean() -> None:
        cancel_unfinished_jobs(f.db)
        redis.Redis(db=session_env.redis_db).flushdb()

    clean()
    f.start(workers=1)
    yield f
    f.close()
    clean()


@pytest.fixture(scope="module")
def client(openai_farm) -> openai.OpenAI:
    with openai.OpenAI(base_url=f"{openai_farm.env['FRESCO_API_URL']}/openai/v1", api_key=openai_farm.key,
                       timeout=300) as c:
        yield c
