#!/usr/bin/env bash
# The whole test suite against real Postgres, Redis, an S3 server and worker processes.
# Starts what it needs (see infra/setup.sh); extra arguments go to pytest.
source "$(dirname "$0")/setup.sh"
set +e
python -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
