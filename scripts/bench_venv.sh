# Sourced by the benchmark scripts: creates the venv $venv (when missing) and installs
# $req into it whenever the file changed since the last install. Needs $venv, $req, $python.
if [ ! -x "$venv/bin/python" ]; then
    echo "creating venv $venv" >&2
    "$python" -m venv "$venv"
    # Keep the venv out of git status without touching the repository's .gitignore.
    printf '*\n' > "$venv/.gitignore"
fi
stamp="$venv/.requirements-bench.txt"
if ! cmp -s "$req" "$stamp"; then
    echo "installing $req into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
fi
