#!/usr/bin/env bash
# Install patchbay into .venv (once) and start it on embedded defaults: SQLite, the in-process
# queue and the embedded local model, with the core on 127.0.0.1:8700 and the OpenAI channel on
# 127.0.0.1:11435. Arguments go to `patchbay up`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install
exec .venv/bin/patchbay up "$@"
