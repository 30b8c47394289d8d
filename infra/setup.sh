# Sourced by infra/demo.sh and infra/test.sh: makes sure Postgres and Redis answer on
# loopback and that .venv holds the project with its pinned dependencies.
# On a machine of the CI kind both services are installed; this starts whichever is down.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no
fi
for _ in $(seq 1 60); do
  pg_isready -h 127.0.0.1 -p 5432 -q && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
  sleep 0.5
done
pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis does not answer on 127.0.0.1:6379" >&2; exit 1; }

# Debian's Chromium for the gallery's browser tests (tests/ui/, driven by Playwright with
# executable_path: Playwright's own browser download needs the internet). CI runs as root.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (Debian) for tests/ui" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# The virtualenv is rebuilt when pyproject.toml changes (its hash is kept beside it).
stamp=".venv/.fresco-installed-$(sha256sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "installing into .venv (torch 2.13.0 CPU wheel, then the project and its pinned dependencies)" >&2
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.fresco-installed-*
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
