#!/bin/sh
# The image's install steps, run by the Dockerfile's builder stage and, unchanged,
# by tests/deploy/test_dockerfile.py (so a drifting Dockerfile fails CI).
#
#   install.sh deps      a venv at $VENV with exactly the locked runtime dependencies
#                        (requirements/runtime.txt: lock.txt without the test extras)
#   install.sh project   the project itself into it, without resolving anything
#
# Run from the source directory. `uv` must be on PATH. Bytecode is compiled here
# because the image's root filesystem is read-only at run time.
set -eu
: "${VENV:?set VENV to the venv path}"

case "${1:-}" in
  deps)
    python3 -m venv --without-pip "$VENV"
    uv pip sync --python "$VENV/bin/python" --compile-bytecode requirements/runtime.txt
    ;;
  project)
    uv pip install --python "$VENV/bin/python" --compile-bytecode --no-deps .
    "$VENV/bin/schedule-reconciler" --help >/dev/null
    ;;
  *)
    echo "usage: install.sh deps|project" >&2
    exit 2
    ;;
esac
