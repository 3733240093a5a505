#!/usr/bin/env bash
# Create or refresh .venv with the interpreter named in .python-version.
# Re-installs only when the requirements files changed, so `make run` stays fast.
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(tr -d '[:space:]' < .python-version)
find_python() {
  local root
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
  else
    root=${PYENV_ROOT:-$HOME/.pyenv}
  fi
  for candidate in "$root/versions/$want/bin/python" "$(command -v "python${want%.*}" || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import sys; assert '%d.%d.%d' % sys.version_info[:3] == '$want'" 2>/dev/null; then
  python=$(find_python) || { echo "Python $want not found: install it (pyenv install $want)." >&2; exit 1; }
  echo "Creating .venv with $python"
  rm -rf .venv
  "$python" -m venv .venv
fi

stamp=.venv/.requirements.sha
sum=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  echo "Installing dependencies into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$sum" > "$stamp"
fi
