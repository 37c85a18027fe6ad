#!/usr/bin/env bash
# Mutation testing of the method's core (issue 22; docs/testing.md): mutmut changes one thing at a
# time in the losses, group metrics, lambda/lr schedules, zero-shot heads, scoring and the training
# step's loss, runs the FAST tests that reach the changed function against each mutant, and counts
# the mutants no test notices ("survivors"). Not part of CI, nor of the default pytest run.
#
#   bash bench/mutation.sh            # a fresh run (deletes mutants/ first); 6-16 min on 2 cores
#   MUTATION_CHILDREN=2 bash bench/mutation.sh   # mutants tested in parallel (default 1)
#   MUTATION_RESUME=1 bash bench/mutation.sh     # keep mutants/ and its results, test what is left
#
# Needs the project's dependencies installed (the README's test command does it); installs mutmut
# itself. What is mutated and which tests run: [tool.mutmut] in pyproject.toml. Writes, in
# git-ignored folders: mutants/ (mutmut's working copy and results) and bench/results/mutation/
# with run.log, summary.txt (per module: mutants, killed, survived, timeouts, no tests) and
# survivors.diff (the diff of every survivor). Never run `mutmut apply`: it writes a mutant into
# stages/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MUTMUT_VERSION=3.8.1
OUT=bench/results/mutation
start=$(date +%s)

if [ "$($PY -c 'import importlib.metadata as m; print(m.version("mutmut"))' 2>/dev/null || true)" != "$MUTMUT_VERSION" ]; then
    $PY -m pip install "mutmut==$MUTMUT_VERSION"
fi
MUTMUT=$($PY -c 'import shutil, sys, os; print(shutil.which("mutmut") or os.path.join(os.path.dirname(sys.executable), "mutmut"))')

# every test file of the selection must exist (mutmut would stop with a less clear message)
$PY - <<'EOF'
import sys, tomllib
from pathlib import Path
files = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]["pytest_add_cli_args_test_selection"]
missing = [f for f in files if not Path(f).exists()]
if missing:
    sys.exit(f"bench/mutation.sh: the test selection of [tool.mutmut] names missing files: {missing}")
EOF

if [ "${MUTATION_RESUME:-0}" != 1 ]; then
    rm -rf mutants
fi
mkdir -p "$OUT"
# one thread per test process (the tests' conftest does the same), so that N children use N cores
export OMP_NUM_THREADS=1
# mutmut redraws a spinner and a progress line many times a second; the log keeps each new line
"$MUTMUT" run --max-children "${MUTATION_CHILDREN:-1}" 2>&1 | tr '\r' '\n' | $PY -u -c '
import re, sys
previous = None
for line in sys.stdin:
    line = re.sub("^[\u2800-\u28ff] ", "", line.rstrip())
    if line.strip() and line != previous:
        print(line, flush=True)
    previous = line' > "$OUT/run.log" || {
    tail -40 "$OUT/run.log"; echo "bench/mutation.sh: mutmut run failed (log: $OUT/run.log)"; exit 1; }
tail -3 "$OUT/run.log"

$PY - "$OUT" "$MUTMUT_VERSION" "$(( $(date +%s) - start ))" <<'EOF'
import datetime, sys
from collections import Counter
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

out, version, seconds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
columns = ["mutants", "killed", "survived", "timeout", "no tests", "other"]
rows, survivors = [], []
for path in sorted(walk_mutatable_files()):
    m = SourceFileMutationData(path=path)
    m.load()
    status = Counter(status_by_exit_code[code] for code in m.exit_code_by_key.values())
    other = sum(n for s, n in status.items() if s not in columns)
    rows.append([str(path), len(m.exit_code_by_key), status["killed"], status["survived"], status["timeout"],
                 status["no tests"], other])
    survivors += [(path, k) for k, code in sorted(m.exit_code_by_key.items()) if status_by_exit_code[code] == "survived"]
rows.append(["total", *(sum(r[i] for r in rows) for i in range(1, len(columns) + 1))])
width = max(len(r[0]) for r in rows)
lines = [f"mutmut {version}, {datetime.date.today()}, {seconds} s (bash bench/mutation.sh)", "",
         f"{'module':<{width}}  " + "  ".join(f"{c:>8}" for c in columns)]
lines += [f"{r[0]:<{width}}  " + "  ".join(f"{v:>8}" for v in r[1:]) for r in rows]
lines += ["", f"survivors ({len(survivors)}; diffs in {out / 'survivors.diff'}):"] + [f"  {k}" for _, k in survivors]
(out / "summary.txt").write_text("\n".join(lines) + "\n")
(out / "survivors.diff").write_text("".join(f"# {k}\n{get_diff_for_mutant(k, path=p)}\n\n" for p, k in survivors))
print("\n".join(lines))
EOF
