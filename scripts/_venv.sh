# Shared by scripts/test and scripts/demo: make sure .venv exists and holds hbw-sync with its
# test extras. Works on a fresh machine with only Python >= 3.11 and pip.
PYTHON=${PYTHON:-python3}
VENV=${HBW_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV ..." >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.hbw-installed"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing hbw-sync and its test dependencies into $VENV ..." >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e '.[test]' >&2
  touch "$stamp"
fi
